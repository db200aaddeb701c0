/**
 * The webhook's writes to the cluster, wired together: the Lease elector, the IdentityMapping status
 * writer and the Event recorder (status transitions; denials when `events.onDenial`). Only with
 * `source.kind: kubernetes`. Nothing here runs on the request path: `onDecision` only enqueues.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Config } from '../config/schema.js';
import type { FactsIndex } from '../core/mapping-index.js';
import type { DecisionRecord } from '../core/record.js';
import type { Metrics } from '../http/metrics.js';
import { createKubeApi } from './api.js';
import { createEventRecorder, toDenialEvent } from './events.js';
import { createLeaseElector } from './lease.js';
import type { SourceLogger } from './source.js';
import { createStatusWriter, type StatusWriter } from './status-writer.js';

export interface ClusterWriters {
  /** For the informer (KubeSourceOptions.mappingObserver); undefined when status writing is off. */
  observer: StatusWriter | undefined;
  /** For the admission routes: enqueues a denial Event when `events.onDenial`; never waits. */
  onDecision: ((rec: DecisionRecord) => void) | undefined;
  start(): void;
  stop(): Promise<void>;
}

export function createClusterWriters(o: { kubeConfig: KubeConfig; index: FactsIndex; config: Config; logger: SourceLogger; metrics: Metrics }): ClusterWriters {
  const { config, metrics } = o;
  const api = createKubeApi(o.kubeConfig);
  const events = createEventRecorder({
    api, instance: config.replica, logger: o.logger, perSecond: config.events.perSecond, burst: config.events.burst,
    counters: { emitted: (reason) => metrics.events.inc({ reason }), dropped: () => metrics.eventsDropped.inc() },
  });
  const status = config.mappingStatus;
  const elector = status.enabled
    ? createLeaseElector({ api, namespace: status.leaseNamespace, name: status.leaseName, identity: config.replica, durationSeconds: status.leaseDurationSeconds, logger: o.logger })
    : undefined;
  elector?.onChange((leader) => metrics.statusLeader.set(leader ? 1 : 0));
  const writer = elector
    ? createStatusWriter({ api, index: o.index, elector, events, logger: o.logger, onWrite: (result) => metrics.statusWrites.inc({ result }) })
    : undefined;
  metrics.statusLeader.set(0);
  return {
    observer: writer,
    onDecision: config.events.onDenial
      ? (rec) => {
        if (rec.verdict === 'denied' && !rec.dryRun && rec.namespace !== '') events.recordLimited(toDenialEvent(rec));
      }
      : undefined,
    start() {
      writer?.start();
      elector?.start();
    },
    async stop() {
      await writer?.stop();
      await elector?.stop();
      await events.stop();
    },
  };
}
