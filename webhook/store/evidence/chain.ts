/**
 * The hash chain and its verification. Pure: no fs, no net, no clock.
 *
 * Each writer (replica) keeps its own chain: record `seq` n (1, 2, ...) carries
 * `prevHash` = hash of record n-1 (64 zeros for n = 1, or the hash in a retention anchor) and
 * `hash` = sha256 hex of (prevHash + RFC 8785 canonical JSON of the record without `hash`).
 * Signed checkpoints pin (writer, size, headHash); signed anchors pin where a pruned chain resumes.
 */
import type { ChainedRecord } from '../../core/record.js';
import type { Anchor, ChainEntry, Checkpoint } from '../port.js';
import { canonicalJson, sha256Hex } from './canonical.js';
import { createStatementVerifier, verifyAnchorJws, verifyCheckpointJws, type Jwks, type StatementVerifier } from './signing.js';

export { canonicalJson, sha256Hex };

export { chainRecord, GENESIS_HASH, hashRecord, type ChainLink } from './link.js';
import { GENESIS_HASH, hashRecord } from './link.js';
import type { ChainLink } from './link.js';

/**
 * The record as stored at `link`, built from the caller's object (no parse of the body): own
 * enumerable members as JSON would keep them, plus seq, prevHash and hash.
 */
export function toChainedRecord(record: object, link: ChainLink): ChainedRecord {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(record)) {
    const v = (record as Record<string, unknown>)[k];
    if (v !== undefined && typeof v !== 'symbol' && typeof v !== 'function') out[k] = v;
  }
  out.seq = link.seq;
  out.prevHash = link.prevHash;
  out.hash = link.hash;
  return out as unknown as ChainedRecord;
}

/** Where the problem sits: a record, a checkpoint or anchor (named by the record it points at), or the bundle file itself. */
export type ProblemKind = 'record' | 'checkpoint' | 'anchor' | 'bundle';

export interface ChainProblem {
  kind: ProblemKind;
  /**
   * The record at fault: the changed/misplaced record, the first record after a gap, the record a
   * bad checkpoint/anchor points at, or — for a truncated tail — the last record that remains.
   * '' when there is none.
   */
  id: string;
  writer: string;
  seq: number;
  problem: string;
}

export interface VerifySummary {
  ok: true;
  records: number;
  writers: number;
  checkpoints: number;
  anchors: number;
  /** Records after the last signed checkpoint of their writer: chained, but not yet signed. */
  unsigned: number;
  warnings: string[];
}

export type VerifyResult = VerifySummary | { ok: false; firstBad: ChainProblem };

export interface CheckedCheckpoint {
  cp: Checkpoint;
  /** Why the checkpoint cannot be trusted; undefined when its signature and fields are good. */
  error?: string;
}

export interface CheckedAnchor {
  anchor: Anchor;
  error?: string;
}

/** Where verification of one writer's chain stands (the part a range verifier hands back to be joined). */
export interface WriterState {
  /** Last seq seen (or the start anchor's seq). */
  seq: number;
  head: string;
  lastId: string;
  records: number;
  /** Seq of the anchor this chain started from; 0 for genesis. */
  startSeq: number;
  /** Set when the chain starts inside a pruned range: the anchor seq that authenticates it. */
  pendingAnchor?: number;
  maxSignedSize: number;
}

function describe(err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? `${String((err as { code: unknown }).code)}: ` : '';
  return code + (err instanceof Error ? err.message : String(err));
}

function group<T>(items: T[], writerOf: (t: T) => string, posOf: (t: T) => number): Map<string, Map<number, T[]>> {
  const out = new Map<string, Map<number, T[]>>();
  for (const it of items) {
    const w = writerOf(it);
    let m = out.get(w);
    if (!m) out.set(w, (m = new Map()));
    const at = posOf(it);
    const list = m.get(at);
    if (list) list.push(it);
    else m.set(at, [it]);
  }
  return out;
}

/**
 * Streaming chain verifier: feed records in seq order per writer (writers may interleave) with
 * `add`, stop at the first problem it returns, then call `finish`. Memory is per writer and per
 * checkpoint, never per record.
 */
export class ChainVerifier {
  private readonly writers = new Map<string, WriterState>();
  private last: { writer: string; state: WriterState } | undefined;
  private total = 0;

  constructor(
    private readonly checkpointsAt: Map<string, Map<number, CheckedCheckpoint[]>>,
    private readonly anchorsAt: Map<string, Map<number, CheckedAnchor[]>>,
    private readonly counts: { checkpoints: number; anchors: number },
  ) {}

  /** Checks one record; `body` is the exact stored canonical JSON (skips re-serialising). */
  add(record: ChainedRecord, body?: string, adapterProblem?: string): ChainProblem | undefined {
    const writer = record.replica;
    const id = typeof record.id === 'string' ? record.id : '';
    const seq = record.seq;
    if (typeof writer !== 'string') return { kind: 'record', id, writer: '', seq: Number(seq) || 0, problem: 'the record has no replica (writer id)' };
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) return { kind: 'record', id, writer, seq: 0, problem: `seq ${JSON.stringify(seq)} is not a positive integer` };

    let st: WriterState;
    if (this.last?.writer === writer) st = this.last.state;
    else {
      const known = this.writers.get(writer);
      if (known) st = known;
      else {
        const started = this.start(writer, record);
        if ('problem' in started) return started;
        st = started;
        this.writers.set(writer, st);
      }
      this.last = { writer, state: st };
    }

    const linked = this.link(st, writer, id, seq, record.prevHash);
    if (linked) return linked;
    const bad = (problem: string): ChainProblem => ({ kind: 'record', id, writer, seq, problem });
    let computed: string;
    if (body !== undefined) computed = sha256Hex(record.prevHash + body);
    else {
      const { hash: _stored, ...rest } = record;
      try {
        computed = hashRecord(record.prevHash, rest);
      } catch (err) {
        return bad(`the record cannot be canonicalised: ${describe(err)}`);
      }
    }
    if (computed !== record.hash) return bad('hash mismatch: the record was changed after it was written');
    if (adapterProblem) return bad(adapterProblem);
    return this.advance(st, writer, id, seq, record.hash);
  }

  /**
   * Checks one record whose hash and index columns the adapter already checked against its stored
   * body (sha256(prevHash + body) = hash; writer, id, seq and prevHash are the body's own): only
   * its place in the chain and the checkpoints/anchors at it remain. The fast path of a parallel
   * verification, which reads no record as a JS object.
   */
  addChecked(writer: string, id: string, seq: number, prevHash: string, hash: string): ChainProblem | undefined {
    let st: WriterState;
    if (this.last?.writer === writer) st = this.last.state;
    else {
      const known = this.writers.get(writer);
      if (known) st = known;
      else {
        const started = this.start(writer, { id, replica: writer, seq, prevHash, hash } as ChainedRecord);
        if ('problem' in started) return started;
        st = started;
        this.writers.set(writer, st);
      }
      this.last = { writer, state: st };
    }
    return this.link(st, writer, id, seq, prevHash) ?? this.advance(st, writer, id, seq, hash);
  }

  /**
   * Continues `writer`'s chain from `state` (a range verifier starting after a signed checkpoint,
   * or the join of the ranges before this one). Its records count toward the total.
   */
  resume(writer: string, state: WriterState): void {
    const st = { ...state };
    this.writers.set(writer, st);
    this.total += st.records;
    if (this.last?.writer === writer) this.last = { writer, state: st };
  }

  /** A copy of where `writer`'s chain stands; undefined before its first record. */
  stateOf(writer: string): WriterState | undefined {
    const st = this.writers.get(writer);
    return st ? { ...st } : undefined;
  }

  /** Writers with records seen, in first-seen order. */
  writersSeen(): string[] {
    return [...this.writers.keys()];
  }

  private link(st: WriterState, writer: string, id: string, seq: number, prevHash: string): ChainProblem | undefined {
    if (seq !== st.seq + 1) {
      if (seq <= st.seq) return { kind: 'record', id, writer, seq, problem: `seq ${seq} comes after seq ${st.seq}: records were reordered or duplicated` };
      return { kind: 'record', id, writer, seq, problem: `seq ${seq} found where seq ${st.seq + 1} was expected: records were deleted or reordered` };
    }
    if (prevHash !== st.head) {
      return { kind: 'record', id, writer, seq, problem: `prevHash does not match the hash of the previous record (seq ${st.seq}): a record was removed, inserted or reordered` };
    }
    return undefined;
  }

  private advance(st: WriterState, writer: string, id: string, seq: number, hash: string): ChainProblem | undefined {
    st.seq = seq;
    st.head = hash;
    st.lastId = id;
    st.records++;
    this.total++;

    const cps = this.checkpointsAt.get(writer)?.get(seq);
    if (cps) {
      for (const { cp, error } of cps) {
        if (error) return { kind: 'checkpoint', id, writer, seq, problem: `checkpoint at size ${cp.size} (${cp.time}) is not trustworthy: ${error}` };
        if (cp.headHash !== hash) return { kind: 'checkpoint', id, writer, seq, problem: `the signed checkpoint at size ${cp.size} (${cp.time}) names head hash ${cp.headHash}, but this record's hash is ${hash}` };
        if (seq > st.maxSignedSize) st.maxSignedSize = seq;
      }
    }
    const anchors = this.anchorsAt.get(writer)?.get(seq);
    if (anchors) {
      for (const { anchor, error } of anchors) {
        if (error) return { kind: 'anchor', id, writer, seq, problem: `anchor at seq ${anchor.seq} is not trustworthy: ${error}` };
        if (anchor.hash !== hash) return { kind: 'anchor', id, writer, seq, problem: `the signed anchor at seq ${anchor.seq} names hash ${anchor.hash}, but this record's hash is ${hash}` };
      }
      if (st.pendingAnchor === seq) st.pendingAnchor = undefined;
    }
    return undefined;
  }

  /** Decides where a writer's chain starts: genesis, the anchor just before it, or inside a pruned range. */
  private start(writer: string, first: ChainedRecord): WriterState | ChainProblem {
    const id = typeof first.id === 'string' ? first.id : '';
    const seq = first.seq;
    const anchors = this.anchorsAt.get(writer);
    const state = (startSeq: number, head: string, pendingAnchor?: number): WriterState => ({
      seq: startSeq,
      head,
      lastId: '',
      records: 0,
      startSeq,
      maxSignedSize: 0,
      ...(pendingAnchor !== undefined ? { pendingAnchor } : {}),
    });
    let st: WriterState;
    if (seq === 1) st = state(0, GENESIS_HASH);
    else {
      const at = anchors?.get(seq - 1);
      const good = at?.find((a) => !a.error);
      if (at && !good) return { kind: 'anchor', id, writer, seq: seq - 1, problem: `the anchor this chain resumes from (seq ${seq - 1}) is not trustworthy: ${at[0]?.error ?? ''}` };
      if (good) st = state(seq - 1, good.anchor.hash);
      else {
        // A prune deletes from the oldest record up; if it stopped half way, the remaining records
        // below its anchor still verify against each other and against the anchor's hash.
        let later: number | undefined;
        for (const [s, list] of anchors ?? []) if (s >= seq && list.some((a) => !a.error) && (later === undefined || s < later)) later = s;
        if (later === undefined) return { kind: 'record', id, writer, seq, problem: `records 1..${seq - 1} of this writer are missing and no signed anchor covers them (deleted)` };
        st = state(seq - 1, first.prevHash, later);
      }
    }
    // Checkpoints and anchors in the pruned range can only be checked for their signatures (and the
    // one at the start anchor against its hash).
    for (const [size, list] of this.checkpointsAt.get(writer) ?? []) {
      if (size > st.startSeq) continue;
      for (const { cp, error } of list) {
        if (error) return { kind: 'checkpoint', id: '', writer, seq: size, problem: `checkpoint at size ${size} (${cp.time}) is not trustworthy: ${error}` };
        if (size === st.startSeq && st.pendingAnchor === undefined && size > 0 && cp.headHash !== st.head) {
          return { kind: 'checkpoint', id: '', writer, seq: size, problem: `the signed checkpoint at size ${size} names head hash ${cp.headHash}, but the anchor there names ${st.head}` };
        }
        if (size > st.maxSignedSize) st.maxSignedSize = size;
      }
    }
    for (const [s, list] of anchors ?? []) {
      if (s >= st.startSeq) continue;
      const badAnchor = list.find((a) => a.error);
      if (badAnchor) return { kind: 'anchor', id: '', writer, seq: s, problem: `anchor at seq ${s} is not trustworthy: ${badAnchor.error ?? ''}` };
    }
    return st;
  }

  /** Checks what can only be checked at the end: truncated tails, checkpoints of writers without records. */
  finish(): VerifyResult {
    const writers = new Set<string>([...this.writers.keys(), ...this.checkpointsAt.keys(), ...this.anchorsAt.keys()]);
    let unsigned = 0;
    for (const writer of [...writers].sort()) {
      let st = this.writers.get(writer);
      if (!st) {
        // No records: everything was pruned (the latest good anchor is the head) or deleted.
        let top: CheckedAnchor | undefined;
        for (const [s, list] of this.anchorsAt.get(writer) ?? []) {
          const badAnchor = list.find((a) => a.error);
          if (badAnchor) return { ok: false, firstBad: { kind: 'anchor', id: '', writer, seq: s, problem: `anchor at seq ${s} is not trustworthy: ${badAnchor.error ?? ''}` } };
          if (!top || s > top.anchor.seq) top = list[0];
        }
        st = { seq: top?.anchor.seq ?? 0, head: top?.anchor.hash ?? GENESIS_HASH, lastId: '', records: 0, startSeq: top?.anchor.seq ?? 0, maxSignedSize: 0 };
        for (const [size, list] of this.checkpointsAt.get(writer) ?? []) {
          if (size > st.seq) continue;
          for (const { cp, error } of list) {
            if (error) return { ok: false, firstBad: { kind: 'checkpoint', id: '', writer, seq: size, problem: `checkpoint at size ${size} (${cp.time}) is not trustworthy: ${error}` } };
            if (size === st.seq && size > 0 && cp.headHash !== st.head) {
              return { ok: false, firstBad: { kind: 'checkpoint', id: '', writer, seq: size, problem: `the signed checkpoint at size ${size} names head hash ${cp.headHash}, but the anchor there names ${st.head}` } };
            }
          }
        }
      }
      if (st.pendingAnchor !== undefined) {
        return { ok: false, firstBad: { kind: 'record', id: st.lastId, writer, seq: st.seq + 1, problem: `records ${st.seq + 1}..${st.pendingAnchor} are missing: the chain ends at seq ${st.seq} but a signed anchor was written at seq ${st.pendingAnchor}` } };
      }
      const beyond = [...(this.checkpointsAt.get(writer) ?? [])].filter(([size]) => size > st.seq).sort((a, b) => a[0] - b[0]);
      for (const [size, list] of beyond) {
        const forged = list.find((c) => c.error);
        if (forged) return { ok: false, firstBad: { kind: 'checkpoint', id: st.lastId, writer, seq: size, problem: `checkpoint at size ${size} (${forged.cp.time}) is not trustworthy: ${forged.error ?? ''}` } };
      }
      const claim = beyond[0];
      if (claim) {
        const cp = claim[1][0]?.cp;
        const where = st.lastId ? ` (record ${st.lastId})` : '';
        return {
          ok: false,
          firstBad: {
            kind: 'record',
            id: st.lastId,
            writer,
            seq: st.seq + 1,
            problem: `the chain ends at seq ${st.seq}${where}, but a signed checkpoint (${cp?.time ?? '?'}) says it had ${claim[0]} records: records after seq ${st.seq} were deleted`,
          },
        };
      }
      unsigned += Math.max(0, st.seq - Math.max(st.maxSignedSize, st.startSeq));
    }
    return { ok: true, records: this.total, writers: writers.size, checkpoints: this.counts.checkpoints, anchors: this.counts.anchors, unsigned, warnings: [] };
  }
}

/**
 * Checks every checkpoint's and anchor's signature and fields once, then returns a verifier for
 * the records. A checkpoint whose stored fields differ from its signed payload is as bad as a
 * forged one.
 */
export async function createChainVerifier(checkpoints: Checkpoint[], anchors: Anchor[], keys: Jwks | StatementVerifier): Promise<ChainVerifier> {
  return toChainVerifier(await checkEvidence(checkpoints, anchors, keys));
}

/** Checkpoints and anchors with their signatures checked (createChainVerifier's first half). */
export interface CheckedEvidence {
  checkpoints: CheckedCheckpoint[];
  anchors: CheckedAnchor[];
  /** How many of each are trustworthy. */
  counts: { checkpoints: number; anchors: number };
}

/** A verifier over evidence already checked (e.g. one range's share of it, in a worker thread). */
export function toChainVerifier(evidence: CheckedEvidence): ChainVerifier {
  return new ChainVerifier(
    group(evidence.checkpoints, (c) => c.cp.writer, (c) => c.cp.size),
    group(evidence.anchors, (a) => a.anchor.writer, (a) => a.anchor.seq),
    evidence.counts,
  );
}

/**
 * Checks every checkpoint's and anchor's signature and fields once. A checkpoint whose stored
 * fields differ from its signed payload is as bad as a forged one.
 */
export async function checkEvidence(checkpoints: Checkpoint[], anchors: Anchor[], keys: Jwks | StatementVerifier): Promise<CheckedEvidence> {
  const verify = typeof keys === 'function' ? keys : createStatementVerifier(keys);
  let goodCheckpoints = 0;
  let goodAnchors = 0;
  const checkedCps: CheckedCheckpoint[] = [];
  for (const cp of checkpoints) {
    let error: string | undefined;
    try {
      const c = await verifyCheckpointJws(cp.jws, verify);
      const diff = (['writer', 'size', 'headHash', 'time'] as const).filter((k) => c[k] !== cp[k]);
      if (diff.length) error = `its ${diff.join(', ')} differ${diff.length === 1 ? 's' : ''} from the signed payload`;
    } catch (err) {
      error = describe(err);
    }
    if (!error) goodCheckpoints++;
    checkedCps.push(error ? { cp, error } : { cp });
  }
  const checkedAnchors: CheckedAnchor[] = [];
  for (const anchor of anchors) {
    let error: string | undefined;
    try {
      const a = await verifyAnchorJws(anchor.jws, verify);
      const diff = (['writer', 'seq', 'hash', 'time'] as const).filter((k) => a[k] !== anchor[k]);
      if (diff.length) error = `its ${diff.join(', ')} differ${diff.length === 1 ? 's' : ''} from the signed payload`;
    } catch (err) {
      error = describe(err);
    }
    if (!error) goodAnchors++;
    checkedAnchors.push(error ? { anchor, error } : { anchor });
  }
  return { checkpoints: checkedCps, anchors: checkedAnchors, counts: { checkpoints: goodCheckpoints, anchors: goodAnchors } };
}

/**
 * Verifies records (in seq order per writer; writers may interleave) against each other, the
 * signed checkpoints and the retention anchors. Returns counts, or the first bad record/checkpoint.
 */
export async function verifyChain(
  records: Iterable<ChainedRecord> | AsyncIterable<ChainedRecord>,
  checkpoints: Checkpoint[],
  keys: Jwks | StatementVerifier,
  anchors: Anchor[] = [],
): Promise<VerifyResult> {
  const v = await createChainVerifier(checkpoints, anchors, keys);
  for await (const r of records) {
    const bad = v.add(r);
    if (bad) return { ok: false, firstBad: bad };
  }
  return v.finish();
}

/** Verifies adapter entries (records with their stored canonical body) against checkpoints and anchors already checked (checkEvidence). */
export async function verifyCheckedEntries(entries: Iterable<ChainEntry> | AsyncIterable<ChainEntry>, evidence: CheckedEvidence): Promise<VerifyResult> {
  const v = toChainVerifier(evidence);
  for await (const e of entries) {
    const bad = v.add(e.record, e.body, e.problem);
    if (bad) return { ok: false, firstBad: bad };
  }
  return v.finish();
}

