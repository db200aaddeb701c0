/** GET /healthz (the process serves) and GET /readyz (certs loaded, source synced, store writable). */
import type { FastifyInstance } from 'fastify';
import { PATHS } from '../config/schema.js';

/** Returns the unmet readiness conditions; empty = ready. */
export type ReadinessCheck = () => string[];

export async function healthRoutes(app: FastifyInstance, deps: { readiness: ReadinessCheck }): Promise<void> {
  app.get(PATHS.healthz, async () => ({ status: 'ok' }));
  app.get(PATHS.readyz, async (_req, reply) => {
    const unmet = deps.readiness();
    if (unmet.length > 0) return reply.code(503).send({ status: 'not ready', unmet });
    return { status: 'ready' };
  });
}
