import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { parseListen } from '../config/config.js';
import { QueryError } from '../store/queries.js';
import { alertRoutes } from './alerts.js';
import { analystRoutes } from './analyst.js';
import type { ApiContext } from './context.js';
import { eventRoutes } from './events.js';
import { healthRoutes } from './health.js';
import { collectOpenApi } from './openapi.js';

export interface AppOptions {
  /** Extra fastify server options (https, and the like). */
  server?: Partial<FastifyServerOptions> & Record<string, unknown>;
}

/**
 * The HTTP API: every route lives in a plugin; read routes under /api/v1, probes and metrics at the root.
 */
export async function buildApp(ctx: ApiContext, opts: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    // Bounded: the webhook route sets its own larger limit.
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
    ...(opts.server ?? {}),
  } as FastifyServerOptions);
  const openapi = collectOpenApi(app);
  const requests = ctx.metrics.counter('kaudit_http_requests_total', 'HTTP requests, by route and status');
  app.addHook('onResponse', async (req, reply) => {
    requests.inc({ route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    if (err instanceof QueryError) return reply.code(400).send({ error: err.message });
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) req.log.error(err);
    return reply.code(status).send({ error: status >= 500 ? 'internal error' : err.message });
  });
  await app.register(healthRoutes, { ctx });
  await app.register(
    async (api) => {
      await api.register(eventRoutes, { ctx });
      await api.register(alertRoutes, { ctx });
      await api.register(analystRoutes, { ctx });
      api.get('/openapi.json', { schema: { hide: true } }, async () => openapi());
    },
    { prefix: '/api/v1' },
  );
  return app;
}

/** Builds the app and listens on the configured address; returns the app and the bound address (host:port). */
export async function startApi(ctx: ApiContext): Promise<{ app: FastifyInstance; address: string; port: number }> {
  const { host, port } = parseListen(ctx.config.server.listen);
  const app = await buildApp(ctx);
  await app.listen({ host, port });
  const addr = app.server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  return { app, address: `${host.includes(':') ? `[${host}]` : host}:${bound}`, port: bound };
}
