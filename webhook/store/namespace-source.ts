/**
 * The namespace exporter's view of a store (NamespaceEvidenceSource). Uses the store's v2 port
 * methods when it has them — `checkpointHeads(writer, size)` (heads persisted with each checkpoint)
 * and `namespaceRecords(writer, namespace, afterNsSeq)` (the (replica, namespace, nsSeq) index) —
 * and otherwise derives the same answers from the chain and the namespace filter (slower: a scan).
 */
import { toNamespaceRoot, type NamespaceHead } from './evidence/merkle.js';
import type { NamespaceEvidenceSource, NamespaceRange, NsCheckpoint, NsRecord } from './evidence/namespace-bundle.js';
import type { DecisionFilter, VerifiableStore } from './port.js';

/** Optional port methods of a v2 store. */
interface NamespacePort {
  checkpointHeads(writer: string, size: number): Promise<NamespaceHead[]>;
  namespaceRecords(writer: string, namespace: string, afterNsSeq: number): AsyncIterable<NsRecord>;
  /** The namespace's current head nsSeq on every writer that has written v2 records of it. */
  namespaceHeads(namespace: string): Promise<Array<{ writer: string; nsSeq: number }>>;
}

/**
 * Progress of the source's own scans (the fallbacks below read the whole chain or the whole
 * namespace): phase `scanning chain` / `scanning namespace`, in records. Like every progress
 * callback here it may return a promise (awaited) or throw to stop the export (Ctrl-C).
 */
export type ScanProgress = (event: { phase: string; done: number; total?: number; unit?: string }) => void | Promise<void>;

async function report(onProgress: ScanProgress | undefined, phase: string, done: number, total?: number): Promise<void> {
  const waiting = onProgress?.({ phase, done, total, unit: 'records' });
  if (waiting) await waiting;
}

function has<K extends keyof NamespacePort>(store: object, key: K): store is Pick<NamespacePort, K> {
  return typeof (store as Record<string, unknown>)[key] === 'function';
}

/** Heads of every namespace with v2 records on `writer` among its first `size` records, from a chain scan. */
async function scanHeads(store: VerifiableStore, writer: string, size: number, onProgress?: ScanProgress): Promise<NamespaceHead[]> {
  const heads = new Map<string, NamespaceHead>();
  const total = onProgress && store.count ? await store.count() : undefined;
  let done = 0;
  for await (const { record } of store.streamChain()) {
    await report(onProgress, 'scanning chain', ++done, total);
    const r = record as NsRecord;
    if (r.replica !== writer || r.seq > size || typeof r.nsSeq !== 'number') continue;
    heads.set(r.namespace, { namespace: r.namespace, nsSeq: r.nsSeq, nsHeadHash: r.hash });
  }
  return [...heads.values()];
}

/**
 * The exporter's source over `store`. Heads a store answers are checked against the checkpoint's
 * signed nsRoot; when they do not match (e.g. the rows were not kept), they are rebuilt from the
 * chain, so a store's shortcut can cost time, never a wrong bundle. `opts.onProgress` sees those
 * scans (they can be as long as the export itself on a store without the port methods).
 */
export function toNamespaceEvidenceSource(store: VerifiableStore, opts: { onProgress?: ScanProgress } = {}): NamespaceEvidenceSource {
  const { onProgress } = opts;
  let known: NsCheckpoint[] | undefined;
  const source: NamespaceEvidenceSource = {
    async checkpoints() {
      known = (await store.checkpoints()) as NsCheckpoint[];
      return known;
    },
    async checkpointHeads(writer, size) {
      if (has(store, 'checkpointHeads')) {
        const heads = await store.checkpointHeads(writer, size);
        const cp = known?.find((c) => c.writer === writer && c.size === size);
        if (cp?.nsRoot === undefined || toNamespaceRoot(heads).nsRoot === cp.nsRoot) return heads;
      }
      return scanHeads(store, writer, size, onProgress);
    },
    async writers(namespace) {
      // Writers that hold v2 records of the namespace: the only ones whose records a bundle carries.
      if (has(store, 'namespaceHeads')) return (await store.namespaceHeads(namespace)).map((h) => h.writer);
      const found = new Set<string>();
      let done = 0;
      for await (const r of store.stream({ namespace })) {
        await report(onProgress, 'scanning namespace', ++done);
        found.add(r.replica);
      }
      return [...found];
    },
    async *namespaceRecords(writer, namespace, afterNsSeq) {
      if (has(store, 'namespaceRecords')) {
        yield* store.namespaceRecords(writer, namespace, afterNsSeq);
        return;
      }
      const mine: NsRecord[] = [];
      let done = 0;
      for await (const record of store.stream({ namespace })) {
        await report(onProgress, 'scanning namespace', ++done);
        const r = record as NsRecord;
        if (r.replica === writer && typeof r.nsSeq === 'number' && r.nsSeq > afterNsSeq) mine.push(r);
      }
      yield* mine.sort((a, b) => a.nsSeq! - b.nsSeq!);
    },
  };
  if (has(store, 'namespaceHeads')) source.namespaceHeads = (namespace) => store.namespaceHeads(namespace);
  return source;
}

type Selection = Omit<DecisionFilter, 'limit' | 'cursor'>;

/**
 * The namespace range when the selection is exactly one namespace (with optional since/until): that
 * export is a namespace bundle an auditor can prove complete. Undefined for any other selection.
 */
export function toNamespaceRange(filter: Selection): NamespaceRange | undefined {
  const { namespace, since, until, ...rest } = filter;
  if (namespace === undefined || Object.values(rest).some((v) => v !== undefined)) return undefined;
  return { namespace, ...(since !== undefined ? { since } : {}), ...(until !== undefined ? { until } : {}) };
}
