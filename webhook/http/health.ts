/**
 * GET /healthz (the process serves) and GET /readyz (certs loaded, source synced, store writable),
 * with `detail` (e.g. the store's backlog and quarantine) when the server gives one: information for
 * people, not a condition — quarantined decisions need a look, not an unready pod.
 */
import type { FastifyInstance } from 'fastify';
import { PATHS } from '../config/schema.js';

/** Returns the unmet readiness conditions; empty = ready. */
export type ReadinessCheck = () => string[];

export async function healthRoutes(app: FastifyInstance, deps: { readiness: ReadinessCheck; readinessDetail?: () => Record<string, unknown> }): Promise<void> {
  app.get(PATHS.healthz, async () => ({ status: 'ok' }));
  app.get(PATHS.readyz, async (_req, reply) => {
    const unmet = deps.readiness();
    const detail = deps.readinessDetail ? { detail: deps.readinessDetail() } : {};
    if (unmet.length > 0) return reply.code(503).send({ status: 'not ready', unmet, ...detail });
    return { status: 'ready', ...detail };
  });
}
