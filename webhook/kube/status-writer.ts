/**
 * Writes IdentityMapping `status` (Ready condition, observedGeneration, serviceAccounts) from the
 * fact index, only while this replica holds the Lease (kube/lease.ts), and a Warning Event on the
 * mapping when it turns Conflict or Invalid.
 *
 * Fed by the informer: `observe(obj)` after the index took the object (so the index already knows
 * it), with its generation and the status the API server holds. A change to one mapping can change
 * another's state (a conflict has two sides), so each change marks the mapping and every mapping
 * sharing one of its ServiceAccounts, before and after, as dirty. A reconcile compares the desired
 * status with the held one and PATCHes (merge patch on /status) only what differs; our own patch
 * comes back as a watch event that then compares equal, which ends the loop.
 */
import type { FactsIndex } from '../core/mapping-index.js';
import { decideMappingReady, isSameMappingStatus, toMappingStatus, type MappingStatus } from '../core/mapping-status.js';
import { GROUP, KIND, PLURAL, VERSION } from '../core/mapping-schema.js';
import type { KubeApi } from './api.js';
import { CLUSTER_SCOPED_EVENT_NAMESPACE, type EventRecorder } from './events.js';
import type { LeaseElector } from './lease.js';
import type { SourceLogger } from './source.js';

export const DEFAULT_DEBOUNCE_MS = 200;
/** Everything is compared again this often, in case a write was lost. */
export const DEFAULT_RESYNC_MS = 10 * 60_000;
const WRITE_CONCURRENCY = 4;

/** What the informer passes for one IdentityMapping (the slimmed object). */
export interface ObservedMapping {
  metadata?: { name?: string; generation?: number; uid?: string; resourceVersion?: string };
  status?: unknown;
}

export interface StatusWriterOptions {
  api: KubeApi;
  index: Pick<FactsIndex, 'mapping' | 'claimants'>;
  elector: Pick<LeaseElector, 'isLeader' | 'onChange'>;
  events?: EventRecorder;
  logger: SourceLogger;
  now?: () => Date;
  debounceMs?: number;
  resyncMs?: number;
  /** Counts status writes (tzw_identitymapping_status_writes_total{result}). */
  onWrite?: (result: 'ok' | 'error') => void;
}

export interface StatusWriter {
  observe(obj: ObservedMapping): void;
  forget(name: string): void;
  start(): void;
  stop(): Promise<void>;
  /** Resolves once nothing is dirty, scheduled or in flight (tests). */
  settled(): Promise<void>;
}

interface Known {
  generation?: number;
  uid?: string;
  resourceVersion?: string;
  status?: MappingStatus;
  claims: string[];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The parts of a held status we compare; anything malformed counts as "no status". */
function toHeldStatus(v: unknown): MappingStatus | undefined {
  if (!isRecord(v) || !Array.isArray(v.conditions)) return undefined;
  return v as unknown as MappingStatus;
}

export function createStatusWriter(o: StatusWriterOptions): StatusWriter {
  const now = o.now ?? (() => new Date());
  const debounceMs = o.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  const known = new Map<string, Known>();
  const dirty = new Set<string>();
  /** Per replica, the reason we last warned about per mapping: one Event per transition. */
  const warned = new Map<string, string>();
  let timer: NodeJS.Timeout | undefined;
  let resync: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  const waiters: Array<() => void> = [];

  const claimKeys = (name: string): string[] => (o.index.mapping(name)?.claims ?? []).map((sa) => `${sa.namespace}/${sa.name}`);
  const markWithPartners = (name: string, claims: Iterable<string>): void => {
    dirty.add(name);
    for (const key of claims) {
      const i = key.indexOf('/');
      for (const other of o.index.claimants(key.slice(0, i), key.slice(i + 1))) dirty.add(other);
    }
  };

  const schedule = (): void => {
    if (stopped || timer !== undefined || !o.elector.isLeader()) return notifyIfSettled();
    timer = setTimeout(() => {
      timer = undefined;
      running ??= reconcile().finally(() => {
        running = undefined;
        if (dirty.size > 0 && o.elector.isLeader() && !stopped) schedule();
        else notifyIfSettled();
      });
    }, debounceMs);
  };
  const notifyIfSettled = (): void => {
    if (timer === undefined && running === undefined && (dirty.size === 0 || !o.elector.isLeader() || stopped)) for (const w of waiters.splice(0)) w();
  };

  async function writeOne(name: string): Promise<void> {
    const ready = decideMappingReady(o.index, name);
    const k = known.get(name);
    if (ready === undefined || k === undefined) return;
    const next = toMappingStatus(ready, k.generation, k.status, now().toISOString().replace(/\.\d{3}Z$/, 'Z'));
    if (isSameMappingStatus(k.status, next)) {
      if (ready.reason === 'Valid') warned.delete(name);
      return;
    }
    const before = k.status?.conditions?.find((c) => c.type === 'Ready')?.reason;
    const res = await o.api.request('PATCH', `/apis/${GROUP}/${VERSION}/${PLURAL}/${encodeURIComponent(name)}/status`, { status: next }, 'application/merge-patch+json');
    if (res.status === 404) {
      known.delete(name);
      return;
    }
    if (res.status !== 200) {
      o.onWrite?.('error');
      const detail = isRecord(res.body) && typeof res.body.message === 'string' ? `: ${res.body.message}` : '';
      throw new Error(`PATCH ${PLURAL}/${name}/status: HTTP ${res.status}${detail}`);
    }
    o.onWrite?.('ok');
    const body = isRecord(res.body) ? res.body : {};
    const meta = isRecord(body.metadata) ? body.metadata : {};
    k.status = toHeldStatus(body.status) ?? next;
    if (typeof meta.resourceVersion === 'string') k.resourceVersion = meta.resourceVersion;
    if (ready.reason === 'Valid') warned.delete(name);
    else if (before !== ready.reason && warned.get(name) !== ready.reason) {
      warned.set(name, ready.reason);
      o.events?.record({
        namespace: CLUSTER_SCOPED_EVENT_NAMESPACE,
        involvedObject: { apiVersion: `${GROUP}/${VERSION}`, kind: KIND, name, ...(k.uid ? { uid: k.uid } : {}), ...(k.resourceVersion ? { resourceVersion: k.resourceVersion } : {}) },
        type: 'Warning', reason: ready.reason, message: ready.message,
      });
    }
  }

  async function reconcile(): Promise<void> {
    while (dirty.size > 0 && o.elector.isLeader() && !stopped) {
      const batch = [...dirty].slice(0, WRITE_CONCURRENCY);
      for (const name of batch) dirty.delete(name);
      const results = await Promise.allSettled(batch.map(writeOne));
      results.forEach((r, i) => {
        if (r.status === 'rejected') {
          o.logger.warn({ identityMapping: batch[i], err: { message: (r.reason as Error).message } }, 'IdentityMapping status not written; retrying at the next resync');
        }
      });
    }
  }

  const markAll = (): void => {
    for (const name of known.keys()) dirty.add(name);
    schedule();
  };

  o.elector.onChange((leader) => {
    if (leader) markAll();
    else notifyIfSettled();
  });

  return {
    observe(obj) {
      const name = obj.metadata?.name;
      if (typeof name !== 'string' || name === '') return;
      const prev = known.get(name);
      const claims = claimKeys(name);
      known.set(name, {
        ...(typeof obj.metadata?.generation === 'number' ? { generation: obj.metadata.generation } : {}),
        ...(obj.metadata?.uid ? { uid: obj.metadata.uid } : {}),
        ...(obj.metadata?.resourceVersion ? { resourceVersion: obj.metadata.resourceVersion } : {}),
        status: toHeldStatus(obj.status),
        claims,
      });
      markWithPartners(name, new Set([...(prev?.claims ?? []), ...claims]));
      schedule();
    },
    forget(name) {
      const prev = known.get(name);
      known.delete(name);
      warned.delete(name);
      if (prev) markWithPartners(name, prev.claims);
      dirty.delete(name);
      schedule();
    },
    start() {
      stopped = false;
      resync = setInterval(markAll, o.resyncMs ?? DEFAULT_RESYNC_MS);
      resync.unref();
      if (o.elector.isLeader()) markAll();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
      clearInterval(resync);
      await running;
      notifyIfSettled();
    },
    settled: () => new Promise<void>((resolve) => {
      waiters.push(resolve);
      notifyIfSettled();
    }),
  };
}
