/**
 * buildApp(deps) → the admission fastify instance (never listens: main.ts does, tests use inject()).
 * buildMetricsApp(metrics, logger, readiness) → the Prometheus listener (plus the health probes).
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { SecureContextOptions } from 'node:tls';
import { admissionRoutes, type AdmissionDeps } from './http/admission.js';
import { healthRoutes, type ReadinessCheck } from './http/health.js';
import type { Metrics } from './http/metrics.js';
import { PATHS } from './config/schema.js';
import { HANDSHAKE_TIMEOUT_MS, MIN_TLS_VERSION } from './http/tls.js';

export interface AppDeps extends AdmissionDeps {
  readiness: ReadinessCheck;
  /** Shown with /readyz (e.g. store backlog and quarantine); never changes readiness. */
  readinessDetail?: () => Record<string, unknown>;
  bodyLimit: number;
  /** Serving certificate (and client-certificate options); absent in inject() tests. */
  https?: SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean };
}

export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    ...(deps.https ? { https: { ...deps.https, minVersion: MIN_TLS_VERSION, handshakeTimeout: HANDSHAKE_TIMEOUT_MS } } : {}),
    bodyLimit: deps.bodyLimit,
    loggerInstance: deps.logger,
    logController: new LogController({ disableRequestLogging: true }),
    // The API server closes idle connections itself; keep ours long enough for reuse.
    keepAliveTimeout: 75_000,
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  void app.register(healthRoutes, { readiness: deps.readiness, ...(deps.readinessDetail ? { readinessDetail: deps.readinessDetail } : {}) });
  void app.register(admissionRoutes, deps);
  return app;
}

/**
 * The metrics listener also serves /healthz and /readyz, so kubelet probes need no client
 * certificate when the admission listener requires one (DESIGN "Hardening").
 */
export function buildMetricsApp(metrics: Metrics, logger: AppDeps['logger'], health: { readiness: ReadinessCheck; readinessDetail?: () => Record<string, unknown> } = { readiness: () => [] }): FastifyInstance {
  const app = Fastify({ loggerInstance: logger, logController: new LogController({ disableRequestLogging: true }) }) as unknown as FastifyInstance;
  void app.register(healthRoutes, health);
  app.get(PATHS.metrics, async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  return app;
}
