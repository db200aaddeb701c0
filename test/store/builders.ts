/**
 * Builders for store tests: decision records with deterministic, time-ordered ids and times, and
 * hash-chained records built the way a store builds them (for the pure verifier tests).
 */
import type { ChainedRecord, DecisionRecord } from '../../webhook/core/record.js';
import { GENESIS_HASH, hashRecord } from '../../webhook/store/evidence/chain.js';
import type { Anchor, Checkpoint } from '../../webhook/store/port.js';
import { ANCHOR_TYP, CHECKPOINT_TYP, type Signer } from '../../webhook/store/evidence/signing.js';

export const WRITER = 'tzw-0';
/** 2026-01-01T00:00:00Z in ms. */
export const T0 = Date.UTC(2026, 0, 1);

/** RFC 3339 with microseconds, `ms` after T0 plus `micros`. */
export function timeAt(ms: number, micros = 0): string {
  return new Date(T0 + ms).toISOString().slice(0, 23) + String(micros).padStart(3, '0') + 'Z';
}

/** A UUIDv7-shaped id whose order follows `n`. */
export function idOf(n: number, salt = 0): string {
  const hex = n.toString(16).padStart(12, '0');
  return `01944000-0000-7${salt.toString(16).padStart(3, '0')}-8000-${hex}`;
}

export interface RecordOptions extends Partial<DecisionRecord> {
  n?: number;
}

/** A decision record for a patched pod; `n` drives id and time (n * 1 s after T0). */
export function aRecord(o: RecordOptions = {}): DecisionRecord {
  const n = o.n ?? 1;
  const { n: _n, ...over } = o;
  const namespace = over.namespace ?? 'payments';
  return {
    id: idOf(n),
    time: timeAt(n * 1000),
    requestUid: `uid-${n}`,
    endpoint: 'mutate',
    operation: 'CREATE',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    namespace,
    name: `build-${n}-pod`,
    user: { username: 'system:serviceaccount:tekton-pipelines:tekton-pipelines-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
    serviceAccounts: [`${namespace}/ci-builder`],
    mode: 'enforce',
    verdict: 'patched',
    reasons: [{ code: 'POD_INJECTED', message: 'The pod was patched.' }],
    mapping: { name: 'payments-ci', provider: 'aws-iam', subject: 'arn:aws:iam::123456789012:role/payments-ci' },
    policyTags: ['ci', 'payments-artifacts'],
    patch: [{ op: 'add', path: '/metadata/annotations/tekton-zscaler.io~1status', value: 'injected' }],
    objectDigest: 'ab'.repeat(32),
    tekton: { taskRun: `build-${n}`, pipelineRun: 'release' },
    dryRun: false,
    replica: WRITER,
    durationMs: 1.5,
    ...over,
  };
}

/** Chains records (in the given order) the way a store does, starting after `start`. */
export function chainOf(records: DecisionRecord[], start: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH }): ChainedRecord[] {
  let prev = start.hash;
  let seq = start.seq;
  return records.map((r) => {
    const withoutHash = { ...r, seq: ++seq, prevHash: prev };
    const hash = hashRecord(prev, withoutHash);
    prev = hash;
    return { ...withoutHash, hash };
  });
}

/**
 * The same chain in record format v2: each record also linked into its namespace's chain on the
 * writer (nsSeq 1, 2, ... and nsPrevHash = hash of the namespace's previous record, 64 zeros first).
 */
export function chainOfV2(records: DecisionRecord[], start: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH }): ChainedRecord[] {
  let prev = start.hash;
  let seq = start.seq;
  const nsHeads = new Map<string, { nsSeq: number; hash: string }>();
  return records.map((r) => {
    const ns = nsHeads.get(r.namespace) ?? { nsSeq: 0, hash: GENESIS_HASH };
    const withoutHash = { ...r, nsSeq: ns.nsSeq + 1, nsPrevHash: ns.hash, seq: ++seq, prevHash: prev };
    const hash = hashRecord(prev, withoutHash);
    prev = hash;
    nsHeads.set(r.namespace, { nsSeq: ns.nsSeq + 1, hash });
    return { ...withoutHash, hash };
  });
}

export async function aCheckpoint(signer: Signer, chain: ChainedRecord[], size: number, time = timeAt(size * 1000 + 500)): Promise<Checkpoint> {
  const writer = chain[0]?.replica ?? WRITER;
  const headHash = chain.find((r) => r.seq === size)?.hash ?? GENESIS_HASH;
  const payload = { writer, size, headHash, time };
  return { ...payload, jws: await signer.sign(payload, CHECKPOINT_TYP) };
}

export async function anAnchor(signer: Signer, writer: string, seq: number, hash: string, time = timeAt(seq * 1000 + 700)): Promise<Anchor> {
  const payload = { writer, seq, hash, time };
  return { ...payload, jws: await signer.sign(payload, ANCHOR_TYP) };
}
