import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Server as HttpsServer } from 'node:https';
import { parseListen } from '../config/config.js';
import { log } from '../log.js';
import { QueryError } from '../store/queries.js';
import { alertRoutes } from './alerts.js';
import { admissionRoutes } from './admission.js';
import { analystRoutes } from './analyst.js';
import { Access, AccessError, checkListenSafety, type Need } from './auth.js';
import { STORE_RETRY_AFTER_SECONDS, storeUnavailable } from './common.js';
import type { ApiContext } from './context.js';
import { eventRoutes } from './events.js';
import { healthRoutes } from './health.js';
import { CONSOLE_ROUTES, consoleRoutes } from './console.js';
import { collectOpenApi } from './openapi.js';
import { policyRoutes } from './policy.js';
import { statusRoutes } from './status.js';
import { timelineRoutes } from './timeline.js';
import { streamRoutes } from './stream.js';
import { TlsMaterial } from './tls.js';
import type { CoalescerOptions } from '../sources/webhook-coalescer.js';
import { webhookRoutes } from './webhook.js';
import { FIREHOSE_ROUTE, firehoseRoutes } from './firehose.js';
import { forwarderRoutes } from './forwarder.js';
import { PUBSUB_ROUTE, pubsubRoutes } from './pubsub.js';
import type { HubOptions } from '../sinks/ws-hub.js';

export interface AppOptions {
  /** Extra fastify server options. */
  server?: Partial<FastifyServerOptions> & Record<string, unknown>;
  /** Alert feed tuning (heartbeat, buffer bounds); tests shorten them. */
  feed?: HubOptions & { maxClients?: number };
  /** Webhook requests in progress before 503 (default 64). */
  webhookMaxInFlight?: number;
  /** Webhook group commit tuning, or false to hand each request to the pipeline alone. */
  webhookCoalesce?: CoalescerOptions | false;
  /** Where the built console is (default dist/console); tests point it elsewhere. */
  consoleDir?: string;
  /** How often the TLS files are checked for a renewed certificate (default 3 s). */
  tlsWatchMs?: number;
}

const PROBES = new Set(['/healthz', '/readyz']);
const WEBHOOK_ROUTES = new Set(['/api/v1/audit/webhook', '/api/v1/audit/webhook/:cluster', '/api/v1/ingest/forwarder', '/api/v1/ingest/forwarder/:cluster']);
/** Push endpoints that check their sender's own credential (Firehose's access key, Pub/Sub's OIDC token). */
const OWN_AUTH_ROUTES = new Set(['/api/v1' + FIREHOSE_ROUTE]);

/**
 * What a route needs: probes and the console's static files nothing (they hold no audit data; the console then asks
 * for a token), the webhook ingest, everything else (and unknown paths) read. The Pub/Sub push route checks the push's
 * OIDC token itself when an audience is configured (`pubsubOwnAuth`); else it needs ingest.
 */
function needOf(route: string | undefined, pubsubOwnAuth: boolean): Need {
  if (route === undefined) return 'read';
  if (PROBES.has(route) || CONSOLE_ROUTES.has(route)) return 'none';
  if (WEBHOOK_ROUTES.has(route)) return 'ingest';
  if (OWN_AUTH_ROUTES.has(route)) return 'none';
  if (route === '/api/v1' + PUBSUB_ROUTE) return pubsubOwnAuth ? 'none' : 'ingest';
  return 'read';
}

/**
 * The HTTP API: every route lives in a plugin; read routes under /api/v1, probes and metrics at the root, the audit
 * webhook and the alert feed under /api/v1 too. Access control (see auth.ts) and the listen-address safety check are
 * applied here, so whoever builds the app gets them.
 */
export async function buildApp(ctx: ApiContext, opts: AppOptions = {}): Promise<FastifyInstance> {
  checkListenSafety(ctx.config);
  const access = new Access(ctx.config);
  const tls = ctx.config.server.tls ? new TlsMaterial(ctx.config.server.tls, ctx.metrics) : undefined;
  const https = tls?.options();
  const app = Fastify({
    logger: false,
    // Bounded: the webhook route sets its own larger limit.
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
    ...(https ? { https } : {}),
    ...(opts.server ?? {}),
  } as FastifyServerOptions) as unknown as FastifyInstance;
  const openapi = collectOpenApi(app);
  const requests = ctx.metrics.counter('kaudit_http_requests_total', 'HTTP requests, by route and status');
  const refused = ctx.metrics.counter(
    'kaudit_auth_refused_total',
    'Requests refused by access control, by status (401 no or bad credentials, 403 scope or cluster)',
  );
  const maxResults = ctx.config.server.maxResults;
  const pubsubOwnAuth = !!ctx.sources?.some((s) => s.type === 'pubsub-push' && s.audience !== undefined);
  app.decorateRequest('principal', undefined);
  app.addHook('onRequest', async (req, reply) => {
    const route = req.routeOptions.url;
    const need = needOf(route, pubsubOwnAuth);
    try {
      const p = access.authorize(req.raw.headers, req.raw.socket, need);
      if (p.cluster !== undefined && need === 'read') {
        // A cluster-bound credential reads only its cluster: the query must say so (routes without a cluster filter refuse it).
        const asked = (req.query as Record<string, unknown> | undefined)?.cluster;
        if (asked !== p.cluster) throw new AccessError(403, `${p.name} is bound to cluster "${p.cluster}": add cluster=${p.cluster} to the query`);
      }
      req.principal = p;
    } catch (e) {
      if (!(e instanceof AccessError)) throw e;
      refused.inc({ status: String(e.statusCode) });
      if (e.statusCode === 401) reply.header('www-authenticate', 'Bearer realm="kaudit"');
      // The body of a refused request is not read: close the connection rather than drain it.
      if (req.method === 'POST' || req.method === 'PUT') reply.header('connection', 'close');
      return reply.code(e.statusCode).send({ error: e.message });
    }
  });
  // One request cannot ask for more than server.maxResults rows; it pages with `cursor` instead.
  app.addHook('preHandler', async (req) => {
    const q = req.query as Record<string, unknown> | undefined;
    if (q && typeof q.limit === 'number' && q.limit > maxResults) q.limit = maxResults;
  });
  app.addHook('onResponse', async (req, reply) => {
    requests.inc({ route: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });
  app.addHook('onClose', async () => {
    access.stop();
    tls?.stop();
  });
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    if (err instanceof QueryError) return reply.code(400).send({ error: err.message });
    // The store is away or not yet searchable (a fleet store down, restarting, or a day's index just created): the
    // caller may ask again, and the one line says why.
    const away = storeUnavailable(err);
    if (away) {
      log.warn(`request ${req.id} ${req.method} ${req.routeOptions.url ?? ''}: ${away}`, 'http-store-unavailable');
      return reply
        .code(503)
        .header('retry-after', STORE_RETRY_AFTER_SECONDS)
        .send({ error: `the store is unavailable; retry later: ${away}` });
    }
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) log.error(`request ${req.id} ${req.method} ${req.routeOptions.url ?? ''}: ${err.message}`, 'http-error');
    return reply.code(status).send({ error: status >= 500 ? 'internal error' : err.message });
  });
  access.watch();
  tls?.watch(app.server as unknown as HttpsServer, opts.tlsWatchMs);
  await app.register(healthRoutes, { ctx });
  await app.register(consoleRoutes, { dir: opts.consoleDir });
  await app.register(
    async (api) => {
      await api.register(eventRoutes, { ctx });
      await api.register(alertRoutes, { ctx });
      await api.register(analystRoutes, { ctx });
      await api.register(admissionRoutes, { ctx });
      await api.register(webhookRoutes, { ctx, maxInFlight: opts.webhookMaxInFlight, coalesce: opts.webhookCoalesce });
      await api.register(policyRoutes, { ctx });
      await api.register(statusRoutes, { ctx });
      await api.register(timelineRoutes, { ctx });
      await api.register(forwarderRoutes, { ctx });
      const firehose = ctx.sources?.find((s) => s.type === 'firehose');
      if (firehose) await api.register(firehoseRoutes, { ctx, source: firehose });
      const pubsub = ctx.sources?.find((s) => s.type === 'pubsub-push');
      if (pubsub) {
        await api.register(pubsubRoutes, { ctx, source: pubsub });
      }
      await api.register(streamRoutes, { ctx, access, hub: opts.feed, maxClients: opts.feed?.maxClients });
      api.get('/openapi.json', { schema: { hide: true } }, async () => openapi());
    },
    { prefix: '/api/v1' },
  );
  return app;
}

/**
 * Builds the app and listens on the configured address; returns the app and the bound address (host:port). Refuses
 * (ConfigError) a non-loopback address without TLS and credentials unless insecureAllowUnauthenticatedRemote is set.
 */
export async function startApi(ctx: ApiContext, opts: AppOptions = {}): Promise<{ app: FastifyInstance; address: string; port: number }> {
  const { host, port } = parseListen(ctx.config.server.listen);
  const app = await buildApp(ctx, opts);
  await app.listen({ host, port });
  const addr = app.server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  return { app, address: `${host.includes(':') ? `[${host}]` : host}:${bound}`, port: bound };
}
