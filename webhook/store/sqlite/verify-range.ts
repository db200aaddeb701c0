/**
 * Verification of one range of one writer's chain in a SQLite store, as a verify worker thread
 * runs it (verify-worker.ts; planned and joined by verify.ts). Reads no record as a JS object on
 * the fast path: a read takes its rows' stored bodies as one blob, then SQLite hands a registered
 * function each row's columns (and its body's length); the function decompresses the body, checks
 * sha256(prev_hash + body) against the row's hash (native zstd or zlib, and sha256), finds the body's
 * indexed fields in its bytes and compares them with the row's index columns (verify-body.ts),
 * and moves the chain on. Only rows that fail any of that are read the
 * slow way (JSON.parse, ChainVerifier.add), so every problem is reported with the same words as a
 * sequential verify.
 *
 * Two modes (ChainRange.accountKey). Strict: every body validated as JSON in full (scanBody), each
 * record's ServiceAccount index rows looked up, as the sequential verify does. Fast: bodies a
 * signed checkpoint of the range covers are read only at their ends (scanSignedBody), and the range
 * sums the index lines its records imply (verify-accounts.ts); verify.ts accepts a fast result only
 * when every range came out clean and the sums equal the index's, else it runs the strict mode.
 */
import { hash as digest } from 'node:crypto';
import Database from 'better-sqlite3';
import { createBodyDecoder } from '../evidence/body-codec.js';
import { toChainVerifier, type ChainProblem, type CheckedEvidence, type WriterState } from '../evidence/chain.js';
import { toChainEntry } from '../rows.js';
import { CHAIN_COLUMNS, SA_KEYS_SQL, columnProblem, saKeysOf, toDecisionRow, type RawDecisionRow } from './rows.js';
import { addLines, emptyAccountSum, isLineField, type AccountKey, type AccountSum } from './verify-accounts.js';
import { FIELD, createFieldPositions, isAbsent, isIntegerField, isLowerHexField, isObjectField, isRawField, isStringField, scanBody, scanSignedBody } from './verify-body.js';

/** Records `(lo, hi]` of `writer` (by seq). `start`: the state after record `lo`, unless this is the writer's first range. */
export interface ChainRange {
  writer: string;
  lo: number;
  hi: number;
  start?: WriterState;
  /** The checkpoints and anchors this range meets (signatures already checked). */
  evidence: CheckedEvidence;
  /**
   * The fast mode: check the ServiceAccount index set-wise under this key (RangeOutcome.accounts),
   * and read only the start and end of bodies a signed checkpoint in the range covers
   * (verify-body.ts scanSignedBody; sound only when the whole verification then finds no problem,
   * which verify.ts requires). Absent: every check per record, as the sequential verify does.
   */
  accountKey?: AccountKey;
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
  /**
   * With `accountKey`: the sum of the index lines the range's records imply; undefined when one
   * of them cannot be a line (a field with a tab or newline): then only the per-record check can tell.
   */
  accounts?: AccountSum;
  /** Rows that took the slow path. */
  slowRows: number;
}

/** Seqs per read (one short read transaction each; its bodies are one blob). */
const CHUNK = 2000;
/** Progress is reported every this many rows. */
const PROGRESS_ROWS = 100;
/** Distinct serviceAccounts column values remembered with their index keys. */
const SA_CACHE_MAX = 10_000;

export interface RangeReader {
  verify(range: ChainRange, onRows?: (n: number) => void): RangeOutcome;
  close(): void;
}

/** The per-row function's arguments, in SQL order (verify-range's fast query). */
type RowArgs = [
  seq: unknown,
  id: unknown,
  prevHash: unknown,
  hash: unknown,
  time: unknown,
  namespace: unknown,
  kind: unknown,
  verdict: unknown,
  serviceAccounts: unknown,
  taskRun: unknown,
  pipelineRun: unknown,
  nsSeq: unknown,
  objectDigest: unknown,
  record: unknown,
  bodyLength: unknown,
  saKeys: unknown,
];

/**
 * The per-row function's arguments: a row's columns (the v1 text only for a row without a stored
 * body); of a stored body only its length: the bodies themselves come in one blob per read
 * (BODIES_SQL), since a blob handed to a JS function is a Buffer of its own (~2 µs a row).
 */
const rowArgs = (saKeys: string) => `d.seq, d.id, d.prev_hash, d.hash, d.time, d.namespace, d.kind, d.verdict, d.service_accounts, d.task_run, d.pipeline_run, d.ns_seq,
  CASE WHEN typeof(d.object_digest) = 'blob' THEN hex(d.object_digest) WHEN d.object_digest IS NOT NULL THEN 'not a digest' END,
  CASE WHEN d.body IS NULL THEN d.record END, CASE WHEN typeof(d.body) = 'blob' THEN length(d.body) END, ${saKeys}`;

/**
 * The stored bodies (blobs only) of a read's rows, end to end in seq order: the rows the per-row
 * function sees in the same read transaction, each taking the next `length(body)` bytes.
 * (group_concat keeps a blob's bytes as they are; the subquery's order is the (writer, seq) index's.)
 */
const BODIES_SQL = `SELECT CAST(group_concat(b, '') AS BLOB) FROM (SELECT CASE WHEN typeof(d.body) = 'blob' THEN d.body END AS b
  FROM decisions d WHERE d.writer = ? AND d.seq > ? AND d.seq <= ? ORDER BY d.seq)`;

const isText = (v: unknown): v is string => typeof v === 'string';

/**
 * The common serviceAccounts column, one ServiceAccount in printable ASCII without `"` or `\\`
 * (`["ns/name"]`): its index keys (saKeysOf) without JSON.parse or a cache lookup; undefined for
 * any other column. JSON.stringify writes such an array exactly so, and such keys hold no tab or newline.
 */
function oneAccountKeys(column: string): string[] | undefined {
  const n = column.length;
  if (n < 5 || column.charCodeAt(0) !== 0x5b || column.charCodeAt(1) !== 0x22 || column.charCodeAt(n - 2) !== 0x22 || column.charCodeAt(n - 1) !== 0x5d) return undefined;
  let slash = -1;
  for (let i = 2; i < n - 2; i++) {
    const c = column.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return undefined;
    if (c === 0x2f && slash < 0) slash = i;
  }
  const only = column.slice(2, n - 2);
  if (slash < 0) return [only];
  const name = column.slice(slash + 1, n - 2);
  return name < only ? [name, only] : [only, name];
}
const isTextOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';

/**
 * Pages straight from the OS page cache, without a read() and a copy each: verify's connections
 * only read (an I/O error while reading a mapped page ends the process instead of failing a query).
 */
export function mapForReading(db: Database.Database): void {
  db.pragma('mmap_size = 4294967296');
}

export function openRangeReader(path: string): RangeReader {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma('cache_size = -16384');
  mapForReading(db);
  const decode = createBodyDecoder(64);
  const at = createFieldPositions();
  const saCache = new Map<string, string[] | null>();

  /**
   * The ServiceAccount index keys a serviceAccounts column implies; null unless the column is an
   * array of strings written as JSON.stringify writes it (so a body holding these exact bytes has
   * the column's value) whose keys can be index lines (no tab or newline).
   */
  const saKeysFor = (column: string): string[] | null => {
    const one = oneAccountKeys(column);
    if (one) return one;
    let keys = saCache.get(column);
    if (keys !== undefined) return keys;
    keys = null;
    try {
      const v: unknown = JSON.parse(column);
      if (Array.isArray(v) && v.every((x) => typeof x === 'string') && JSON.stringify(v) === column) {
        const k = saKeysOf(v as string[]);
        if (k.every(isLineField)) keys = k;
      }
    } catch {
      keys = null;
    }
    if (saCache.size >= SA_CACHE_MAX) saCache.clear();
    saCache.set(column, keys);
    return keys;
  };

  // Per verify() call: the range's verifier and where the current read stands.
  let writer = '';
  let v = toChainVerifier({ checkpoints: [], anchors: [], counts: { checkpoints: 0, anchors: 0 } });
  let accountKey: AccountKey | undefined;
  let accounts: AccountSum | undefined;
  /** In the fast mode, rows up to this seq are covered by a signed checkpoint of the range. */
  let signedUpTo = 0;
  let report: ((n: number) => void) | undefined;
  let unreported = 0;
  /** The last seq the row function took, and how many rows it took in this read. */
  let lastSeq = 0;
  let taken = 0;
  /** Set when a row needs the slow path (its seq) or the chain has a problem: the rest of the read is skipped. */
  let haltSeq: number | undefined;
  let haltProblem: ChainProblem | undefined;

  /** The current read's stored bodies (BODIES_SQL) and where the next row's starts. */
  let bodies: Buffer = Buffer.alloc(0);
  let bodyAt = 0;

  /**
   * Whether the row's stored body (`bodies` from `start`) hashes to its hash and matches its index
   * columns (and, per record, its account rows).
   */
  const rowIsGood = (a: RowArgs, start: number): boolean => {
    const [seq, id, prevHash, hash, time, namespace, kind, verdict, serviceAccounts, taskRun, pipelineRun, nsSeq, objectDigest, record, bodyLength, saKeys] = a;
    if (!isText(id) || !isText(prevHash) || !isText(hash) || !isText(time) || !isText(namespace) || !isText(kind) || !isText(verdict) || !isText(serviceAccounts)) return false;
    if (!isTextOrNull(taskRun) || !isTextOrNull(pipelineRun) || !isTextOrNull(objectDigest) || !(nsSeq === null || typeof nsSeq === 'number')) return false;
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1 || prevHash.length !== 64) return false;
    let bytes: Buffer;
    if (bodyLength === null) {
      // No stored body (a v1 row: its text); a body that is not a blob has no record here either.
      if (!isText(record) || digest('sha256', prevHash + record, 'hex') !== hash) return false;
      bytes = Buffer.from(record, 'utf8');
    } else {
      if (typeof bodyLength !== 'number' || start + bodyLength > bodies.length) return false;
      try {
        bytes = decode(bodies.subarray(start, start + bodyLength));
      } catch {
        return false;
      }
      // prevHash (64 ASCII hex digits) goes into the 64 bytes of headroom before the body: one buffer, one hash.
      const whole = Buffer.from(bytes.buffer, bytes.byteOffset - 64, bytes.length + 64);
      if (whole.write(prevHash, 0, 64, 'latin1') !== 64 || digest('sha256', whole, 'hex') !== hash) return false;
    }
    if (!(accountKey !== undefined && seq <= signedUpTo ? scanSignedBody(bytes, at) : scanBody(bytes, at))) return false;
    if (
      !isStringField(bytes, at, FIELD.id, id) ||
      !isStringField(bytes, at, FIELD.replica, writer) ||
      !isIntegerField(bytes, at, FIELD.seq, seq) ||
      !isStringField(bytes, at, FIELD.prevHash, prevHash) ||
      !isStringField(bytes, at, FIELD.time, time) ||
      !isStringField(bytes, at, FIELD.namespace, namespace) ||
      !isObjectField(bytes, at, FIELD.kind) ||
      !isStringField(bytes, at, FIELD.kindKind, kind) ||
      !isStringField(bytes, at, FIELD.verdict, verdict) ||
      !isRawField(bytes, at, FIELD.serviceAccounts, serviceAccounts) ||
      !(nsSeq === null ? isAbsent(at, FIELD.nsSeq) : isIntegerField(bytes, at, FIELD.nsSeq, nsSeq)) ||
      !(objectDigest === null ? isAbsent(at, FIELD.objectDigest) : objectDigest.length === 64 && isLowerHexField(bytes, at, FIELD.objectDigest, objectDigest))
    ) {
      return false;
    }
    // tekton.taskRun and tekton.pipelineRun: a null column is an absent member (or no tekton at all).
    if (isAbsent(at, FIELD.tekton)) {
      if (taskRun !== null || pipelineRun !== null) return false;
    } else if (
      !isObjectField(bytes, at, FIELD.tekton) ||
      !(taskRun === null ? isAbsent(at, FIELD.taskRun) : isStringField(bytes, at, FIELD.taskRun, taskRun)) ||
      !(pipelineRun === null ? isAbsent(at, FIELD.pipelineRun) : isStringField(bytes, at, FIELD.pipelineRun, pipelineRun))
    ) {
      return false;
    }
    const keys = saKeysFor(serviceAccounts);
    if (keys === null) return false;
    if (!accountKey) return saKeys === (keys.length ? keys.map((k) => `${k}\t${time}`).join('\n') : null);
    // The fields compared above are JSON strings without escapes: no tab or newline in them.
    if (accounts && keys.length) addLines(accounts, accountKey, `${time}\t${id}\t${namespace}\t${kind}\t${verdict}\t${writer}\t`, keys);
    return true;
  };

  const onRow = (...a: RowArgs): number => {
    taken++;
    const start = bodyAt;
    if (typeof a[14] === 'number') bodyAt += a[14];
    if (haltSeq !== undefined || haltProblem !== undefined) return 0;
    const seq = a[0];
    if (typeof seq === 'number' && seq <= lastSeq) throw new Error(`verify: SQLite handed seq ${seq} after ${lastSeq}`);
    if (typeof seq !== 'number' || !rowIsGood(a, start)) {
      // The slow path reads the row again by seq (a number: the range query compares seq with numbers).
      haltSeq = seq as number;
      return 0;
    }
    lastSeq = seq;
    const problem = v.addChecked(writer, a[1] as string, seq, a[2] as string, a[3] as string);
    if (problem) {
      haltProblem = problem;
      return 0;
    }
    if (++unreported === PROGRESS_ROWS) {
      report?.(unreported);
      unreported = 0;
    }
    return 1;
  };
  db.function('tzw_verify_row', { deterministic: false, varargs: true }, onRow as (...a: unknown[]) => number);

  // The rows of a read, (after, to] by seq, in seq order: the range scan of the (writer, seq)
  // index, which the function sees row by row (onRow refuses any other order). count(*) says how
  // many rows there were.
  const readSql = (saKeys: string) =>
    `SELECT count(tzw_verify_row(${rowArgs(saKeys)})) AS taken, count(*) AS n FROM decisions d WHERE d.writer = ? AND d.seq > ? AND d.seq <= ?`;
  const readSetWise = db.prepare(readSql('NULL'));
  const readPerRecord = db.prepare(readSql(SA_KEYS_SQL));
  const readBodies = db.prepare(BODIES_SQL).pluck();
  /** The bodies and the rows in one read transaction: the same rows, in the same order. */
  const readChunk = db.transaction((read: Database.Statement, writer: string, after: number, to: number): number => {
    bodies = (readBodies.get(writer, after, to) as Buffer | null) ?? Buffer.alloc(0);
    bodyAt = 0;
    return (read.get(writer, after, to) as { n: number }).n;
  });
  const nextSeq = db.prepare('SELECT min(seq) FROM decisions WHERE writer = ? AND seq > ? AND seq <= ?').pluck();
  const slowRow = db.prepare(`SELECT ${CHAIN_COLUMNS} FROM decisions d WHERE d.writer = ? AND d.seq = ?`).raw(true);

  return {
    verify(range: ChainRange, onRows?: (n: number) => void): RangeOutcome {
      writer = range.writer;
      v = toChainVerifier(range.evidence);
      if (range.start) v.resume(writer, { ...range.start, records: 0 });
      accountKey = range.accountKey;
      accounts = accountKey ? emptyAccountSum() : undefined;
      signedUpTo = 0;
      for (const c of range.evidence.checkpoints) {
        if (!c.error && c.cp.writer === writer && c.cp.size <= range.hi && c.cp.size > signedUpTo) signedUpTo = c.cp.size;
      }
      report = onRows;
      unreported = 0;
      const read = accountKey ? readSetWise : readPerRecord;
      let slowRows = 0;
      const done = (outcome: Omit<RangeOutcome, 'slowRows'>): RangeOutcome => {
        if (unreported > 0) onRows?.(unreported);
        unreported = 0;
        return { ...outcome, slowRows };
      };
      const slow = (raw: RawDecisionRow): ChainProblem | 'foreign' | undefined => {
        slowRows++;
        const row = toDecisionRow(raw);
        const entry = toChainEntry(row, columnProblem);
        if (entry.record.replica !== writer) return 'foreign';
        const problem = v.add(entry.record, entry.body, entry.problem);
        if (!problem && accounts) {
          const keys = Array.isArray(entry.record.serviceAccounts) ? saKeysOf(entry.record.serviceAccounts) : [];
          const fields = [row.time, row.id, row.namespace, row.kind, row.verdict, writer];
          if (![...keys, ...fields].every(isLineField)) accounts = undefined;
          else addLines(accounts, accountKey!, `${fields.join('\t')}\t`, keys);
        }
        return problem;
      };
      let after = range.lo;
      for (;;) {
        // Reads of CHUNK seqs from the next row on (seqs may have gaps, or start anywhere).
        const next = nextSeq.get(writer, after, range.hi) as number | null;
        if (next === null) break;
        after = Math.max(after, next - 1);
        const to = Math.min(range.hi, after + CHUNK);
        lastSeq = after;
        taken = 0;
        haltSeq = undefined;
        haltProblem = undefined;
        const n = readChunk(read, writer, after, to);
        if (n !== taken) throw new Error(`verify: SQLite read ${n} rows but checked ${taken}`);
        if (haltProblem) return done({ problem: haltProblem });
        if (haltSeq !== undefined) {
          const raw = slowRow.get(writer, haltSeq) as RawDecisionRow | undefined;
          // Gone since the read (a concurrent prune): the chain then shows the gap.
          const problem = raw ? slow(raw) : undefined;
          if (problem === 'foreign') return done({ foreign: true });
          if (problem) return done({ problem });
          if (++unreported >= PROGRESS_ROWS) {
            onRows?.(unreported);
            unreported = 0;
          }
          after = haltSeq;
          continue;
        }
        after = to;
      }
      const state = v.stateOf(writer);
      // Bodies read only at their ends stand only if the chain reached the checkpoint that covers
      // them (rows gone since the plan could end the range short of it): else no set-wise result,
      // so verify.ts runs the strict check.
      if (signedUpTo > 0 && (state?.seq ?? 0) < signedUpTo) accounts = undefined;
      return done({ ...(state ? { state } : {}), ...(accounts ? { accounts } : {}) });
    },
    close() {
      db.close();
    },
  };
}
