/**
 * A v2 writer for namespace-evidence tests: chains records with the real chain functions (seq,
 * prevHash, hash) and namespace chains (nsSeq, nsPrevHash), signs checkpoints that commit to the
 * namespace heads with a real key, and serves them through NamespaceEvidenceSource like a store.
 */
import type { DecisionRecord } from '../../webhook/core/record.js';
import { chainRecord, GENESIS_HASH, toChainedRecord } from '../../webhook/store/evidence/chain.js';
import { toNamespaceRoot, type NamespaceHead } from '../../webhook/store/evidence/merkle.js';
import type { NamespaceEvidenceSource, NsCheckpoint, NsRecord } from '../../webhook/store/evidence/namespace-bundle.js';
import { CHECKPOINT_TYP, type Signer } from '../../webhook/store/evidence/signing.js';
import { aRecord, idOf, timeAt } from './builders.js';

let counter = 0;

/** A record of `namespace` on `writer` at `ms` after T0, with nothing in it naming another namespace. */
export function aNamespaceRecord(namespace: string, writer: string, ms: number, over: Partial<DecisionRecord> = {}): DecisionRecord {
  const n = ++counter;
  return aRecord({
    n,
    id: idOf(n, 1),
    time: timeAt(ms),
    namespace,
    replica: writer,
    name: `build-${n}-pod`,
    user: { username: 'system:serviceaccount:tekton-ctl:controller', groups: ['system:authenticated'] },
    serviceAccounts: [`${namespace}/ci-builder`],
    mapping: { name: `${namespace}-ci`, provider: 'aws-iam', subject: `arn:aws:iam::123456789012:role/${namespace}-ci` },
    policyTags: ['ci'],
    tekton: { taskRun: `build-${n}`, pipelineRun: 'release' },
    ...over,
  });
}

export class V2Writer {
  readonly records: NsRecord[] = [];
  readonly checkpoints: NsCheckpoint[] = [];
  /** Namespace heads persisted with each v2 checkpoint, by size. */
  readonly headsAt = new Map<number, NamespaceHead[]>();
  private readonly heads = new Map<string, { nsSeq: number; hash: string }>();
  private head = { seq: 0, hash: GENESIS_HASH };

  constructor(
    readonly writer: string,
    private readonly signer: Signer,
  ) {}

  /** Appends a v2 record (nsSeq/nsPrevHash inside the hashed body). */
  append(record: DecisionRecord): NsRecord {
    const nsHead = this.heads.get(record.namespace) ?? { nsSeq: 0, hash: GENESIS_HASH };
    const withNs = { ...record, replica: this.writer, nsSeq: nsHead.nsSeq + 1, nsPrevHash: nsHead.hash };
    const link = chainRecord(withNs, this.head);
    const chained = toChainedRecord(withNs, link) as NsRecord;
    this.head = { seq: link.seq, hash: link.hash };
    this.heads.set(record.namespace, { nsSeq: withNs.nsSeq, hash: link.hash });
    this.records.push(chained);
    return chained;
  }

  /** Appends a v1 record (written before the namespace chains). */
  appendV1(record: DecisionRecord): NsRecord {
    const link = chainRecord({ ...record, replica: this.writer }, this.head);
    const chained = toChainedRecord({ ...record, replica: this.writer }, link) as NsRecord;
    this.head = { seq: link.seq, hash: link.hash };
    this.records.push(chained);
    return chained;
  }

  /** Signs a v2 checkpoint (nsRoot/nsSize over the current heads) at `ms` after T0. */
  async checkpoint(ms: number): Promise<NsCheckpoint> {
    const heads = [...this.heads].map(([namespace, h]) => ({ namespace, nsSeq: h.nsSeq, nsHeadHash: h.hash }));
    const { nsRoot, nsSize } = toNamespaceRoot(heads);
    const payload = { writer: this.writer, size: this.head.seq, headHash: this.head.hash, time: timeAt(ms), nsRoot, nsSize };
    const cp = { ...payload, jws: await this.signer.sign(payload, CHECKPOINT_TYP) };
    this.checkpoints.push(cp);
    this.headsAt.set(cp.size, heads);
    return cp;
  }

  /** Signs a checkpoint as a writer before the change did (no namespace commitments). */
  async v1Checkpoint(ms: number): Promise<NsCheckpoint> {
    const payload = { writer: this.writer, size: this.head.seq, headHash: this.head.hash, time: timeAt(ms) };
    const cp = { ...payload, jws: await this.signer.sign(payload, CHECKPOINT_TYP) };
    this.checkpoints.push(cp);
    return cp;
  }
}

/** The writers as a store would serve them to the exporter. */
export function toMemorySource(writers: V2Writer[]): NamespaceEvidenceSource {
  const byName = new Map(writers.map((w) => [w.writer, w]));
  return {
    async checkpoints() {
      return writers.flatMap((w) => w.checkpoints);
    },
    async checkpointHeads(writer, size) {
      const heads = byName.get(writer)?.headsAt.get(size);
      if (!heads) throw new Error(`no heads persisted for ${writer} at ${size}`);
      return heads;
    },
    async writers(namespace) {
      return writers.filter((w) => w.records.some((r) => r.namespace === namespace)).map((w) => w.writer);
    },
    async *namespaceRecords(writer, namespace, afterNsSeq) {
      for (const r of byName.get(writer)?.records ?? []) {
        if (r.namespace === namespace && typeof r.nsSeq === 'number' && r.nsSeq > afterNsSeq) yield r;
      }
    },
  };
}

/** Collects an async generator of lines. */
export async function collect(lines: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of lines) out.push(l);
  return out;
}
