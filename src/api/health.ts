import type { FastifyInstance } from 'fastify';
import type { ApiContext } from './context.js';

/** Liveness, readiness and Prometheus metrics. Outside /api/v1, as probes and scrapers expect. */
export async function healthRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts;
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    if (!ctx.ready()) return reply.code(503).send({ status: 'starting' });
    const problem = ctx.problem?.();
    if (problem) return reply.code(503).send({ status: 'not ready', error: problem });
    try {
      await ctx.store.check();
    } catch (e) {
      return reply.code(503).send({ status: 'store unavailable', error: (e as Error).message });
    }
    return { status: 'ready' };
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('content-type', 'text/plain; version=0.0.4; charset=utf-8');
    return ctx.metrics.render();
  });
}
