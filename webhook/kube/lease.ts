/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does it:
 * the holder renews `renewTime` every `durationSeconds / 3`; a candidate takes the Lease over once
 * the holder released it (empty holderIdentity) or the record has not changed for
 * `durationSeconds`, measured on the candidate's own clock from when it last saw the record change
 * (so clock skew between replicas does not matter). Every write carries the resourceVersion it
 * read, so two candidates never both win (the loser gets 409 Conflict). A holder that cannot renew
 * within `renewDeadline` steps down before anyone else may take over.
 */
import type { KubeApi } from './api.js';
import type { SourceLogger } from './source.js';

export const DEFAULT_LEASE_DURATION_SECONDS = 15;

export interface LeaseElectorOptions {
  api: KubeApi;
  namespace: string;
  name: string;
  /** Holder identity: the replica name. */
  identity: string;
  durationSeconds?: number;
  logger: SourceLogger;
  /** Wall clock for the Lease's timestamps; the expiry check uses `monotonicMs`. */
  now?: () => Date;
  monotonicMs?: () => number;
}

export interface LeaseElector {
  start(): void;
  isLeader(): boolean;
  /** Called with true when this replica becomes the holder, false when it stops being it. */
  onChange(fn: (leader: boolean) => void): void;
  /** Stops trying; a holder releases the Lease so another replica takes over at once. */
  stop(): Promise<void>;
  /** One acquire-or-renew round (what the timer runs); exposed so tests can step it. */
  tryAcquireOrRenew(): Promise<boolean>;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}
interface Lease {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion?: string; [k: string]: unknown };
  spec?: LeaseSpec;
}

/** RFC 3339 with exactly six fractional digits: the API server's MicroTime format. */
export function toMicroTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function createLeaseElector(o: LeaseElectorOptions): LeaseElector {
  const durationSeconds = o.durationSeconds ?? DEFAULT_LEASE_DURATION_SECONDS;
  const durationMs = durationSeconds * 1000;
  const renewEveryMs = Math.max(200, Math.floor(durationMs / 3));
  const renewDeadlineMs = Math.floor((durationMs * 2) / 3);
  const now = o.now ?? (() => new Date());
  const mono = o.monotonicMs ?? (() => performance.now());
  const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(o.namespace)}/leases/${encodeURIComponent(o.name)}`;
  const listeners: Array<(leader: boolean) => void> = [];
  let leader = false;
  let lastRenewOk = 0;
  let observed: { key: string; at: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = true;
  let round: Promise<boolean> = Promise.resolve(false);

  const setLeader = (value: boolean): void => {
    if (leader === value) return;
    leader = value;
    o.logger.info({ lease: `${o.namespace}/${o.name}`, identity: o.identity }, value ? 'became the IdentityMapping status writer (Lease acquired)' : 'no longer the IdentityMapping status writer');
    for (const fn of listeners) fn(value);
  };

  const spec = (prev: LeaseSpec | undefined, t: string): LeaseSpec => ({
    holderIdentity: o.identity,
    leaseDurationSeconds: durationSeconds,
    acquireTime: prev?.holderIdentity === o.identity && prev.acquireTime ? prev.acquireTime : t,
    renewTime: t,
    leaseTransitions: (prev?.leaseTransitions ?? 0) + (prev !== undefined && prev.holderIdentity !== o.identity ? 1 : 0),
  });

  async function attempt(): Promise<boolean> {
    const t = toMicroTime(now());
    const got = await o.api.request('GET', path);
    if (got.status === 404) {
      const created = await o.api.request('POST', path.slice(0, path.lastIndexOf('/')), {
        apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: o.name, namespace: o.namespace }, spec: { ...spec(undefined, t), leaseTransitions: 0 },
      });
      return created.status === 201 || created.status === 200;
    }
    if (got.status !== 200) throw new Error(`GET Lease ${o.namespace}/${o.name}: HTTP ${got.status}`);
    const lease = got.body as Lease;
    const held = lease.spec ?? {};
    // The record as a whole: any change (a renewal) restarts the expiry clock.
    const key = `${held.holderIdentity ?? ''}|${held.renewTime ?? ''}|${held.leaseDurationSeconds ?? ''}`;
    if (observed?.key !== key) observed = { key, at: mono() };
    const heldMs = (held.leaseDurationSeconds ?? durationSeconds) * 1000;
    const someoneElse = held.holderIdentity !== undefined && held.holderIdentity !== '' && held.holderIdentity !== o.identity;
    if (someoneElse && mono() - observed.at < heldMs) return false;
    const updated = await o.api.request('PUT', path, { ...lease, spec: spec(held, t) });
    if (updated.status === 409) return false;
    if (updated.status !== 200) throw new Error(`PUT Lease ${o.namespace}/${o.name}: HTTP ${updated.status}`);
    return true;
  }

  async function tryAcquireOrRenew(): Promise<boolean> {
    let ok = false;
    try {
      ok = await attempt();
    } catch (err) {
      o.logger.warn({ lease: `${o.namespace}/${o.name}`, err: { message: (err as Error).message } }, 'Lease acquire/renew failed; retrying');
    }
    if (ok) {
      lastRenewOk = mono();
      setLeader(true);
    } else if (!leader || mono() - lastRenewOk > renewDeadlineMs) {
      // Step down before the Lease can expire for the others: never two writers at once.
      setLeader(false);
    }
    return ok;
  }

  const loop = (): void => {
    if (stopped) return;
    round = tryAcquireOrRenew();
    void round.finally(() => {
      if (!stopped) timer = setTimeout(loop, renewEveryMs);
    });
  };

  return {
    start() {
      if (!stopped) return;
      stopped = false;
      loop();
    },
    isLeader: () => leader,
    onChange(fn) {
      listeners.push(fn);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await round.catch(() => false);
      if (!leader) return;
      setLeader(false);
      // Release (client-go ReleaseOnCancel): an empty holder lets a candidate take over at once.
      try {
        const got = await o.api.request('GET', path);
        const lease = got.body as Lease;
        if (got.status === 200 && lease.spec?.holderIdentity === o.identity) {
          const t = toMicroTime(now());
          await o.api.request('PUT', path, { ...lease, spec: { leaseDurationSeconds: 1, acquireTime: t, renewTime: t, leaseTransitions: lease.spec.leaseTransitions ?? 0 } });
        }
      } catch (err) {
        o.logger.warn({ err: { message: (err as Error).message } }, 'Lease release failed; another replica takes over when it expires');
      }
    },
    tryAcquireOrRenew,
  };
}
