/**
 * Kubernetes Events (core/v1), written off the request path: callers enqueue, one worker posts.
 * Two kinds of callers:
 * - the IdentityMapping status writer: one Warning when a mapping turns Conflict/Invalid (rare,
 *   never dropped while the queue has room);
 * - `events.onDenial`: one Warning per denied run in the run's namespace, through a token bucket
 *   (`perSecond`, `burst`), like Gatekeeper's --emit-admission-events. A full queue drops the event
 *   and counts it (`tzw_events_dropped_total`): admission never waits for the API server.
 */
import type { DecisionRecord } from '../core/record.js';
import type { KubeApi } from './api.js';
import type { SourceLogger } from './source.js';

export const COMPONENT = 'tekton-zscaler-webhook';
/** Event messages above this are cut (events.k8s.io's note limit; core Events carry no more usefully). */
export const MAX_EVENT_MESSAGE = 1024;
export const DEFAULT_MAX_QUEUE = 1000;
/** Cluster-scoped objects' Events go to `default`, as client-go's recorder puts them. */
export const CLUSTER_SCOPED_EVENT_NAMESPACE = 'default';

export interface EventRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
}

export interface KubeEvent {
  /** Where the Event is stored: the object's namespace, or `default` for cluster-scoped objects. */
  namespace: string;
  involvedObject: EventRef;
  type: 'Warning' | 'Normal';
  reason: string;
  message: string;
}

export interface EventCounters {
  emitted(reason: string): void;
  dropped(): void;
}

export interface EventRecorderOptions {
  api: KubeApi;
  /** reportingInstance and source.host: the replica name. */
  instance: string;
  logger: SourceLogger;
  perSecond: number;
  burst: number;
  maxQueue?: number;
  counters?: EventCounters;
  now?: () => Date;
  monotonicMs?: () => number;
}

export interface EventRecorder {
  /** Enqueues an Event outside the rate limit (status transitions). False when the queue is full. */
  record(event: KubeEvent): boolean;
  /** Enqueues a rate-limited Event (denials). False (and counted as dropped) when the queue is full. */
  recordLimited(event: KubeEvent): boolean;
  /** Resolves when the queue is empty and nothing is in flight (tests, shutdown). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

/** `build-` → `build.`: the server appends 5 characters; the result must stay a DNS subdomain. */
export function toGenerateName(name: string): string {
  const base = name.toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '').slice(0, 200);
  return `${base === '' ? 'tzw' : base}.`;
}

/** The Warning Event for a denied run (pure). The run does not exist (it was denied at creation): no uid. */
export function toDenialEvent(rec: DecisionRecord): KubeEvent {
  const apiVersion = rec.kind.group === '' ? rec.kind.version : `${rec.kind.group}/${rec.kind.version}`;
  const why = rec.reasons.map((r) => r.message).join('; ');
  return {
    namespace: rec.namespace,
    involvedObject: { apiVersion, kind: rec.kind.kind, name: rec.name, namespace: rec.namespace },
    type: 'Warning',
    reason: 'AdmissionDenied',
    message: `${rec.kind.kind} ${rec.name} denied by tekton-zscaler-webhook (decision ${rec.id}): ${why}`,
  };
}

export function createEventRecorder(o: EventRecorderOptions): EventRecorder {
  const now = o.now ?? (() => new Date());
  const mono = o.monotonicMs ?? (() => performance.now());
  const maxQueue = o.maxQueue ?? DEFAULT_MAX_QUEUE;
  const queue: Array<{ event: KubeEvent; limited: boolean }> = [];
  let tokens = o.burst;
  let refilledAt = mono();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const idleWaiters: Array<() => void> = [];

  const refill = (): void => {
    const t = mono();
    tokens = Math.min(o.burst, tokens + ((t - refilledAt) / 1000) * o.perSecond);
    refilledAt = t;
  };

  async function post(event: KubeEvent): Promise<void> {
    const t = now().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const body = {
      apiVersion: 'v1', kind: 'Event',
      metadata: { generateName: toGenerateName(event.involvedObject.name), namespace: event.namespace },
      involvedObject: event.involvedObject,
      type: event.type, reason: event.reason,
      message: event.message.length > MAX_EVENT_MESSAGE ? `${event.message.slice(0, MAX_EVENT_MESSAGE - 3)}...` : event.message,
      source: { component: COMPONENT, host: o.instance },
      reportingComponent: COMPONENT, reportingInstance: o.instance,
      firstTimestamp: t, lastTimestamp: t, count: 1,
    };
    const res = await o.api.request('POST', `/api/v1/namespaces/${encodeURIComponent(event.namespace)}/events`, body);
    if (res.status !== 201 && res.status !== 200) {
      const detail = typeof res.body === 'object' && res.body !== null ? (res.body as { message?: string }).message : undefined;
      throw new Error(`HTTP ${res.status}${detail ? `: ${detail}` : ''}`);
    }
  }

  /** True while a drain runs or waits (on a timer) for a token. */
  let busy = false;

  async function drain(): Promise<void> {
    busy = true;
    timer = undefined;
    while (queue.length > 0 && !stopped) {
      const next = queue[0]!;
      if (next.limited) {
        refill();
        if (tokens < 1) {
          timer = setTimeout(() => void drain(), Math.ceil(((1 - tokens) / o.perSecond) * 1000));
          return;
        }
        tokens -= 1;
      }
      queue.shift();
      try {
        await post(next.event);
        o.counters?.emitted(next.event.reason);
      } catch (err) {
        // Events are best effort (the decision record is the evidence); log and move on.
        o.logger.warn({ event: { reason: next.event.reason, namespace: next.event.namespace, name: next.event.involvedObject.name }, err: { message: (err as Error).message } }, 'could not write a Kubernetes Event');
      }
    }
    busy = false;
    for (const w of idleWaiters.splice(0)) w();
  }

  const enqueue = (event: KubeEvent, limited: boolean): boolean => {
    if (stopped || queue.length >= maxQueue) {
      o.counters?.dropped();
      return false;
    }
    queue.push({ event, limited });
    if (!busy) void drain();
    return true;
  };

  return {
    record: (event) => enqueue(event, false),
    recordLimited: (event) => enqueue(event, true),
    idle: () => (queue.length === 0 && !busy ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve))),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      queue.length = 0;
      busy = false;
      for (const w of idleWaiters.splice(0)) w();
    },
  };
}
