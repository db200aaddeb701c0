/**
 * Pages of signed checkpoints (GET /api/v1/checkpoints, the CLI's --server clients): parsing the
 * request, the cursor, and a page cut from a full list for adapters that cannot page in SQL. Pure.
 *
 * Order: writer, then size. A page holds up to `limit` checkpoints (1..1000, default 1000) after
 * the cursor; `nextCursor` is null on the last page. `latest` keeps only each writer's newest
 * checkpoint; `writer` only that writer's; `minSize` only those of size ≥ it (with `writer` and
 * `limit=1`: the first checkpoint that covers a record's seq).
 */
import type { Checkpoint } from './port.js';

export const CHECKPOINT_DEFAULT_LIMIT = 1000;
export const CHECKPOINT_MAX_LIMIT = 1000;

export interface CheckpointPageRequest {
  limit: number;
  /** Resume after this (writer, size). */
  after?: { writer: string; size: number };
  writer?: string;
  latest?: boolean;
  minSize?: number;
}

export interface CheckpointPage {
  items: Checkpoint[];
  nextCursor: string | null;
}

export function encodeCheckpointCursor(c: { writer: string; size: number }): string {
  return Buffer.from(JSON.stringify([c.writer, c.size]), 'utf8').toString('base64url');
}

/** The (writer, size) a cursor from encodeCheckpointCursor names; undefined when it is not one. */
export function decodeCheckpointCursor(token: string): { writer: string; size: number } | undefined {
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(token)) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 2) return undefined;
  const [writer, size] = v as unknown[];
  if (typeof writer !== 'string' || writer.length === 0 || writer.length > 253 || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  return { writer, size };
}

/**
 * Parses `limit`, `cursor`, `writer`, `latest` (`true`/`false`) and `minSize` of a query string; every other
 * key, and a key given twice, is an error.
 */
export function parseCheckpointQuery(params: Record<string, string | string[] | undefined>): { ok: true; request: CheckpointPageRequest } | { ok: false; errors: string[] } {
  const errors: string[] = [];
  const request: CheckpointPageRequest = { limit: CHECKPOINT_DEFAULT_LIMIT };
  const one = (key: string): string | undefined => {
    const v = params[key];
    if (Array.isArray(v)) {
      errors.push(`${key} is given ${v.length} times; give it once`);
      return undefined;
    }
    return v;
  };
  for (const key of Object.keys(params)) if (!['limit', 'cursor', 'writer', 'latest', 'minSize'].includes(key)) errors.push(`unknown parameter "${key}" (known: limit, cursor, writer, latest, minSize)`);
  const limit = one('limit');
  if (limit !== undefined) {
    const n = /^\d{1,7}$/.test(limit) ? Number(limit) : Number.NaN;
    if (n >= 1 && n <= CHECKPOINT_MAX_LIMIT) request.limit = n;
    else errors.push(`limit "${limit}" must be a whole number from 1 to ${CHECKPOINT_MAX_LIMIT}`);
  }
  const cursor = one('cursor');
  if (cursor !== undefined) {
    const after = decodeCheckpointCursor(cursor);
    if (after) request.after = after;
    else errors.push('cursor is not valid: pass the nextCursor of a previous page unchanged');
  }
  const writer = one('writer');
  if (writer !== undefined) {
    if (writer.length >= 1 && writer.length <= 253) request.writer = writer;
    else errors.push('writer must be 1 to 253 characters');
  }
  const minSize = one('minSize');
  if (minSize !== undefined) {
    const n = /^\d{1,15}$/.test(minSize) ? Number(minSize) : Number.NaN;
    if (Number.isSafeInteger(n)) request.minSize = n;
    else errors.push(`minSize "${minSize}" must be a whole number`);
  }
  const latest = one('latest');
  if (latest !== undefined) {
    if (latest === 'true' || latest === 'false') request.latest = latest === 'true';
    else errors.push(`latest "${latest}" must be true or false`);
  }
  return errors.length ? { ok: false, errors } : { ok: true, request };
}

/** Compares (writer, size) keys in page order (writer by UTF-16 code unit, as SQL BINARY sorts ASCII ids). */
function after(c: Checkpoint, key: { writer: string; size: number }): boolean {
  return c.writer > key.writer || (c.writer === key.writer && c.size > key.size);
}

/** One page cut from every checkpoint (sorted here), for adapters without a paged query. */
export function toCheckpointPage(all: readonly Checkpoint[], req: CheckpointPageRequest): CheckpointPage {
  let list = all.slice().sort((a, b) => (a.writer < b.writer ? -1 : a.writer > b.writer ? 1 : a.size - b.size));
  if (req.writer !== undefined) list = list.filter((c) => c.writer === req.writer);
  if (req.latest) list = list.filter((c, i) => list[i + 1]?.writer !== c.writer);
  if (req.minSize !== undefined) {
    const min = req.minSize;
    list = list.filter((c) => c.size >= min);
  }
  if (req.after) {
    const key = req.after;
    list = list.filter((c) => after(c, key));
  }
  return toPageOf(list.slice(0, req.limit + 1), req.limit);
}

/** A page from up to limit + 1 checkpoints in page order (the extra one only says there is more). */
export function toPageOf(rows: Checkpoint[], limit: number): CheckpointPage {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  const last = items[items.length - 1];
  return { items, nextCursor: more && last ? encodeCheckpointCursor(last) : null };
}
