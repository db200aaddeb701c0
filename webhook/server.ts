/**
 * startServer(config): wires the adapters around the pure core and listens. Returns a handle whose
 * close() drains in-flight requests (fastify close) before closing the source and the store.
 * Every startup problem (unreadable cert, store that can't open, port in use) is collected and
 * thrown as one ServerStartError before anything serves.
 */
import { mkdirSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server as HttpsServer } from 'node:https';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { DestinationStream, Logger } from 'pino';
import { createLogger } from './log.js';
import { v7 as uuidv7 } from 'uuid';
import type { FastifyInstance } from 'fastify';
import { buildApp, buildMetricsApp } from './app.js';
import { toListenOptions } from './config/load.js';
import { toDecideOptions } from './config/options.js';

import { DEFAULT_CLIENT_NAMES, type Config } from './config/schema.js';
import { createFactsIndex, type FactsIndex } from './core/mapping-index.js';
import { createMetrics, observeCommit, type Metrics } from './http/metrics.js';
import {
  certificateNotAfter, createRateLimitedLog, installClientCertificateGate, loadTlsFiles, toSecureContextOptions, watchTlsFiles, type TlsFiles, type TlsMaterial,
} from './http/tls.js';
import { createFileSource } from './kube/files.js';
import { createClusterWriters } from './kube/cluster-writers.js';
import { createKubeSource, loadKubeConfig } from './kube/informers.js';
import { openStore, type OpenedStore } from './store/open.js';
import { createCertificateAuthority, createServingCertificate } from '../certs/lib.js';
import { buildAuditApp, type AuditLimits } from './http/audit.js';
import { PATHS } from './config/schema.js';
import { createKubeReviews, type KubeReviews } from './kube/reviews.js';

export class ServerStartError extends Error {
  code = 'ERR_SERVER_START';
  constructor(readonly problems: string[]) {
    super(`cannot start:\n  - ${problems.join('\n  - ')}`);
  }
}

/** A refused TLS client is logged at most once per this interval per listener and reason. */
export const REJECTION_LOG_INTERVAL_MS = 10_000;

export interface RunningServer {
  /** Bound addresses, e.g. { admission: 'https://127.0.0.1:8443', ... }. */
  urls: { admission: string; audit: string; metrics: string };
  logger: Logger;
  index: FactsIndex;
  close(): Promise<void>;
}

export interface ServerOptions {
  /** Log destination; stdout by default. */
  logStream?: NodeJS.WritableStream;
  /** Process environment (in-cluster detection for the Kubernetes source). */
  env?: Record<string, string | undefined>;
  /**
   * A folder of AdmissionReview JSON files sent once through the admission routes when the store
   * is empty, so they become real recorded decisions (`npm start`: the console has data to show).
   */
  seedReviews?: string;
  /** Overrides of the audit listener's limits (tests and the soak run use shorter timeouts). */
  auditLimits?: Partial<AuditLimits>;
}

/**
 * Sends every `*.json` AdmissionReview in `dir` (name order) through the admission app (Pod →
 * /mutate, anything else → /validate) when the store holds no record yet: the same route, rules and
 * store write as a request from the API server, minus the network. Returns how many were recorded.
 * Problems are logged, never thrown: the demo data is a convenience, not a reason not to serve.
 */
export async function seedDecisions(app: FastifyInstance, store: { query: OpenedStore['store']['query'] }, dir: string, logger: Logger): Promise<number> {
  try {
    if ((await store.query({ limit: 1 })).items.length > 0) return 0;
  } catch (err) {
    logger.warn({ err: { message: (err as Error).message } }, 'example decisions not seeded: the store could not be read');
    return 0;
  }
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch (err) {
    logger.warn({ dir, err: { message: (err as Error).message } }, 'example decisions not seeded: cannot read the folder');
    return 0;
  }
  let recorded = 0;
  for (const file of files) {
    const path = join(dir, file);
    try {
      const body = readFileSync(path, 'utf8');
      const kind = (JSON.parse(body) as { request?: { kind?: { kind?: string } } }).request?.kind?.kind;
      const res = await app.inject({ method: 'POST', url: kind === 'Pod' ? PATHS.mutate : PATHS.validate, payload: body, headers: { 'content-type': 'application/json' } });
      if (res.statusCode === 200) recorded++;
      else logger.warn({ file: path, status: res.statusCode }, 'example AdmissionReview was not recorded');
    } catch (err) {
      logger.warn({ file: path, err: { message: (err as Error).message } }, 'example AdmissionReview could not be sent');
    }
  }
  logger.info({ dir, recorded }, 'recorded the example decisions (the store was empty)');
  return recorded;
}

/** Epoch microseconds from the monotonic clock anchored at process start (µs-precise times). */
export function createMicrosClock(): () => bigint {
  const originMicros = BigInt(Date.now()) * 1000n;
  const originHr = process.hrtime.bigint();
  return () => originMicros + (process.hrtime.bigint() - originHr) / 1000n;
}


/** Dev mode: a CA and a localhost serving certificate under stateDir, reused while valid. */
export async function ensureDevCertificate(stateDir: string): Promise<{ certFile: string; keyFile: string; caFile: string }> {
  const certFile = join(stateDir, 'tls.crt');
  const keyFile = join(stateDir, 'tls.key');
  const caFile = join(stateDir, 'ca.crt');
  const dayMs = 86_400_000;
  if (existsSync(certFile) && existsSync(keyFile) && existsSync(caFile)) {
    try {
      if (certificateNotAfter(readFileSync(certFile, 'utf8')) * 1000 > Date.now() + dayMs) return { certFile, keyFile, caFile };
    } catch {
      // unreadable or corrupt: regenerate below
    }
  }
  mkdirSync(stateDir, { recursive: true });
  const ca = await createCertificateAuthority({ commonName: 'tekton-zscaler-webhook dev CA', days: 365 });
  const leaf = await createServingCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], days: 90 });
  writeFileSync(caFile, ca.certPem);
  writeFileSync(certFile, leaf.certPem);
  writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
  return { certFile, keyFile, caFile };
}

async function listenAll(apps: Array<[string, FastifyInstance, string]>, problems: string[]): Promise<Record<string, string>> {
  const urls: Record<string, string> = {};
  for (const [name, app, listen] of apps) {
    try {
      urls[name] = await app.listen(toListenOptions(listen));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(`${name} listener ${listen}: ${code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message}`);
    }
  }
  return urls;
}

function updateGauges(metrics: Metrics, index: FactsIndex, synced: boolean, store: Pick<OpenedStore, 'backlog' | 'quarantined'>): void {
  const c = index.counts();
  metrics.cacheObjects.set({ kind: 'namespaces' }, c.namespaces);
  metrics.cacheObjects.set({ kind: 'serviceaccounts' }, c.serviceAccounts);
  metrics.cacheObjects.set({ kind: 'identitymappings' }, c.mappings);
  metrics.mappingProblems.set({ kind: 'invalid' }, c.invalid);
  metrics.mappingProblems.set({ kind: 'conflict' }, c.conflicts);
  metrics.sourceSynced.set(synced ? 1 : 0);
  metrics.storeBacklog.set(store.backlog());
  metrics.storeQuarantined.set(store.quarantined());
}

export async function startServer(config: Config, opts: ServerOptions = {}): Promise<RunningServer> {
  const logger = createLogger({ level: config.logLevel, replica: config.replica, ...(opts.logStream ? { stream: opts.logStream as DestinationStream } : {}) });
  const problems: string[] = [];
  const metrics = createMetrics({ defaultMetrics: true });
  const index = createFactsIndex(config.domain);

  // TLS: configured files, or a generated dev certificate when none is configured.
  const devFiles = async (): Promise<TlsFiles> => {
    const dev = await ensureDevCertificate(config.stateDir);
    logger.warn({ certFile: dev.certFile, caFile: dev.caFile }, 'no admission.tls configured: using a generated self-signed certificate (development only)');
    return { certFile: dev.certFile, keyFile: dev.keyFile };
  };
  const tlsFiles: TlsFiles = config.admission.tls ?? (await devFiles());
  const clientNames = config.admission.tls?.clientNames ?? [...DEFAULT_CLIENT_NAMES];
  let tls: TlsMaterial | undefined;
  try {
    tls = loadTlsFiles(tlsFiles.certFile, tlsFiles.keyFile, tlsFiles.clientCAFile);
    metrics.certExpiry.set({ listener: 'admission' }, tls.notAfter);
  } catch (err) {
    problems.push((err as Error).message);
  }
  // The audit API is HTTPS too: its own certificate when configured, else the admission one
  // (never the client CA: auditors authenticate with bearer tokens).
  const auditFiles: TlsFiles = config.auditApi.tls ?? { certFile: tlsFiles.certFile, keyFile: tlsFiles.keyFile };
  let auditTls: TlsMaterial | undefined;
  try {
    auditTls = loadTlsFiles(auditFiles.certFile, auditFiles.keyFile);
    metrics.certExpiry.set({ listener: 'audit' }, auditTls.notAfter);
  } catch (err) {
    if (config.auditApi.tls) problems.push((err as Error).message);
  }

  // Object source, and (from the cluster) the writers of IdentityMapping status and Events.
  const kubeConfig = config.source.kind === 'kubernetes' ? loadKubeConfig(opts.env ?? {}) : undefined;
  const writers = kubeConfig ? createClusterWriters({ kubeConfig, index, config, logger, metrics }) : undefined;
  const source = kubeConfig
    ? createKubeSource({ kubeConfig, index, logger, domain: config.domain, ...(writers?.observer ? { mappingObserver: writers.observer } : {}) })
    : createFileSource({ paths: config.source.paths, index, logger });

  // Decision store.
  let opened: OpenedStore | undefined;
  try {
    opened = await openStore(config, logger, observeCommit(metrics));
  } catch (err) {
    problems.push(`store ${config.store.url.replace(/\/\/[^@/]*@/, '//***@')}: ${(err as Error).message}`);
  }
  if (problems.length > 0 || !opened || !tls || !auditTls) {
    await opened?.store.close();
    throw new ServerStartError(problems);
  }
  const store = opened.store;

  const readiness = (): string[] => {
    const unmet: string[] = [];
    if (!tls) unmet.push('serving certificate not loaded');
    if (!source.synced()) unmet.push('object source not synced');
    if (!store.writable()) unmet.push(store.unwritableReason?.() ?? 'decision store not writable');
    return unmet;
  };
  const nowMicros = createMicrosClock();
  const requireClientCert = tls.ca !== undefined;
  const app = buildApp({
    facts: index,
    sourceSynced: () => source.synced(),
    store,
    options: toDecideOptions(config),
    logger,
    metrics,
    newId: () => uuidv7(),
    nowMicros,
    replica: config.replica,
    deadlineMs: config.admission.deadlineMs,
    ...(writers?.onDecision ? { onDecision: writers.onDecision } : {}),
    readiness,
    readinessDetail: () => ({ store: { backlog: opened!.backlog(), quarantined: opened!.quarantined() } }),
    bodyLimit: config.admission.bodyLimitBytes,
    https: { ...toSecureContextOptions(tls), ...(requireClientCert ? { requestCert: true, rejectUnauthorized: false } : {}) },
  });
  const rejectionLog = createRateLimitedLog<string, { detail: string; remoteAddress: string | undefined }>(REJECTION_LOG_INTERVAL_MS, (reason, fields, suppressed) =>
    logger.warn({ tlsClient: { listener: reason.split(':')[0], reason: reason.split(':')[1], detail: fields.detail, remoteAddress: fields.remoteAddress, suppressedSinceLast: suppressed } }, 'TLS client refused'));
  const countRejection = (listener: string, reason: string, detail: string, remoteAddress: string | undefined): void => {
    metrics.tlsClientRejections.inc({ listener, reason });
    rejectionLog(`${listener}:${reason}`, { detail, remoteAddress });
  };
  if (requireClientCert) {
    installClientCertificateGate(app.server as unknown as TlsServer, { allowed: clientNames, onReject: (reason, detail, addr) => countRejection('admission', reason, detail, addr) });
    logger.info({ clientCAFile: tlsFiles.clientCAFile, clientNames }, 'admission listener requires a client certificate');
  }
  // kubernetes auth asks the API server reached like the object source (in-cluster, else KUBECONFIG).
  let kubeReviews: KubeReviews | undefined;
  if (config.auditApi.auth.mode === 'kubernetes') {
    const why = 'auditApi.auth.mode "kubernetes" needs the Kubernetes API (in-cluster, else KUBECONFIG)';
    try {
      const kubeConfig = loadKubeConfig(opts.env ?? {});
      if (kubeConfig.getCurrentCluster()) kubeReviews = createKubeReviews(kubeConfig);
      else problems.push(`${why}: the kubeconfig names no current cluster`);
    } catch (err) {
      problems.push(`${why}: ${(err as Error).message}`);
    }
    if (!kubeReviews) {
      await store.close();
      throw new ServerStartError(problems);
    }
  }
  const auditApp = await buildAuditApp({
    store, jwks: opened.jwks, auth: config.auditApi.auth, domain: config.domain, ...(kubeReviews ? { kubeReviews } : {}), logger, metrics,
    https: toSecureContextOptions(auditTls), ...(opts.auditLimits ? { limits: opts.auditLimits } : {}),
  });
  for (const [listener, server] of [['admission', app.server], ['audit', auditApp.server]] as const) {
    // A handshake that fails (below TLS 1.2, no shared cipher, garbage, abandoned): counted, not an error.
    (server as unknown as TlsServer).on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) =>
      countRejection(listener, 'handshake', err.code ?? err.message, socket.remoteAddress));
  }
  const reloadInto = (listener: 'admission' | 'audit', target: FastifyInstance[], current: () => TlsMaterial | undefined, set: (m: TlsMaterial) => void) => (m: TlsMaterial): void => {
    const was = current();
    if (was && m.cert === was.cert && m.key === was.key && m.ca === was.ca) return;
    try {
      for (const a of target) (a.server as unknown as HttpsServer).setSecureContext(toSecureContextOptions(a === auditApp ? { ...m, ca: undefined } : m));
      set(m);
      metrics.certExpiry.set({ listener }, m.notAfter);
      if (target.includes(auditApp) && listener !== 'audit') metrics.certExpiry.set({ listener: 'audit' }, m.notAfter);
      logger.info({ listener, notAfter: new Date(m.notAfter * 1000).toISOString(), clientCA: m.ca !== undefined && m.ca !== was?.ca ? 'reloaded' : undefined }, 'serving certificate reloaded');
    } catch (err) {
      logger.error({ listener, err: { message: (err as Error).message } }, 'new serving certificate rejected; keeping the old one');
    }
  };
  const onReloadError = (listener: string) => (err: Error): void => logger.error({ listener, err: { message: err.message } }, 'serving certificate reload failed; keeping the old one');
  const tlsWatches = [
    watchTlsFiles(tlsFiles, reloadInto('admission', config.auditApi.tls ? [app] : [app, auditApp], () => tls, (m) => (tls = m)), onReloadError('admission')),
    ...(config.auditApi.tls ? [watchTlsFiles(auditFiles, reloadInto('audit', [auditApp], () => auditTls, (m) => (auditTls = m)), onReloadError('audit'))] : []),
  ];
  const metricsApp = buildMetricsApp(metrics, logger, { readiness, readinessDetail: () => ({ store: { backlog: opened!.backlog(), quarantined: opened!.quarantined() } }) });
  const gaugeTimer = setInterval(() => updateGauges(metrics, index, source.synced(), opened!), 5000);
  gaugeTimer.unref();

  try {
    await source.start();
  } catch (err) {
    problems.push(`source (${config.source.kind}): ${(err as Error).message}`);
  }
  if (problems.length === 0) writers?.start();
  const urls = problems.length === 0 ? await listenAll([['admission', app, config.admission.listen], ['audit', auditApp, config.auditApi.listen], ['metrics', metricsApp, config.metrics.listen]], problems) : {};
  updateGauges(metrics, index, source.synced(), opened);

  const retention = opened.startRetention?.();
  const close = async (): Promise<void> => {
    clearInterval(gaugeTimer);
    retention?.stop();
    // fastify close stops accepting, answers 503 to new requests and waits for in-flight ones.
    await Promise.allSettled([app.close(), auditApp.close(), metricsApp.close()]);
    await Promise.all(tlsWatches.map((w) => w.close()));
    await writers?.stop();
    await source.close();
    await store.close();
    logger.flush?.();
  };
  if (problems.length > 0) {
    await close();
    throw new ServerStartError(problems);
  }
  if (opts.seedReviews) await seedDecisions(app, store, opts.seedReviews, logger);
  logger.info({ urls, counts: index.counts(), store: opened.describe }, 'tekton-zscaler-webhook serving');
  return { urls: { admission: urls.admission!, audit: urls.audit!, metrics: urls.metrics! }, logger, index, close };
}

