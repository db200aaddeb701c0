/**
 * Prometheus metrics (prom-client) on a registry owned by the process, never the global one, so
 * tests can build several apps side by side.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CommitObserver } from '../store/port.js';

export interface Metrics {
  registry: Registry;
  decisions: Counter<'endpoint' | 'verdict' | 'namespace'>;
  admissionSeconds: Histogram<'endpoint'>;
  storeWriteSeconds: Histogram;
  storeCommitSeconds: Histogram;
  storeCommitRecords: Histogram;
  cacheObjects: Gauge<'kind'>;
  sourceSynced: Gauge;
  mappingProblems: Gauge<'kind'>;
  certExpiry: Gauge<'listener'>;
  storeBacklog: Gauge;
  storeQuarantined: Gauge;
  statusLeader: Gauge;
  statusWrites: Counter<'result'>;
  events: Counter<'reason'>;
  eventsDropped: Counter;
  tlsClientRejections: Counter<'listener' | 'reason'>;
  auditAuthLockouts: Counter;
}

/** Buckets from 0.25 ms to 10 s: admission latency budgets are in milliseconds. */
const LATENCY_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Records per group commit: 1 when requests come one at a time, tens under load. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** The tzw_store_commit_* histograms, fed by a store's commit observer (store/port.ts CommitObserver). */
export function observeCommit(metrics: Pick<Metrics, 'storeCommitSeconds' | 'storeCommitRecords'>): CommitObserver {
  return ({ seconds, records }) => {
    metrics.storeCommitSeconds.observe(seconds);
    metrics.storeCommitRecords.observe(records);
  };
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'tzw_' });
  const registers = [registry];
  const metrics: Metrics = {
    registry,
    decisions: new Counter({ name: 'tzw_decisions_total', help: 'Admission decisions by endpoint, verdict and namespace', labelNames: ['endpoint', 'verdict', 'namespace'], registers }),
    admissionSeconds: new Histogram({ name: 'tzw_admission_duration_seconds', help: 'Time from request to response, including the durable store write', labelNames: ['endpoint'], buckets: LATENCY_BUCKETS, registers }),
    storeWriteSeconds: new Histogram({ name: 'tzw_store_write_duration_seconds', help: 'Time until a decision record is durably committed', buckets: LATENCY_BUCKETS, registers }),
    storeCommitSeconds: new Histogram({ name: 'tzw_store_commit_duration_seconds', help: 'Wall time of each store transaction on the writer thread (SQLite store, or the PostgreSQL store\'s local spool), lock wait and fsync included: the disk\'s share of tzw_store_write_duration_seconds', buckets: LATENCY_BUCKETS, registers }),
    storeCommitRecords: new Histogram({ name: 'tzw_store_commit_records', help: 'Decision records per store transaction (group commit: requests that arrive while one transaction syncs share the next)', buckets: BATCH_BUCKETS, registers }),
    cacheObjects: new Gauge({ name: 'tzw_cache_objects', help: 'Objects held in the in-memory cache by kind', labelNames: ['kind'], registers }),
    sourceSynced: new Gauge({ name: 'tzw_source_synced', help: '1 when namespaces, ServiceAccounts and IdentityMappings are loaded', registers }),
    mappingProblems: new Gauge({ name: 'tzw_identitymapping_problems', help: 'IdentityMapping problems by kind: invalid (mappings), conflict (ServiceAccounts claimed twice)', labelNames: ['kind'], registers }),
    certExpiry: new Gauge({ name: 'tzw_certificate_expiry_timestamp_seconds', help: 'notAfter of the serving certificate of each listener (admission, audit), as a Unix time', labelNames: ['listener'], registers }),
    tlsClientRejections: new Counter({
      name: 'tzw_tls_client_rejections_total',
      help: 'TLS connections refused: reason no_certificate, untrusted (not from the client CA), name_not_allowed, or handshake (failed handshake, e.g. below TLS 1.2)',
      labelNames: ['listener', 'reason'], registers,
    }),
    auditAuthLockouts: new Counter({ name: 'tzw_audit_auth_rate_limited_total', help: 'Audit API requests refused (429) because their client failed authentication too often', registers }),
    storeBacklog: new Gauge({ name: 'tzw_store_backlog_records', help: 'Decisions spooled locally and not yet forwarded to the shared store', registers }),
    storeQuarantined: new Gauge({ name: 'tzw_store_quarantined_records', help: 'Decisions the shared store refused, kept in the local spool quarantine (never deleted; see tzw decisions export)', registers }),
    statusLeader: new Gauge({ name: 'tzw_status_writer_leader', help: '1 while this replica holds the Lease and writes IdentityMapping status', registers }),
    statusWrites: new Counter({ name: 'tzw_identitymapping_status_writes_total', help: 'IdentityMapping status patches by result (ok, error)', labelNames: ['result'], registers }),
    events: new Counter({ name: 'tzw_events_total', help: 'Kubernetes Events written, by reason', labelNames: ['reason'], registers }),
    eventsDropped: new Counter({ name: 'tzw_events_dropped_total', help: 'Kubernetes Events dropped because the queue was full', registers }),
  };
  // Labelled series exist from the start (at 0), so alerts and dashboards see 0 rather than nothing.
  for (const result of ['ok', 'error']) metrics.statusWrites.inc({ result }, 0);
  for (const reason of ['Conflict', 'Invalid', 'AdmissionDenied']) metrics.events.inc({ reason }, 0);
  return metrics;
}
