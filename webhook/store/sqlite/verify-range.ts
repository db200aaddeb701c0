/**
 * Verification of one range of one writer's chain in a SQLite store, as a verify worker thread
 * runs it (verify-worker.ts; planned and joined by verify.ts). Reads no record as a JS object on
 * the fast path: per row, SQLite hands a registered function the stored body, which inflates it
 * and checks sha256(prev_hash + body) against the row's hash (native zlib and sha256), and
 * SQLite's own JSON functions extract the body's indexed fields, which must render exactly as the
 * row's index columns do. Only rows that fail any of that are read the slow way (JSON.parse,
 * ChainVerifier.add), so every problem is reported with the same words as a sequential verify.
 */
import { hash as digest } from 'node:crypto';
import Database from 'better-sqlite3';
import { createBodyInflater } from '../evidence/body-codec.js';
import { toChainVerifier, type ChainProblem, type CheckedEvidence, type WriterState } from '../evidence/chain.js';
import { toChainEntry } from '../rows.js';
import { CHAIN_COLUMNS, SA_KEYS_SQL, columnProblem, saKeysOf, toDecisionRow, type RawDecisionRow } from './rows.js';

/** Records `(lo, hi]` of `writer` (by seq). `start`: the state after record `lo`, unless this is the writer's first range. */
export interface ChainRange {
  writer: string;
  lo: number;
  hi: number;
  start?: WriterState;
  /** The checkpoints and anchors this range meets (signatures already checked). */
  evidence: CheckedEvidence;
}

export interface RangeOutcome {
  /** The first problem in the range (with `start` assumed). */
  problem?: ChainProblem;
  /**
   * A row of this range names another writer in its body (its writer column was edited): the
   * range alone cannot say what a sequential verify would; the caller verifies sequentially.
   */
  foreign?: boolean;
  /** Where the writer's chain stands after the range; undefined when the range had no rows. */
  state?: WriterState;
  /** Rows that took the slow path. */
  slowRows: number;
}

/** Rows per read: bounded memory. */
const CHUNK = 2000;
/** Progress is reported every this many rows. */
const PROGRESS_ROWS = 100;
/** Distinct serviceAccounts column values remembered with their index keys. */
const SA_CACHE_MAX = 10_000;

export interface RangeReader {
  verify(range: ChainRange, onRows?: (n: number) => void): RangeOutcome;
  close(): void;
}

/**
 * The stored body's canonical bytes (v1: the text; v2: inflated) when sha256(prevHash + body) is
 * the row's hash, else NULL; any error (unknown codec, bytes that do not inflate) is NULL too: the
 * slow path then names it. The fast query refers to the body twice (the field comparison and the
 * serviceAccounts text), so the last answer is remembered per row (seq; unique within a writer's
 * range): one inflate and one sha256 per row.
 */
function createBodyCheck(): { fn: (seq: unknown, prevHash: unknown, hash: unknown, record: unknown, body: unknown) => Uint8Array | string | null; forget(): void } {
  const inflate = createBodyInflater(64);
  let lastSeq: unknown;
  let last: Uint8Array | string | null = null;
  const check = (prevHash: unknown, hash: unknown, record: unknown, body: unknown): Uint8Array | string | null => {
    if (typeof prevHash !== 'string' || typeof hash !== 'string' || prevHash.length !== 64) return null;
    if (body === null) {
      if (typeof record !== 'string') return null;
      return digest('sha256', prevHash + record, 'hex') === hash ? record : null;
    }
    if (!(body instanceof Uint8Array)) return null;
    let bytes: Buffer;
    try {
      bytes = inflate(body);
    } catch {
      return null;
    }
    // prevHash (64 ASCII hex digits) goes into the 64 bytes of headroom before the body: one buffer, one hash.
    const whole = Buffer.from(bytes.buffer, bytes.byteOffset - 64, bytes.length + 64);
    if (whole.write(prevHash, 0, 64, 'latin1') !== 64) return null;
    return digest('sha256', whole, 'hex') === hash ? bytes : null;
  };
  return {
    fn: (seq, prevHash, hash, record, body) => {
      if (seq === lastSeq) return last;
      last = check(prevHash, hash, record, body);
      lastSeq = seq;
      return last;
    },
    forget() {
      lastSeq = undefined;
      last = null;
    },
  };
}

export function openRangeReader(path: string): RangeReader {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma('cache_size = -16384');
  const bodyCheck = createBodyCheck();
  db.function('tzw_checked_body', { deterministic: true }, bodyCheck.fn);
  // `ok`: the body's hash matches and its indexed fields render exactly as the row's columns
  // (json_array renders the columns as JSON; json_extract keeps the body's own text of each value,
  // and the body is canonical JSON). Text equality of the renderings means equal values; any
  // difference, even one the slow path would accept, only sends the row to the slow path.
  const body = 'CAST(tzw_checked_body(d.seq, d.prev_hash, d.hash, d.record, d.body) AS TEXT)';
  const fast = db
    .prepare(
      `SELECT d.seq, d.id, d.prev_hash, d.hash, d.time, d.service_accounts,
        ${SA_KEYS_SQL} AS sa_keys,
        coalesce(json_extract(${body}, '$.id', '$.replica', '$.seq', '$.prevHash', '$.time', '$.namespace', '$.kind.kind', '$.verdict', '$.tekton.taskRun', '$.tekton.pipelineRun', '$.nsSeq', '$.objectDigest')
            = json_array(d.id, d.writer, d.seq, d.prev_hash, d.time, d.namespace, d.kind, d.verdict, d.task_run, d.pipeline_run, d.ns_seq, CASE WHEN d.object_digest IS NOT NULL THEN lower(hex(d.object_digest)) END)
          AND json_extract(${body}, '$.serviceAccounts') = d.service_accounts, 0) AS ok
      FROM decisions d WHERE d.writer = ? AND d.seq > ? AND d.seq <= ? ORDER BY d.seq LIMIT ?`,
    )
    .raw(true);
  const slowChunk = db.prepare(`SELECT ${CHAIN_COLUMNS} FROM decisions d WHERE d.writer = ? AND d.seq > ? AND d.seq <= ? ORDER BY d.seq LIMIT ?`).raw(true);
  const slowRow = db.prepare(`SELECT ${CHAIN_COLUMNS} FROM decisions d WHERE d.writer = ? AND d.seq = ?`).raw(true);
  const saCache = new Map<string, string[] | null>();

  /** The ServiceAccount index keys a serviceAccounts column implies; null when it is not an array of strings. */
  const saKeysFor = (column: string): string[] | null => {
    let keys = saCache.get(column);
    if (keys !== undefined) return keys;
    try {
      const v: unknown = JSON.parse(column);
      keys = Array.isArray(v) && v.every((x) => typeof x === 'string') ? saKeysOf(v as string[]) : null;
    } catch {
      keys = null;
    }
    if (saCache.size >= SA_CACHE_MAX) saCache.clear();
    saCache.set(column, keys);
    return keys;
  };

  return {
    verify(range: ChainRange, onRows?: (n: number) => void): RangeOutcome {
      const { writer } = range;
      const v = toChainVerifier(range.evidence);
      if (range.start) v.resume(writer, { ...range.start, records: 0 });
      let slowRows = 0;
      let after = range.lo;
      const slow = (raw: RawDecisionRow): ChainProblem | 'foreign' | undefined => {
        slowRows++;
        const entry = toChainEntry(toDecisionRow(raw), columnProblem);
        if (entry.record.replica !== writer) return 'foreign';
        return v.add(entry.record, entry.body, entry.problem);
      };
      for (;;) {
        let rows: unknown[][];
        let fastPath = true;
        try {
          bodyCheck.forget();
          rows = fast.all(writer, after, range.hi, CHUNK) as unknown[][];
        } catch {
          // A body whose hash matches is not JSON (SQLite's json_extract refuses it): this chunk the slow way.
          rows = slowChunk.all(writer, after, range.hi, CHUNK) as unknown[][];
          fastPath = false;
        }
        let unreported = 0;
        for (const row of rows) {
          if (++unreported === PROGRESS_ROWS) {
            onRows?.(unreported);
            unreported = 0;
          }
          let problem: ChainProblem | 'foreign' | undefined;
          if (!fastPath) problem = slow(row as RawDecisionRow);
          else {
            const [seq, id, prevHash, hash, time, serviceAccounts, saKeys, fieldsOk] = row as [number, string, string, string, string, string, string | null, number];
            let ok = fieldsOk === 1;
            if (ok) {
              const keys = saKeysFor(serviceAccounts);
              ok = keys !== null && saKeys === (keys.length ? keys.map((k) => `${k}\t${time}`).join('\n') : null);
            }
            if (ok) problem = v.addChecked(writer, id, seq, prevHash, hash);
            else {
              const raw = slowRow.get(writer, seq) as RawDecisionRow | undefined;
              // Gone since the chunk was read (a concurrent prune): the chain then shows the gap.
              problem = raw ? slow(raw) : undefined;
            }
          }
          if (problem === 'foreign') return { foreign: true, slowRows };
          if (problem) return { problem, slowRows };
        }
        if (unreported > 0) onRows?.(unreported);
        const last = rows[rows.length - 1];
        if (!last || rows.length < CHUNK) break;
        after = (fastPath ? last[0] : last[1]) as number;
      }
      const state = v.stateOf(writer);
      return state ? { state, slowRows } : { slowRows };
    },
    close() {
      db.close();
    },
  };
}
