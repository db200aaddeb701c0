/**
 * Verification of a SQLite store's chains on worker threads (one per core by default).
 *
 * Plan: each writer's chain is cut into ranges of records (lo, hi] at trustworthy signed
 * checkpoints: a checkpoint at size S says record S hashed H, so the range after it starts from
 * (S, H) without waiting for the range before it. The cuts are read from the checkpoints already
 * in memory, once; each range is sent only the checkpoints inside it (and its writer's anchors).
 * Workers (verify-worker.ts, verify-range.ts) verify ranges independently.
 *
 * Join: ranges are taken in chain order (writer, then seq). A range's result stands when the range
 * before it ended exactly where the cut assumed (seq S, hash H): then every check it made is the
 * check a sequential verify would have made, and its first problem is the sequential verify's
 * first problem. When the range before ended elsewhere (its tail was deleted), or a row named
 * another writer, the whole store is verified sequentially instead (only a tampered store gets
 * there), so the report is always exactly the sequential one. The tail checks (truncation,
 * checkpoints beyond the chain, pending anchors) are the sequential verifier's finish().
 *
 * ServiceAccount index: the plan is read in one read transaction of its own connection, which
 * then sums every decision_sas row (verify-accounts.ts) while the workers run, each range summing
 * the rows its records imply. Equal sums, and every range clean, finish it; otherwise (a tampered
 * store, or a record whose index line is ambiguous) the ranges run again in the strict mode
 * (verify-range.ts: each record's index rows looked up, every body validated in full), so the
 * first problem named is the same as the sequential verify's.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import Database from 'better-sqlite3';
import type { Worker } from 'node:worker_threads';
import { toChainVerifier, type CheckedEvidence, type VerifyResult, type WriterState } from '../evidence/chain.js';
import { createWriterThread } from '../thread.js';
import type { ChainVerifyOptions } from '../port.js';
import { mapForReading, type ChainRange, type RangeOutcome } from './verify-range.js';
import type { VerifyWorkerReply, VerifyWorkerRequest } from './verify-worker.js';
import { addAccountSums, emptyAccountSum, sameAccountSums, sumAccountRows, type AccountKey, type AccountSum } from './verify-accounts.js';

/**
 * Ranges: about 32 per worker (the last range of one worker is the time the other waits: at 1M
 * records ~0.3 s instead of ~1 s with eight), at least 20,000 records each (cut at checkpoints)
 * unless `rangeRecords` says otherwise.
 */
export type ParallelVerifyOptions = ChainVerifyOptions;

const MIN_RANGE_RECORDS = 20_000;
const RANGES_PER_WORKER = 32;

interface PlannedRange extends ChainRange {
  id: number;
}

/** The writers of the store with their first and last seq, in SQL order (the order streamChain reads). */
function loadWriterBounds(db: Database.Database): Array<{ writer: string; lo: number; hi: number }> {
  const next = db.prepare('SELECT writer FROM decisions WHERE writer > ? ORDER BY writer LIMIT 1').pluck();
  const bounds = db.prepare('SELECT min(seq) AS lo, max(seq) AS hi FROM decisions WHERE writer = ?');
  const out: Array<{ writer: string; lo: number; hi: number }> = [];
  let writer = next.get('') as string | undefined;
  // '' itself is a possible writer id only in a tampered store; the sequential fallback covers it.
  if ((db.prepare("SELECT 1 FROM decisions WHERE writer = '' LIMIT 1").get()) !== undefined) return [{ writer: '', lo: Number.NaN, hi: Number.NaN }];
  while (writer !== undefined) {
    const b = bounds.get(writer) as { lo: number; hi: number };
    out.push({ writer, lo: b.lo, hi: b.hi });
    writer = next.get(writer) as string | undefined;
  }
  return out;
}

/** Cuts each writer's chain at trustworthy checkpoints into ranges of at least `minRecords`. */
export function toChainRanges(
  writers: Array<{ writer: string; lo: number; hi: number }>,
  evidence: CheckedEvidence,
  minRecords: number,
): PlannedRange[] {
  const cpsOf = new Map<string, CheckedEvidence['checkpoints']>();
  for (const c of evidence.checkpoints) {
    const list = cpsOf.get(c.cp.writer);
    if (list) list.push(c);
    else cpsOf.set(c.cp.writer, [c]);
  }
  const anchorsOf = new Map<string, CheckedEvidence['anchors']>();
  for (const a of evidence.anchors) {
    const list = anchorsOf.get(a.anchor.writer);
    if (list) list.push(a);
    else anchorsOf.set(a.anchor.writer, [a]);
  }
  const ranges: PlannedRange[] = [];
  for (const { writer, lo, hi } of writers) {
    const cps = (cpsOf.get(writer) ?? []).slice().sort((a, b) => a.cp.size - b.cp.size);
    const anchors = anchorsOf.get(writer) ?? [];
    let from = Number.MIN_SAFE_INTEGER;
    let start: WriterState | undefined;
    let k = 0;
    const push = (to: number, nextStart?: WriterState) => {
      const inRange = [];
      // The first range also gets the checkpoints of the pruned range before it (start() checks their signatures).
      while (k < cps.length && (cps[k]?.cp.size ?? 0) <= to) inRange.push(cps[k++]!);
      ranges.push({ id: ranges.length, writer, lo: from, hi: to, ...(start ? { start } : {}), evidence: { checkpoints: inRange, anchors, counts: { checkpoints: 0, anchors: 0 } } });
      start = nextStart;
    };
    let last = Math.max(lo - 1, 0);
    for (let i = 0; i < cps.length; i++) {
      const c = cps[i]!;
      const size = c.cp.size;
      if (c.error || size < lo || size >= hi || size - last < minRecords) continue;
      // One cut per size: a second checkpoint at the same size is checked by the range that ends there.
      if (cps[i + 1]?.cp.size === size) continue;
      push(size, { seq: size, head: c.cp.headHash, lastId: '', records: 0, startSeq: 0, maxSignedSize: size });
      from = size;
      last = size;
    }
    push(hi);
  }
  return ranges;
}

/**
 * Whether the set-wise account index check settles it: every range ran clean and summed its
 * records' index lines, and together they equal the index's own sum.
 */
function isAccountIndexWhole(outcomes: RangeOutcome[], indexSum: AccountSum | undefined): boolean {
  if (!indexSum) return false;
  let implied = emptyAccountSum();
  for (const o of outcomes) {
    if (o.problem || o.foreign || !o.accounts) return false;
    implied = addAccountSums(implied, o.accounts);
  }
  return sameAccountSums(implied, indexSum);
}

/** Starts `n` verify workers on `path`; resolves once each has opened the file. */
async function startWorkers(path: string, n: number): Promise<Worker[]> {
  const workers: Worker[] = [];
  try {
    for (let i = 0; i < n; i++) workers.push(createWriterThread(import.meta.url, './verify-worker', { path }));
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            const onMessage = (m: VerifyWorkerReply) => {
              if (m.t !== 'ready') return;
              w.off('message', onMessage);
              w.off('error', reject);
              resolve();
            };
            w.on('message', onMessage);
            w.once('error', reject);
          }),
      ),
    );
    return workers;
  } catch (err) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }
}

/** Runs every range on the workers (each takes the next range when it finishes one). */
async function runRanges(workers: Worker[], ranges: PlannedRange[], onRows: (n: number) => void): Promise<RangeOutcome[]> {
  const outcomes: RangeOutcome[] = new Array(ranges.length);
  let next = 0;
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          const feed = () => {
            const range = ranges[next++];
            if (!range) {
              w.off('message', onMessage);
              resolve();
              return;
            }
            w.postMessage({ t: 'range', id: range.id, range } satisfies VerifyWorkerRequest);
          };
          const onMessage = (m: VerifyWorkerReply) => {
            try {
              if (m.t === 'rows') onRows(m.n);
              else if (m.t === 'done') {
                outcomes[m.id] = m.outcome;
                feed();
              } else if (m.t === 'failed') reject(Object.assign(new Error(`verify worker: ${m.message}`), { code: 'ERR_STORE_UNAVAILABLE' }));
            } catch (err) {
              reject(err as Error);
            }
          };
          w.on('message', onMessage);
          w.once('error', reject);
          w.once('exit', (code) => reject(new Error(`verify worker exited (code ${code})`)));
          feed();
        }),
    ),
  );
  return outcomes;
}

/**
 * Verifies the SQLite store at `path` against `evidence` (every checkpoint and anchor, signatures
 * checked once). `sequential` is the single-threaded verification the result falls back to (see
 * the module comment).
 */
export async function verifySqliteChains(
  path: string,
  evidence: CheckedEvidence,
  sequential: () => Promise<VerifyResult>,
  opts: ParallelVerifyOptions = {},
): Promise<VerifyResult> {
  // The plan and the account index sum read one snapshot: rows appended meanwhile are in neither.
  const snapshot = new Database(path, { readonly: true, fileMustExist: true });
  mapForReading(snapshot);
  let outcomes: RangeOutcome[];
  let ranges: PlannedRange[];
  try {
    snapshot.exec('BEGIN');
    const writers = loadWriterBounds(snapshot);
    if (writers.some((w) => !Number.isSafeInteger(w.lo) || !Number.isSafeInteger(w.hi))) return sequential();
    const workerCount = Math.max(1, Math.floor(opts.workers ?? availableParallelism()));
    const total = writers.reduce((n, w) => n + (w.hi - w.lo + 1), 0);
    const minRecords = opts.rangeRecords ?? Math.max(MIN_RANGE_RECORDS, Math.ceil(total / (workerCount * RANGES_PER_WORKER)));
    ranges = toChainRanges(writers, evidence, Math.max(1, minRecords));
    const key = randomBytes(8);
    const accountKey: AccountKey = [key.readInt32LE(0), key.readInt32LE(4)];
    const workers = await startWorkers(path, Math.min(workerCount, ranges.length));
    try {
      let done = 0;
      let stopped: unknown;
      const stop = (err: unknown) => {
        if (stopped !== undefined) return;
        stopped = err;
        for (const w of workers) void w.terminate();
      };
      // Reported per record, as a sequential verify does (the callback is cheap, and a progress line
      // then moves the same way); a throw (Ctrl-C) stops the workers.
      const onRecords = opts.onRecords;
      const onRows = (n: number) => {
        if (!onRecords || stopped !== undefined) return;
        try {
          for (let i = 0; i < n; i++) {
            const waiting = onRecords(++done);
            if (waiting) waiting.catch(stop);
          }
        } catch (err) {
          stop(err);
        }
      };
      const run = async (rs: PlannedRange[]): Promise<RangeOutcome[]> => {
        let out: RangeOutcome[];
        try {
          out = await runRanges(workers, rs, onRows);
        } catch (err) {
          throw stopped ?? err;
        }
        if (stopped !== undefined) throw stopped;
        return out;
      };
      let indexSum: AccountSum | undefined;
      [outcomes, indexSum] = await Promise.all([run(ranges.map((r) => ({ ...r, accountKey }))), sumAccountRows(snapshot, accountKey)]);
      if (!isAccountIndexWhole(outcomes, indexSum)) {
        done = 0;
        outcomes = await run(ranges);
      }
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
  } finally {
    snapshot.close();
  }

  const joined = toChainVerifier(evidence);
  let state: WriterState | undefined;
  for (let i = 0; i < ranges.length; i++) {
    const range = ranges[i]!;
    const out = outcomes[i]!;
    if (!range.start) state = undefined;
    else if (!state || state.seq !== range.start.seq || state.head !== range.start.head) return sequential();
    if (out.foreign) return sequential();
    if (out.problem) return { ok: false, firstBad: out.problem };
    const end = out.state;
    if (end) {
      if (!state) state = end;
      else {
        const pending = state.pendingAnchor;
        state = {
          ...state,
          seq: end.seq,
          head: end.head,
          lastId: end.records > 0 ? end.lastId : state.lastId,
          records: state.records + end.records,
          maxSignedSize: Math.max(state.maxSignedSize, end.maxSignedSize),
        };
        // The chain passed the anchor it was waiting for (the range checked the anchor's hash there).
        if (pending !== undefined && end.seq >= pending) delete state.pendingAnchor;
      }
    }
    const nextRange = ranges[i + 1];
    if (state && (!nextRange || nextRange.writer !== range.writer)) joined.resume(range.writer, state);
  }
  return joined.finish();
}
