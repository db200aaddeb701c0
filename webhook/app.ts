/**
 * buildApp(deps) → the admission fastify instance (never listens: main.ts does, tests use inject()).
 * buildMetricsApp(metrics) → the Prometheus listener.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { SecureContextOptions } from 'node:tls';
import { admissionRoutes, type AdmissionDeps } from './http/admission.js';
import { healthRoutes, type ReadinessCheck } from './http/health.js';
import type { Metrics } from './http/metrics.js';
import { PATHS } from './config/schema.js';

export interface AppDeps extends AdmissionDeps {
  readiness: ReadinessCheck;
  /** Shown with /readyz (e.g. store backlog and quarantine); never changes readiness. */
  readinessDetail?: () => Record<string, unknown>;
  bodyLimit: number;
  /** Serving certificate; absent in inject() tests. */
  https?: SecureContextOptions;
}

export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    ...(deps.https ? { https: { ...deps.https, minVersion: 'TLSv1.2' } } : {}),
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

export function buildMetricsApp(metrics: Metrics, logger: AppDeps['logger']): FastifyInstance {
  const app = Fastify({ loggerInstance: logger, logController: new LogController({ disableRequestLogging: true }) }) as unknown as FastifyInstance;
  app.get(PATHS.metrics, async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  return app;
}
