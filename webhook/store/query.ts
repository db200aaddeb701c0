/**
 * The one decision filter parser behind the audit API (query string) and the CLI (flags), plus the
 * opaque page cursor and RFC 3339 time normalisation. Pure.
 */
import { VERDICTS, type Verdict } from '../core/verdict.js';
import type { DecisionFilter } from './port.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

/** Filter names, as in the query string and (kebab-free) CLI flags. */
export const FILTER_KEYS = ['namespace', 'serviceAccount', 'verdict', 'kind', 'taskRun', 'pipelineRun', 'objectDigest', 'since', 'until', 'limit', 'cursor'] as const;

export type FilterParams = Record<string, string | string[] | undefined>;
export type FilterResult = { ok: true; filter: DecisionFilter } | { ok: false; errors: string[] };

// Kubernetes object name rules: namespaces are DNS-1123 labels, most names DNS-1123 subdomains
// (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/).
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KIND = /^[A-Za-z][A-Za-z0-9]*$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const CANONICAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function isLabel(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

function isSubdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

/**
 * Normalises an RFC 3339 date-time to UTC with exactly six fractional digits
 * (`2026-11-25T22:45:14.123456Z`), the form records carry, so times compare as strings.
 * Digits beyond microseconds are truncated. Returns undefined for anything else.
 */
export function toCanonicalTime(text: string): string | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac = '', z, sign, oh, om] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60) return undefined;
  // Date.UTC treats years 0..99 as 1900+; set the full year explicitly.
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, Math.min(second, 59)));
  date.setUTCFullYear(year);
  if (date.getUTCDate() !== day) return undefined;
  let ms = date.getTime();
  if (second === 60) ms += 1000; // leap second: the instant after :59
  if (!z) {
    const offH = Number(oh);
    const offM = Number(om);
    if (offH > 23 || offM > 59) return undefined;
    ms -= (sign === '-' ? -1 : 1) * (offH * 60 + offM) * 60_000;
  }
  const out = new Date(ms);
  if (Number.isNaN(out.getTime()) || out.getUTCFullYear() < 0 || out.getUTCFullYear() > 9999) return undefined;
  const micros = (frac + '000000').slice(0, 6);
  return out.toISOString().slice(0, 19) + '.' + micros + 'Z';
}

export interface Cursor {
  time: string;
  id: string;
}

/** Encodes the sort key of the last item on a page as an opaque base64url token. */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.time, c.id]), 'utf8').toString('base64url');
}

/** Decodes a cursor from `encodeCursor`; undefined when it is not one. */
export function decodeCursor(token: string): Cursor | undefined {
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(token)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    return undefined; // not JSON: not one of ours, reported by the caller as a bad cursor
  }
  if (!Array.isArray(value) || value.length !== 2) return undefined;
  const [time, id] = value as unknown[];
  if (typeof time !== 'string' || !CANONICAL_TIME.test(time) || typeof id !== 'string' || id.length === 0 || id.length > 200) return undefined;
  return { time, id };
}

/**
 * Parses and validates decision filters. `params` is a query string object or CLI flags; a key
 * given twice (an array) is an error, as are unknown keys unless listed in `opts.ignore` (e.g. the
 * API's `format`). since/until are normalised with toCanonicalTime. limit is 1..1000, default 100.
 */
export function parseDecisionFilter(params: FilterParams, opts: { ignore?: readonly string[] } = {}): FilterResult {
  const errors: string[] = [];
  const filter: DecisionFilter = { limit: DEFAULT_LIMIT };
  const known = new Set<string>(FILTER_KEYS);
  const ignored = new Set(opts.ignore ?? []);
  for (const key of Object.keys(params).sort()) {
    if (!known.has(key) && !ignored.has(key)) errors.push(`unknown filter "${key}" (allowed: ${FILTER_KEYS.join(', ')})`);
  }
  const one = (key: (typeof FILTER_KEYS)[number]): string | undefined => {
    const v = params[key];
    if (v === undefined) return undefined;
    if (Array.isArray(v)) {
      if (v.length === 1) return one1(key, v[0]);
      errors.push(`${key} is given ${v.length} times; give it once`);
      return undefined;
    }
    return one1(key, v);
  };
  const one1 = (key: string, v: string | undefined): string | undefined => {
    if (typeof v !== 'string') {
      errors.push(`${key} must be a string`);
      return undefined;
    }
    if (v === '') {
      errors.push(`${key} is empty; omit it or give a value`);
      return undefined;
    }
    return v;
  };

  const namespace = one('namespace');
  if (namespace !== undefined) {
    if (isLabel(namespace)) filter.namespace = namespace;
    else errors.push(`namespace "${namespace}" is not a valid namespace name (lowercase letters, digits and "-", at most 63)`);
  }
  const sa = one('serviceAccount');
  if (sa !== undefined) {
    const parts = sa.split('/');
    const ok = parts.length === 1 ? isSubdomain(sa) : parts.length === 2 && isLabel(parts[0] ?? '') && isSubdomain(parts[1] ?? '');
    if (ok) filter.serviceAccount = sa;
    else errors.push(`serviceAccount "${sa}" must be "namespace/name" or "name" (Kubernetes names)`);
  }
  const verdict = one('verdict');
  if (verdict !== undefined) {
    if ((VERDICTS as readonly string[]).includes(verdict)) filter.verdict = verdict as Verdict;
    else errors.push(`verdict "${verdict}" is not one of ${VERDICTS.join(', ')}`);
  }
  const kind = one('kind');
  if (kind !== undefined) {
    if (KIND.test(kind) && kind.length <= 63) filter.kind = kind;
    else errors.push(`kind "${kind}" is not a Kubernetes kind name (e.g. TaskRun, PipelineRun, Pod)`);
  }
  for (const key of ['taskRun', 'pipelineRun'] as const) {
    const v = one(key);
    if (v === undefined) continue;
    if (isSubdomain(v)) filter[key] = v;
    else errors.push(`${key} "${v}" is not a valid object name`);
  }
  const digest = one('objectDigest');
  if (digest !== undefined) {
    // Stored lowercase (hex of sha256); accept either case as `sha256sum` and others print it.
    if (SHA256_HEX.test(digest)) filter.objectDigest = digest.toLowerCase();
    else errors.push(`objectDigest "${digest.length > 80 ? `${digest.slice(0, 80)}…` : digest}" is not a sha256 digest (64 hex digits, as \`tzw decisions digest\` prints)`);
  }
  for (const key of ['since', 'until'] as const) {
    const v = one(key);
    if (v === undefined) continue;
    const t = toCanonicalTime(v);
    if (t) filter[key] = t;
    else errors.push(`${key} "${v}" is not an RFC 3339 date-time (e.g. 2026-11-25T22:45:14Z or 2026-11-25T23:45:14.5+01:00)`);
  }
  if (filter.since && filter.until && filter.since >= filter.until) errors.push(`since (${filter.since}) must be before until (${filter.until})`);
  const limit = one('limit');
  if (limit !== undefined) {
    const n = /^\d{1,7}$/.test(limit) ? Number(limit) : NaN;
    if (n >= 1 && n <= MAX_LIMIT) filter.limit = n;
    else errors.push(`limit "${limit}" must be a whole number from 1 to ${MAX_LIMIT}`);
  }
  const cursor = one('cursor');
  if (cursor !== undefined) {
    if (decodeCursor(cursor)) filter.cursor = cursor;
    else errors.push('cursor is not valid: pass the nextCursor of a previous page unchanged');
  }
  return errors.length ? { ok: false, errors } : { ok: true, filter };
}

/** True when the filter selects every record (an export of it is a complete, verifiable bundle). */
export function isUnfiltered(filter: Omit<DecisionFilter, 'limit' | 'cursor'> | undefined): boolean {
  if (!filter) return true;
  return (['namespace', 'serviceAccount', 'verdict', 'kind', 'taskRun', 'pipelineRun', 'objectDigest', 'since', 'until'] as const).every((k) => filter[k] === undefined);
}

export type EqualityFilterKey = 'namespace' | 'verdict' | 'kind' | 'taskRun' | 'pipelineRun' | 'objectDigest';

/**
 * The equality filters and the `decisions` column (alias `d`) each one compares, shared by every SQL
 * query builder (SQLite and PostgreSQL pages, streams and stats) so a new filter is added once.
 * `hex`: the column holds the bytes of a hex value (the 32-byte objectDigest), so the parameter is
 * compared through `toSqlParam`.
 */
export const EQUALITY_FILTER_COLUMNS: ReadonlyArray<readonly [EqualityFilterKey, string, 'text' | 'hex']> = [
  ['namespace', 'd.namespace', 'text'],
  ['verdict', 'd.verdict', 'text'],
  ['kind', 'd.kind', 'text'],
  ['taskRun', 'd.task_run', 'text'],
  ['pipelineRun', 'd.pipeline_run', 'text'],
  ['objectDigest', 'd.object_digest', 'hex'],
];

/**
 * The filter whose index drives a page or a count when several are given: the most selective kind
 * first (a digest or a run names one object; an account and a namespace a slice; a verdict or a kind
 * a large share). On SQLite the other equality filters are then written `+col = ?` so the planner
 * never drives from a less selective index (its statistics cannot tell `denied` is rare): they are
 * checked inside the driving index where it carries the column (namespace and verdict indexes), else
 * on the row.
 */
const DRIVING_ORDER = ['objectDigest', 'taskRun', 'pipelineRun', 'serviceAccount', 'namespace', 'verdict', 'kind'] as const;

export function toDrivingFilter(filter: Partial<Record<(typeof DRIVING_ORDER)[number], unknown>>): (typeof DRIVING_ORDER)[number] | undefined {
  return DRIVING_ORDER.find((k) => filter[k] !== undefined);
}

/** `col` as a SQLite equality operand: `+col` (no index) unless `key` is the driving filter. */
export function toSqliteColumn(col: string, key: string, driving: string | undefined): string {
  return key === driving ? col : `+${col}`;
}

/** The SQL for a filter parameter placeholder `p` of a column stored as `type` (hex: bytes, unhex/decode). */
export function toSqlParam(dialect: 'sqlite' | 'postgres', type: 'text' | 'hex', p: string): string {
  if (type === 'text') return p;
  return dialect === 'sqlite' ? `unhex(${p})` : `decode(${p}, 'hex')`;
}
