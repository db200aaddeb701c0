/**
 * Namespace evidence bundles: every decision of ONE namespace in a time range, with what an auditor
 * needs to verify offline that none is missing, altered or reordered — and nothing about any other
 * namespace but hashes. The shape and why it is sound: notes/RECORD-V2.md, refinement 2; DESIGN.md
 * "Provably complete namespace evidence".
 *
 * Format (JSON Lines, `type` first; header, then checkpoints, then records):
 *   {"type":"header","format":"tzw-namespace-bundle","version":1,"created","namespace","since"?,"until"?,"jwks"}
 *   {"type":"checkpoint","checkpoint":{writer,size,headHash,time,nsRoot?,nsSize?,jws},"head"?:NamespaceInclusion,"absence"?:NamespaceAbsence}
 *   {"type":"record","record":{...the namespace's own record, in full}}   (per writer, nsSeq order)
 *
 * Per writer the exporter gives: the first namespace checkpoint (its time bounds every record written
 * before the namespace chains began), the last namespace checkpoint before `since` at which the
 * namespace has a head (with its inclusion proof), the writer's latest namespace checkpoint (with the
 * inclusion proof of the namespace's head there, or an absence proof), and every record of the
 * namespace after the lower head — through the latest checkpoint and beyond it (those are reported as
 * not yet covered by a signed checkpoint).
 *
 * The export side reads through NamespaceEvidenceSource (the store's port methods); building the
 * lines and verifying them is pure (toNamespaceBundleLines, verifyNamespaceBundleLines); the file
 * functions at the end do the I/O.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { ChainedRecord } from '../../core/record.js';
import type { Checkpoint } from '../port.js';
import { toCanonicalTime } from '../query.js';
import { GENESIS_HASH, hashRecord } from './chain.js';
import { writeLinesAtomically } from './atomic-lines.js';
import {
  toNamespaceAbsence,
  toNamespaceInclusion,
  verifyNamespaceAbsence,
  verifyNamespaceInclusion,
  type NamespaceAbsence,
  type NamespaceHead,
  type NamespaceInclusion,
} from './merkle.js';
import { CHECKPOINT_TYP, createStatementVerifier, parseJwks, type Jwks, type StatementVerifier } from './signing.js';

export const NAMESPACE_BUNDLE_FORMAT = 'tzw-namespace-bundle';
export const NAMESPACE_BUNDLE_VERSION = 1;

/** A checkpoint as the store keeps it; v2 checkpoints also sign the namespace tree (nsRoot, nsSize). */
export interface NsCheckpoint extends Checkpoint {
  nsRoot?: string;
  nsSize?: number;
}

/** A v2 record: a DecisionRecord chained on its writer and in its namespace chain on that writer. */
export type NsRecord = ChainedRecord & { nsSeq?: number; nsPrevHash?: string };

export interface NamespaceRange {
  namespace: string;
  /** RFC 3339, inclusive. */
  since?: string;
  /** RFC 3339, exclusive. */
  until?: string;
}

export interface NamespaceBundleHeader extends NamespaceRange {
  type: 'header';
  format: typeof NAMESPACE_BUNDLE_FORMAT;
  version: number;
  created: string;
  jwks: Jwks;
}

export interface CheckpointLine {
  type: 'checkpoint';
  checkpoint: NsCheckpoint;
  head?: NamespaceInclusion;
  absence?: NamespaceAbsence;
}

/** What the exporter reads from a store (port methods of the v2 store). */
export interface NamespaceEvidenceSource {
  /** Every checkpoint of every writer. */
  checkpoints(): Promise<NsCheckpoint[]>;
  /** The namespace heads a v2 checkpoint committed to (persisted with it). */
  checkpointHeads(writer: string, size: number): Promise<NamespaceHead[]>;
  /** Writers that hold records of `namespace` (a writer may have records but no checkpoint yet). */
  writers(namespace: string): Promise<string[]>;
  /** The namespace's v2 records on `writer` with nsSeq > afterNsSeq, in nsSeq order. */
  namespaceRecords(writer: string, namespace: string, afterNsSeq: number): AsyncIterable<NsRecord>;
  /**
   * Optional, for a progress total only: the namespace's current head nsSeq on each writer (its
   * chains are contiguous, so head − afterNsSeq is how many records namespaceRecords will give).
   */
  namespaceHeads?(namespace: string): Promise<Array<{ writer: string; nsSeq: number }>>;
}

/**
 * Progress of building or verifying a namespace bundle (the CLI's progress line; the same contract
 * as bundle.ts's EvidenceProgress): may return a promise (awaited: the CLI lets signals through
 * there) and may throw to stop the work (an export then leaves no file).
 */
export type NamespaceProgress = (event: { phase: string; done: number; total?: number; unit?: string }) => void | Promise<void>;

async function report(onProgress: NamespaceProgress | undefined, phase: string, done: number, total?: number, unit?: string): Promise<void> {
  const waiting = onProgress?.({ phase, done, total, unit });
  if (waiting) await waiting;
}

function isNsCheckpoint(cp: NsCheckpoint): cp is NsCheckpoint & { nsRoot: string; nsSize: number } {
  return typeof cp.nsRoot === 'string' && typeof cp.nsSize === 'number';
}

function timeKey(t: string): string {
  return toCanonicalTime(t) ?? t;
}

/** Which checkpoints of one writer a namespace bundle needs. Pure. */
export interface WriterPlan {
  writer: string;
  /** The first checkpoint that signs namespace heads. */
  first?: NsCheckpoint;
  /** Namespace checkpoints before `since`, latest first: the first one is the lower boundary when the namespace has a head there. */
  lowerCandidates: NsCheckpoint[];
  /** The latest namespace checkpoint (the covering one). */
  upper?: NsCheckpoint;
  /** The latest checkpoint of a writer that has no namespace checkpoint yet. */
  latestV1?: NsCheckpoint;
}

/** Plans one writer's part of a namespace bundle from its checkpoints. Pure. */
export function toWriterPlan(writer: string, checkpoints: NsCheckpoint[], range: NamespaceRange): WriterPlan {
  const mine = checkpoints.filter((c) => c.writer === writer).sort((a, b) => a.size - b.size);
  const v2 = mine.filter(isNsCheckpoint);
  const since = range.since === undefined ? undefined : timeKey(range.since);
  const plan: WriterPlan = { writer, lowerCandidates: [] };
  if (v2.length === 0) {
    const latest = mine.at(-1);
    if (latest) plan.latestV1 = latest;
    return plan;
  }
  plan.first = v2[0]!;
  plan.upper = v2.at(-1)!;
  if (since !== undefined) plan.lowerCandidates = v2.filter((c) => timeKey(c.time) < since).reverse();
  return plan;
}

/**
 * Builds the bundle's lines (each a JSON text without newline), reading through `source`. Memory is
 * per writer and checkpoint, not per record (records are yielded as they are read). `onProgress`
 * sees `checkpoints` (writers planned / writers) and then `records` (done / total when the source
 * has namespaceHeads). Errors: the source's, the callback's (Ctrl-C), or MerkleInputError when
 * persisted heads are malformed.
 */
export async function* toNamespaceBundleLines(
  source: NamespaceEvidenceSource,
  range: NamespaceRange,
  jwks: Jwks,
  created: string,
  opts: { onProgress?: NamespaceProgress } = {},
): AsyncGenerator<string> {
  const { onProgress } = opts;
  const header: NamespaceBundleHeader = {
    type: 'header',
    format: NAMESPACE_BUNDLE_FORMAT,
    version: NAMESPACE_BUNDLE_VERSION,
    created,
    namespace: range.namespace,
    ...(range.since !== undefined ? { since: range.since } : {}),
    ...(range.until !== undefined ? { until: range.until } : {}),
    jwks,
  };
  yield JSON.stringify(header);
  const checkpoints = await source.checkpoints();
  const writers = [...new Set([...checkpoints.map((c) => c.writer), ...(await source.writers(range.namespace))])].sort();
  const plans: Array<{ writer: string; after: number }> = [];
  await report(onProgress, 'checkpoints', 0, writers.length, 'writers');
  for (const writer of writers) {
    const plan = toWriterPlan(writer, checkpoints, range);
    const lines = new Map<number, CheckpointLine>();
    const put = (cp: NsCheckpoint): CheckpointLine => {
      let line = lines.get(cp.size);
      if (!line) lines.set(cp.size, (line = { type: 'checkpoint', checkpoint: cp }));
      return line;
    };
    let after = 0;
    if (plan.latestV1) put(plan.latestV1);
    if (plan.first) put(plan.first);
    // Heads only grow: when the namespace has no head at the latest namespace checkpoint before
    // `since`, it had none at any earlier one, and its chain on this writer starts after it (genesis).
    const lower = plan.lowerCandidates[0];
    if (lower) {
      const head = toNamespaceInclusion(await source.checkpointHeads(writer, lower.size), range.namespace);
      if (head) {
        put(lower).head = head;
        after = head.head.nsSeq;
      }
    }
    if (plan.upper) {
      const heads = await source.checkpointHeads(writer, plan.upper.size);
      const head = toNamespaceInclusion(heads, range.namespace);
      const line = put(plan.upper);
      if (head) line.head = head;
      else line.absence = toNamespaceAbsence(heads, range.namespace)!;
    }
    for (const line of [...lines.values()].sort((a, b) => a.checkpoint.size - b.checkpoint.size)) yield JSON.stringify(line);
    plans.push({ writer, after });
    await report(onProgress, 'checkpoints', plans.length, writers.length, 'writers');
  }
  let total: number | undefined;
  if (onProgress && source.namespaceHeads) {
    const heads = new Map((await source.namespaceHeads(range.namespace)).map((h) => [h.writer, h.nsSeq]));
    total = plans.reduce((sum, p) => sum + Math.max(0, (heads.get(p.writer) ?? 0) - p.after), 0);
  }
  let done = 0;
  await report(onProgress, 'records', 0, total);
  for (const { writer, after } of plans) {
    for await (const record of source.namespaceRecords(writer, range.namespace, after)) {
      yield `{"type":"record","record":${JSON.stringify(record)}}`;
      // Inline (not `await report(…)`): an await per record only when the callback asks for one.
      const waiting = onProgress?.({ phase: 'records', done: ++done, total });
      if (waiting) await waiting;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Verification

/** What was proven for one writer's chain of the namespace. */
export interface WriterCoverage {
  writer: string;
  /** 'complete': proven up to `size`; 'pre-namespace': the writer has no namespace checkpoint in the bundle. */
  status: 'complete' | 'pre-namespace';
  /** Start of the proven range: `since`, or the time before which records predate the namespace chains / lie in the signed prefix. */
  from?: string;
  /** True when `from` is a checkpoint's time rather than `since` (records up to and at that time are not claimed). */
  fromIsBound?: boolean;
  /** End of the claim: `until`, else the covering checkpoint's time. */
  to?: string;
  /** The covering checkpoint. */
  size?: number;
  checkpointTime?: string;
  /** Records of the namespace in the bundle for this writer, covered by the checkpoint. */
  records: number;
  /** Of those, inside [since, until). */
  inRange: number;
  /** Records after the covering checkpoint (hash-chained, not yet signed). */
  uncovered: number;
  uncoveredInRange: number;
}

export interface NamespaceProblem {
  writer: string;
  /** The record at fault (its nsSeq, id) when there is one; 0 / '' otherwise. */
  nsSeq: number;
  id: string;
  problem: string;
}

export type NamespaceVerifyResult =
  | { ok: true; namespace: string; since?: string; until?: string; writers: WriterCoverage[]; warnings: string[] }
  | { ok: false; namespace: string; firstBad: NamespaceProblem };

interface CheckedCp {
  cp: NsCheckpoint & { nsRoot: string; nsSize: number };
  head?: NamespaceHead;
  absent?: true;
}

interface WriterState {
  writer: string;
  v2: CheckedCp[];
  /** Earliest time among the writer's namespace checkpoints (bounds every v1 record). */
  firstTime?: string;
  upper?: CheckedCp;
  headsBySeq: Map<number, CheckedCp[]>;
  hasV1Checkpoint: boolean;
  // records
  started: boolean;
  startNsSeq: number;
  /** nsPrevHash of the first record: the signed lower head it links to. */
  startHash: string;
  lastNsSeq: number;
  lastHash: string;
  lastSeq: number;
  lastId: string;
  records: number;
  inRange: number;
  uncovered: number;
  uncoveredInRange: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(err: unknown): string {
  const code = isObject(err) && 'code' in err ? `${String(err.code)}: ` : '';
  return code + (err instanceof Error ? err.message : String(err));
}

/** Thrown inside the verifier to stop at the first problem. */
class Stop {
  constructor(readonly problem: NamespaceProblem) {}
}

/**
 * Verifies a namespace bundle given as lines (the header first). `jwksOverride` should be the
 * webhook's published JWKS; without it the header's keys are used and a warning says so.
 * Never throws for bad content: the first problem comes back as `firstBad`.
 */
export async function verifyNamespaceBundleLines(lines: AsyncIterable<string> | Iterable<string>, jwksOverride?: Jwks): Promise<NamespaceVerifyResult> {
  let namespace = '';
  const fail = (writer: string, problem: string, nsSeq = 0, id = ''): Stop => new Stop({ writer, nsSeq, id, problem });
  try {
    let header: NamespaceBundleHeader | undefined;
    let verify: StatementVerifier | undefined;
    const warnings: string[] = [];
    const writers = new Map<string, WriterState>();
    let since: string | undefined;
    let until: string | undefined;
    let inRecords = false;
    let n = 0;
    const stateOf = (writer: string): WriterState => {
      let st = writers.get(writer);
      if (!st) {
        st = {
          writer,
          v2: [],
          headsBySeq: new Map(),
          hasV1Checkpoint: false,
          started: false,
          startNsSeq: 0,
          startHash: GENESIS_HASH,
          lastNsSeq: 0,
          lastHash: GENESIS_HASH,
          lastSeq: 0,
          lastId: '',
          records: 0,
          inRange: 0,
          uncovered: 0,
          uncoveredInRange: 0,
        };
        writers.set(writer, st);
      }
      return st;
    };
    const inRangeTime = (t: string): boolean => {
      const k = timeKey(t);
      return (since === undefined || k >= since) && (until === undefined || k < until);
    };

    for await (const line of lines) {
      n++;
      if (line === '') continue;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        throw fail('', n === 1 ? 'line 1 is not JSON: this is not a namespace bundle' : `line ${n} is not JSON`);
      }
      if (!isObject(v)) throw fail('', `line ${n} is not a JSON object`);
      if (!header) {
        if (v.type !== 'header' || v.format !== NAMESPACE_BUNDLE_FORMAT) throw fail('', `line 1 is not a ${NAMESPACE_BUNDLE_FORMAT} header`);
        if (v.version !== NAMESPACE_BUNDLE_VERSION) throw fail('', `namespace bundle version ${JSON.stringify(v.version)} is not supported (expected ${NAMESPACE_BUNDLE_VERSION})`);
        if (typeof v.namespace !== 'string') throw fail('', 'the header names no namespace');
        namespace = v.namespace;
        for (const k of ['since', 'until'] as const) {
          if (v[k] === undefined) continue;
          const t = typeof v[k] === 'string' ? toCanonicalTime(v[k]) : undefined;
          if (t === undefined) throw fail('', `the header's ${k} ${JSON.stringify(v[k])} is not an RFC 3339 time`);
          if (k === 'since') since = t;
          else until = t;
        }
        header = v as unknown as NamespaceBundleHeader;
        let jwks: Jwks;
        if (jwksOverride) jwks = jwksOverride;
        else {
          const parsed = parseJwks(header.jwks);
          if (typeof parsed === 'string') throw fail('', `the header's jwks is not usable: ${parsed}`);
          jwks = parsed;
          warnings.push("verified with the keys inside the bundle; pass the webhook's published JWKS (--jwks) to rule out a re-signed bundle");
        }
        verify = createStatementVerifier(jwks);
        continue;
      }
      if (v.type === 'checkpoint') {
        if (inRecords) throw fail('', `line ${n}: a checkpoint after the records (checkpoints come first)`);
        await addCheckpoint(v, n);
      } else if (v.type === 'record') {
        if (!inRecords) {
          inRecords = true;
          finishCheckpoints();
        }
        addRecord(v, n);
      } else throw fail('', `line ${n} has unknown type ${JSON.stringify(v.type)}`);
    }
    if (!header) throw fail('', 'the file is empty: this is not a namespace bundle');
    if (!inRecords) finishCheckpoints();
    const coverage = [...writers.values()].sort((a, b) => (a.writer < b.writer ? -1 : a.writer > b.writer ? 1 : 0)).map(finishWriter);
    return {
      ok: true,
      namespace,
      ...(since !== undefined ? { since } : {}),
      ...(until !== undefined ? { until } : {}),
      writers: coverage,
      warnings,
    };

    async function addCheckpoint(v: Record<string, unknown>, lineNo: number): Promise<void> {
      const cp = v.checkpoint;
      if (!isObject(cp) || typeof cp.writer !== 'string' || typeof cp.jws !== 'string') throw fail('', `line ${lineNo}: a checkpoint line without a checkpoint`);
      const writer = cp.writer;
      let p: Record<string, unknown>;
      try {
        p = await verify!(cp.jws, CHECKPOINT_TYP);
      } catch (err) {
        throw fail(writer, `checkpoint at size ${String(cp.size)} (line ${lineNo}) is not trustworthy: ${describe(err)}`);
      }
      const keys = ['writer', 'size', 'headHash', 'time', 'nsRoot', 'nsSize'] as const;
      const diff = keys.filter((k) => p[k] !== cp[k]);
      if (diff.length) throw fail(writer, `checkpoint at size ${String(cp.size)} (line ${lineNo}): its ${diff.join(', ')} differ from the signed payload`);
      if (typeof p.size !== 'number' || !Number.isSafeInteger(p.size) || p.size < 0 || typeof p.time !== 'string' || toCanonicalTime(p.time) === undefined) {
        throw fail(writer, `checkpoint (line ${lineNo}): the signed payload has no valid size or time`);
      }
      const st = stateOf(writer);
      const signed = p as unknown as NsCheckpoint;
      if (!isNsCheckpoint(signed)) {
        if (v.head !== undefined || v.absence !== undefined) throw fail(writer, `checkpoint at size ${signed.size} signs no namespace heads (it predates them), yet the bundle gives a proof for it`);
        st.hasV1Checkpoint = true;
        return;
      }
      const checked: CheckedCp = { cp: signed };
      if (v.head !== undefined) {
        const inc = v.head as NamespaceInclusion;
        if (!isObject(inc) || !isObject(inc.head)) throw fail(writer, `checkpoint at size ${signed.size}: malformed inclusion proof`);
        if (inc.head.namespace !== namespace) {
          throw fail(writer, `checkpoint at size ${signed.size}: the inclusion proof is for another namespace's head, not for namespace ${JSON.stringify(namespace)}`);
        }
        if (!verifyNamespaceInclusion(inc, signed.nsRoot, signed.nsSize)) {
          throw fail(writer, `checkpoint at size ${signed.size}: the inclusion proof of namespace ${JSON.stringify(namespace)}'s head (nsSeq ${String(inc.head.nsSeq)}) does not match the signed nsRoot`);
        }
        checked.head = { namespace, nsSeq: inc.head.nsSeq, nsHeadHash: inc.head.nsHeadHash };
        const list = st.headsBySeq.get(inc.head.nsSeq);
        if (list) list.push(checked);
        else st.headsBySeq.set(inc.head.nsSeq, [checked]);
      } else if (v.absence !== undefined) {
        if (!isObject(v.absence) || !verifyNamespaceAbsence(v.absence as unknown as NamespaceAbsence, namespace, signed.nsRoot, signed.nsSize)) {
          throw fail(writer, `checkpoint at size ${signed.size}: the proof that namespace ${JSON.stringify(namespace)} has no records there does not match the signed nsRoot`);
        }
        checked.absent = true;
      }
      st.v2.push(checked);
      if (st.firstTime === undefined || timeKey(signed.time) < st.firstTime) st.firstTime = timeKey(signed.time);
    }

    function finishCheckpoints(): void {
      for (const st of writers.values()) {
        const proven = st.v2.filter((c) => c.head || c.absent).sort((a, b) => a.cp.size - b.cp.size);
        if (st.v2.length > 0 && proven.length === 0) {
          throw fail(st.writer, `the bundle shows neither namespace ${JSON.stringify(namespace)}'s head nor its absence at any namespace checkpoint of this writer`);
        }
        // Heads must grow with the checkpoints: a later checkpoint never has an older head.
        let prev: CheckedCp | undefined;
        for (const c of proven) {
          const seq = c.head?.nsSeq ?? 0;
          if (prev && seq < (prev.head?.nsSeq ?? 0)) {
            throw fail(st.writer, `checkpoint at size ${c.cp.size} signs an older head of the namespace (nsSeq ${seq}) than checkpoint at size ${prev.cp.size} (nsSeq ${prev.head?.nsSeq ?? 0})`);
          }
          if (c.absent && prev?.head) throw fail(st.writer, `checkpoint at size ${c.cp.size} shows the namespace absent after checkpoint at size ${prev.cp.size} signed its head`);
          prev = c;
        }
        st.upper = proven.at(-1);
      }
    }

    function addRecord(v: Record<string, unknown>, lineNo: number): void {
      const r = v.record;
      if (!isObject(r)) throw fail('', `line ${lineNo}: a record line without a record object`);
      const rec = r as unknown as NsRecord;
      const id = typeof rec.id === 'string' ? rec.id : '';
      const writer = typeof rec.replica === 'string' ? rec.replica : '';
      const nsSeq = typeof rec.nsSeq === 'number' ? rec.nsSeq : 0;
      if (rec.namespace !== namespace) {
        throw fail(writer, `record ${id || '(no id)'} (line ${lineNo}) belongs to another namespace: a foreign record was inserted`, nsSeq, id);
      }
      if (!writer) throw fail('', `record ${id} (line ${lineNo}) has no replica (writer id)`, nsSeq, id);
      if (!Number.isSafeInteger(rec.nsSeq) || nsSeq < 1 || typeof rec.nsPrevHash !== 'string') {
        throw fail(writer, `record ${id} (line ${lineNo}) has no namespace chain (nsSeq, nsPrevHash): records written before the namespace chains cannot be proven complete`, 0, id);
      }
      const { hash, ...rest } = rec;
      let computed: string;
      try {
        computed = hashRecord(rec.prevHash, rest as Omit<ChainedRecord, 'hash'>);
      } catch (err) {
        throw fail(writer, `record (line ${lineNo}) cannot be canonicalised: ${describe(err)}`, nsSeq, id);
      }
      if (computed !== hash) throw fail(writer, `hash mismatch: the record was changed after it was written (line ${lineNo})`, nsSeq, id);
      const st = stateOf(writer);
      if (!st.started) {
        st.started = true;
        st.startNsSeq = nsSeq - 1;
        st.startHash = rec.nsPrevHash;
        if (nsSeq === 1) {
          if (rec.nsPrevHash !== GENESIS_HASH) throw fail(writer, 'the namespace chain starts at nsSeq 1 but its nsPrevHash is not the genesis hash', nsSeq, id);
        } else {
          const lower = st.headsBySeq.get(nsSeq - 1)?.find((c) => c.head!.nsHeadHash === rec.nsPrevHash);
          if (!lower) {
            throw fail(
              writer,
              `records of the namespace before nsSeq ${nsSeq} are missing: the bundle has no signed head at nsSeq ${nsSeq - 1} for this record to link to (a record was removed, or the bundle starts inside the range)`,
              nsSeq,
              id,
            );
          }
        }
      } else {
        if (nsSeq <= st.lastNsSeq) throw fail(writer, `nsSeq ${nsSeq} comes after nsSeq ${st.lastNsSeq}: records were reordered or duplicated`, nsSeq, id);
        if (nsSeq !== st.lastNsSeq + 1) throw fail(writer, `nsSeq ${nsSeq} found where nsSeq ${st.lastNsSeq + 1} was expected: records of the namespace were removed or reordered (nsSeq ${st.lastNsSeq + 1}..${nsSeq - 1} not here)`, nsSeq, id);
        if (rec.nsPrevHash !== st.lastHash) throw fail(writer, `nsPrevHash does not match the hash of the previous record of the namespace (nsSeq ${st.lastNsSeq}): a record was removed, inserted or reordered`, nsSeq, id);
        if (!(rec.seq > st.lastSeq)) throw fail(writer, `seq ${String(rec.seq)} is not after seq ${st.lastSeq} of the previous record of the namespace: reordered`, nsSeq, id);
      }
      for (const c of st.headsBySeq.get(nsSeq) ?? []) {
        if (c.head!.nsHeadHash !== hash) {
          throw fail(writer, `the signed checkpoint at size ${c.cp.size} names the namespace's head at nsSeq ${nsSeq} as ${c.head!.nsHeadHash}, but this record's hash is ${hash}: altered or replaced`, nsSeq, id);
        }
        if (rec.seq > c.cp.size) throw fail(writer, `the record at nsSeq ${nsSeq} has seq ${rec.seq}, after the checkpoint at size ${c.cp.size} that signs it as the head`, nsSeq, id);
      }
      if (st.upper?.absent && rec.seq <= st.upper.cp.size) {
        throw fail(writer, `the checkpoint at size ${st.upper.cp.size} proves the namespace had no records on this writer, but this record has seq ${rec.seq}`, nsSeq, id);
      }
      const coveredUpTo = st.upper?.head?.nsSeq ?? 0;
      const inRange = inRangeTime(rec.time);
      if (nsSeq <= coveredUpTo) {
        st.records++;
        if (inRange) st.inRange++;
      } else {
        st.uncovered++;
        if (inRange) st.uncoveredInRange++;
      }
      st.lastNsSeq = nsSeq;
      st.lastHash = hash;
      st.lastSeq = rec.seq;
      st.lastId = id;
    }

    function finishWriter(st: WriterState): WriterCoverage {
      const base = { writer: st.writer, records: st.records, inRange: st.inRange, uncovered: st.uncovered, uncoveredInRange: st.uncoveredInRange };
      if (!st.upper) return { ...base, status: 'pre-namespace' };
      const upper = st.upper;
      const headSeq = upper.head?.nsSeq ?? 0;
      // Where the proven part of the chain starts: after a signed lower head, or at the namespace
      // chain's genesis. `bound`: every record of the namespace before the start has a time at or
      // before it — the earliest checkpoint signing the lower head (records are timed before they
      // are chained, checkpoints after), or for genesis the first namespace checkpoint (every record
      // written before the namespace chains began precedes it).
      const startSeq = st.started ? st.startNsSeq : headSeq;
      const startHash = st.started ? st.startHash : (upper.head?.nsHeadHash ?? GENESIS_HASH);
      if (st.started && st.lastNsSeq < headSeq) {
        throw fail(
          st.writer,
          `records of the namespace at nsSeq ${st.lastNsSeq + 1}..${headSeq} are missing: the signed checkpoint at size ${upper.cp.size} names its head at nsSeq ${headSeq}`,
          st.lastNsSeq + 1,
          st.lastId,
        );
      }
      let bound: string;
      if (startSeq === 0) bound = st.firstTime!;
      else {
        const lowers = (st.headsBySeq.get(startSeq) ?? []).filter((c) => c.head!.nsHeadHash === startHash);
        bound = lowers.map((c) => timeKey(c.cp.time)).sort()[0]!;
        if (since === undefined) {
          throw fail(
            st.writer,
            `records of the namespace at nsSeq 1..${startSeq} are not in the bundle, but it names no start time: without one it must start at the namespace chain's first record`,
            startSeq,
            '',
          );
        }
        if (since <= bound) {
          throw fail(
            st.writer,
            `the range starts at ${since}, but the earliest signed checkpoint before the bundle's first record of the namespace is at ${bound}: records of the namespace between them could be missing (a record was removed or moved out of the range)`,
            startSeq + 1,
            '',
          );
        }
      }
      const fromIsBound = since === undefined || since <= bound;
      return {
        ...base,
        status: 'complete',
        from: fromIsBound ? bound : since!,
        fromIsBound,
        to: until ?? timeKey(upper.cp.time),
        size: upper.cp.size,
        checkpointTime: upper.cp.time,
      };
    }
  } catch (err) {
    if (err instanceof Stop) return { ok: false, namespace, firstBad: err.problem };
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Files (I/O)

export interface NamespaceBundleSummary {
  path: string;
  records: number;
  checkpoints: number;
  writers: number;
}

/**
 * Writes the namespace bundle to `outPath` (atomically: `outPath.tmp`, then renamed), streaming;
 * `opts.onProgress` as for toNamespaceBundleLines. Errors: the source's, the callback's (Ctrl-C),
 * or fs errors naming the path; on any of them nothing is left under `outPath` or `outPath.tmp`.
 */
export async function writeNamespaceBundle(
  source: NamespaceEvidenceSource,
  range: NamespaceRange,
  outPath: string,
  jwks: Jwks,
  opts: { clock?: () => Date; onProgress?: NamespaceProgress } = {},
): Promise<NamespaceBundleSummary> {
  const summary: NamespaceBundleSummary = { path: outPath, records: 0, checkpoints: 0, writers: 0 };
  const writers = new Set<string>();
  const lines = toNamespaceBundleLines(source, range, jwks, (opts.clock ?? (() => new Date()))().toISOString(), { onProgress: opts.onProgress });
  await writeLinesAtomically(outPath, lines, (line) => {
    if (line.startsWith('{"type":"record"')) summary.records++;
    else if (line.startsWith('{"type":"checkpoint"')) {
      summary.checkpoints++;
      writers.add((JSON.parse(line) as CheckpointLine).checkpoint.writer);
    }
  });
  summary.writers = writers.size;
  return summary;
}

/** The `format` of a bundle file's header line, or undefined when line 1 is not a JSON header. Reads one line. */
export async function loadBundleFormat(path: string): Promise<string | undefined> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  try {
    for await (const line of rl) {
      try {
        const v: unknown = JSON.parse(line);
        return isObject(v) && typeof v.format === 'string' ? v.format : undefined;
      } catch {
        return undefined;
      }
    }
    return undefined;
  } finally {
    rl.close();
  }
}

/**
 * Verifies a namespace bundle file (streamed line by line, one pass). `opts.onProgress` sees the
 * bytes of the file read, as phase `checkpoints` and then `records` (total: the file's size).
 * Throws only when the file cannot be read, or what the callback throws (Ctrl-C).
 */
export async function verifyNamespaceBundleFile(path: string, jwks?: Jwks, opts: { onProgress?: NamespaceProgress } = {}): Promise<NamespaceVerifyResult> {
  const { onProgress } = opts;
  const input = createReadStream(path, { encoding: 'utf8' });
  const rl = createInterface({ input, crlfDelay: Infinity });
  if (!onProgress) return verifyNamespaceBundleLines(rl, jwks);
  const progress: NamespaceProgress = onProgress;
  const size = (await stat(path)).size;
  async function* reported(): AsyncGenerator<string> {
    let phase = 'checkpoints';
    await report(onProgress, phase, 0, size, 'bytes');
    try {
      for await (const line of rl) {
        if (phase === 'checkpoints' && line.startsWith('{"type":"record"')) phase = 'records';
        // bytesRead runs ahead of the lines by at most one read buffer (64 KiB).
        const waiting = progress({ phase, done: Math.min(input.bytesRead, size), total: size, unit: 'bytes' });
        if (waiting) await waiting;
        yield line;
      }
    } finally {
      rl.close();
      input.destroy();
    }
  }
  return verifyNamespaceBundleLines(reported(), jwks);
}
