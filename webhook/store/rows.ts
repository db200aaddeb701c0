/**
 * What the SQL adapters (SQLite, PostgreSQL) share about a stored decision row: its shape and how a
 * row is decoded back into a record for reads and for chain verification. Pure: no fs, no net, no clock.
 */
import type { ChainedRecord, DecisionRecord } from '../core/record.js';
import { ACCOUNT_PROBLEM_CODES } from '../core/taskrun/account-checks.js';
import type { ChainEntry, DecisionFilter, DecisionPage } from './port.js';
import { decodeCursor, encodeCursor, MAX_LIMIT, toCanonicalTime, type Cursor } from './query.js';
import { fromStoredBody } from './evidence/body-codec.js';

/**
 * One `decisions` row as read for verification, with its ServiceAccount index rows folded into
 * `sa_keys` ("key\ttime" lines, or null when there are none). `Seq` is how the driver returns the
 * seq column: a number from SQLite, a string (bigint) from PostgreSQL.
 */
export interface DecisionRow<Seq extends number | string = number> {
  writer: string;
  seq: Seq;
  id: string;
  time: string;
  namespace: string;
  kind: string;
  verdict: string;
  service_accounts: string;
  task_run: string | null;
  pipeline_run: string | null;
  prev_hash: string;
  hash: string;
  record: string;
  sa_keys: string | null;
}

/**
 * The canonical body of a stored row: the v1 `record` text as stored, or the v2 stored bytes
 * (`body`, evidence/body-codec.ts) inflated. Bytes that do not inflate give a text that is not
 * JSON naming why, so the row is reported as a bad record (toChainEntry) instead of thrown.
 */
export function toBodyText(record: string, body: Uint8Array | null): string {
  if (body === null) return record;
  try {
    return fromStoredBody(body);
  } catch (err) {
    return `(${(err as Error).message})`;
  }
}

/** Reason codes whose `serviceAccount` is an unmapped (or wrongly mapped) account: the `unmapped` column stats read (the core's list). */
const UNMAPPED_CODES: ReadonlySet<string> = new Set(ACCOUNT_PROBLEM_CODES);

/**
 * The `unmapped` column of a v2 row: a JSON array of the ServiceAccount each unmapped/mapping reason
 * is about (null when none) — the reason's `serviceAccount`, else (records from before reasons
 * carried it) the record's only ServiceAccount, else the account named in the rules' "ServiceAccount
 * ns/name has no IdentityMapping" message. The same derivation as stats.ts applies to v1 rows' JSON.
 */
export function toUnmappedColumn(r: Pick<DecisionRecord, 'reasons' | 'serviceAccounts'>): string | null {
  const accounts = toUnmappedAccounts(r);
  return accounts ? JSON.stringify(accounts) : null;
}

/** The accounts of toUnmappedColumn, as an array (the SQLite writer also counts them in the stats rollups). */
export function toUnmappedAccounts(r: Pick<DecisionRecord, 'reasons' | 'serviceAccounts'>): string[] | null {
  if (!Array.isArray(r.reasons)) return null;
  const out: string[] = [];
  for (const reason of r.reasons as Array<{ code?: unknown; serviceAccount?: unknown; message?: unknown }>) {
    if (!UNMAPPED_CODES.has(reason?.code as string)) continue;
    let sa: string | undefined;
    if (typeof reason.serviceAccount === 'string') sa = reason.serviceAccount;
    else if (r.serviceAccounts.length === 1) sa = r.serviceAccounts[0];
    else if (typeof reason.message === 'string') sa = /^ServiceAccount (.*?) has no IdentityMapping/.exec(reason.message)?.[1];
    if (sa !== undefined) out.push(sa);
  }
  return out.length ? out : null;
}

/** A stored record: its canonical body (stored without `hash`) with the row's hash put back. Throws on a body that is not JSON. */
export function toChained(body: string, hash: string): ChainedRecord {
  const r = JSON.parse(body) as ChainedRecord;
  r.hash = hash;
  return r;
}

/**
 * The chain entry for a row: the decoded record and its exact stored body, with a problem when the
 * body is not JSON (a stand-in record naming the row, which then fails the hash check) or when
 * `columnProblem` finds an index column that does not match the record.
 */
export function toChainEntry<R extends DecisionRow<number | string>>(row: R, columnProblem: (row: R, record: ChainedRecord) => string | undefined): ChainEntry {
  let record: ChainedRecord;
  try {
    record = toChained(row.record, row.hash);
  } catch (err) {
    record = { id: row.id, replica: row.writer, seq: Number(row.seq), prevHash: row.prev_hash, hash: row.hash } as ChainedRecord;
    return { record, body: row.record, problem: `the stored record is not JSON: ${(err as Error).message}` };
  }
  const problem = columnProblem(row, record);
  return problem ? { record, body: row.record, problem } : { record, body: row.record };
}

/** The problem reported for index columns (named in `bad`, at least one) that do not match their record. */
export function toColumnsProblem(bad: string[]): string {
  return `the ${bad.join(', ')} column${bad.length > 1 ? 's do' : ' does'} not match the record (an index was edited)`;
}

/** The problem reported when a record's ServiceAccount index rows do not match it. */
export const SA_INDEX_PROBLEM = 'the serviceAccount index rows do not match the record (an index was edited)';

/** An error a store hands its caller: the message says what failed, `code` (ERR_STORE_*) what kind. */
export type StoreError = Error & { code: string };

export function storeError(code: string, message: string, cause?: unknown): StoreError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/** The page size and resume point a query asks for: limit clamped to 1..MAX_LIMIT, cursor decoded (ERR_STORE_BAD_FILTER when it is not one of ours). */
export function toPageRequest(filter: Pick<DecisionFilter, 'limit' | 'cursor'>): { limit: number; after: Cursor | undefined } {
  const limit = Math.min(Math.max(Math.trunc(filter.limit) || 1, 1), MAX_LIMIT);
  let after: Cursor | undefined;
  if (filter.cursor !== undefined) {
    after = decodeCursor(filter.cursor);
    if (!after) throw storeError('ERR_STORE_BAD_FILTER', 'cursor is not valid: pass the nextCursor of a previous page unchanged');
  }
  return { limit, after };
}

/** One query page from up to limit + 1 rows read in (time, id) order: the extra row only says there is more. */
export function toPage(rows: Array<Pick<DecisionRow, 'id' | 'time' | 'record' | 'hash'>>, limit: number): DecisionPage {
  const more = rows.length > limit;
  const pageRows = more ? rows.slice(0, limit) : rows;
  const last = pageRows[pageRows.length - 1];
  return {
    items: pageRows.map((r) => toChained(r.record, r.hash)),
    nextCursor: more && last ? encodeCursor({ time: last.time, id: last.id }) : null,
  };
}

/** ERR_STORE_DUPLICATE_ID for an appended record whose id is already stored. */
export function duplicateIdError(id: string): StoreError {
  return storeError('ERR_STORE_DUPLICATE_ID', `a decision with id ${id} is already stored`);
}

/** A decision row's index columns, as every adapter writes them (serviceAccounts as its JSON text). */
export interface IndexColumns {
  id: string;
  namespace: string;
  kind: string;
  verdict: string;
  serviceAccounts: string;
  taskRun: string | null;
  pipelineRun: string | null;
}

/** ERR_STORE_CANCELLED for an append its caller cancelled (AppendOptions.signal) before the writer took it into a transaction: nothing was stored. */
export function cancelledError(id: string): StoreError {
  return storeError('ERR_STORE_CANCELLED', `decision ${id} was cancelled before commit (the admission deadline answered first); nothing was stored`);
}

/** ERR_STORE_INVALID_RECORD for an appended record that could not be chained (no canonical JSON). */
export function unchainableError(id: string, err: unknown): StoreError {
  return storeError('ERR_STORE_INVALID_RECORD', `invalid decision record ${id}: ${(err as Error).message}`, err);
}

/**
 * The fields every adapter indexes, checked before a record is queued: returns its canonical time,
 * or what is wrong (the adapter wraps that in ERR_STORE_INVALID_RECORD).
 */
/** The second ("YYYY-MM-DDTHH:MM:SS") of the last record time found canonical: times in it need only their fraction checked. */
let canonicalSecond = '';
const CANONICAL_FRACTION = /^\.\d{6}Z$/;

/** toCanonicalTime, with a shortcut for the usual case: a canonical time in the same second as the last one. */
function recordTimeOf(text: string): string | undefined {
  if (text.length === 27 && canonicalSecond !== '' && text.startsWith(canonicalSecond) && CANONICAL_FRACTION.test(text.slice(19))) return text;
  const time = toCanonicalTime(text);
  if (time === text) canonicalSecond = text.slice(0, 19);
  return time;
}

export function checkRecordShape(record: DecisionRecord): { time: string } | string {
  if (typeof record !== 'object' || record === null) return 'not an object';
  if (typeof record.id !== 'string' || record.id.length === 0 || record.id.length > 200) return 'id must be a non-empty string';
  const time = typeof record.time === 'string' ? recordTimeOf(record.time) : undefined;
  if (!time) return `time ${JSON.stringify(record.time)} is not RFC 3339`;
  if (typeof record.replica !== 'string' || record.replica === '') return 'replica must be a non-empty string';
  if (typeof record.namespace !== 'string' || typeof record.verdict !== 'string') return 'namespace and verdict must be strings';
  if (typeof record.kind?.kind !== 'string') return 'kind.kind must be a string';
  if (!Array.isArray(record.serviceAccounts) || !record.serviceAccounts.every((s) => typeof s === 'string')) return 'serviceAccounts must be an array of strings';
  const t = record.tekton as Record<string, unknown> | undefined;
  if (t !== undefined && (typeof t !== 'object' || t === null || !['taskRun', 'pipelineRun'].every((k) => t[k] === undefined || typeof t[k] === 'string'))) {
    return 'tekton.taskRun and tekton.pipelineRun must be strings when present';
  }
  return { time };
}
