import type { FastifyInstance } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { SEVERITIES } from '../detect/alert.js';
import { log } from '../log.js';
import { AlertHub, isSeverity, type FeedFilter, type HubOptions } from '../sinks/ws-hub.js';
import { AccessError, type Access } from './auth.js';
import type { ApiContext } from './context.js';

/**
 * The live alert feed: a WebSocket at /api/v1/alerts/stream (needs scope read). Each text frame is one alert as JSON,
 * with its store `id` and `rule`. Query parameters: `severity` (minimum), `rule` (ids, comma-separated or repeated),
 * `cluster`, `namespace`, `after` (resume: stored alerts with a greater id first, then live ones). The server pings
 * every 30 s and drops peers that do not answer; a client that cannot keep up is closed with code 4008 and a reason
 * naming the `after` to resume with.
 */

export interface StreamOptions {
  ctx: ApiContext;
  access: Access;
  hub?: HubOptions;
  /** Concurrent feed clients; past this, upgrades are answered 503 (default 256). */
  maxClients?: number;
}

const MAX_RULES = 100;

/**
 * Browsers cannot set an Authorization header on a WebSocket, and a token in the URL ends up in logs and history. So
 * a browser offers two subprotocols instead: `kaudit.v1` and `kaudit.bearer.<token, base64url>` (the way Kubernetes'
 * own apiserver takes `base64url.bearer.authorization.k8s.io.<token>`). The server selects `kaudit.v1`, never echoing
 * the token back.
 */
export const FEED_PROTOCOL = 'kaudit.v1';
const BEARER_PROTOCOL = 'kaudit.bearer.';

/** The bearer token carried in Sec-WebSocket-Protocol, if any (undefined when absent; throws 401 when malformed). */
export function bearerFromProtocols(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const offered = (Array.isArray(header) ? header.join(',') : header).split(',').map((p) => p.trim());
  const carried = offered.filter((p) => p.startsWith(BEARER_PROTOCOL));
  if (carried.length === 0) return undefined;
  if (carried.length > 1) throw new FeedRequestError(401, 'more than one kaudit.bearer subprotocol offered');
  const enc = carried[0]!.slice(BEARER_PROTOCOL.length);
  if (!/^[A-Za-z0-9_-]{1,1400}$/.test(enc)) throw new FeedRequestError(401, 'the kaudit.bearer subprotocol must carry the token in base64url');
  const token = Buffer.from(enc, 'base64url').toString('utf8');
  if (!/^\S+$/.test(token)) throw new FeedRequestError(401, 'the kaudit.bearer subprotocol does not decode to a token');
  return token;
}
const MAX_TEXT = 253;
const PARAMS = new Set(['severity', 'rule', 'cluster', 'namespace', 'after']);

class FeedRequestError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** Parses and bounds the feed's query parameters. */
export function feedParams(search: URLSearchParams): { filter: FeedFilter; after?: number } {
  const filter: FeedFilter = {};
  let after: number | undefined;
  for (const k of search.keys())
    if (!PARAMS.has(k)) throw new FeedRequestError(400, `unknown query parameter "${k.slice(0, 40)}"; use ${[...PARAMS].join(', ')}`);
  const one = (k: string): string | undefined => {
    const all = search.getAll(k);
    if (all.length > 1) throw new FeedRequestError(400, `query parameter "${k}" given ${all.length} times`);
    const v = all[0];
    if (v !== undefined && (v.length === 0 || v.length > MAX_TEXT))
      throw new FeedRequestError(400, `query parameter "${k}" must be 1 to ${MAX_TEXT} characters`);
    return v;
  };
  const sev = one('severity');
  if (sev !== undefined) {
    if (!isSeverity(sev)) throw new FeedRequestError(400, `severity "${sev}" is not one of ${SEVERITIES.join(', ')}`);
    filter.minSeverity = sev;
  }
  const rules = search
    .getAll('rule')
    .flatMap((r) => r.split(','))
    .map((r) => r.trim())
    .filter(Boolean);
  if (rules.length > MAX_RULES) throw new FeedRequestError(400, `at most ${MAX_RULES} rule ids`);
  if (rules.some((r) => r.length > MAX_TEXT)) throw new FeedRequestError(400, `rule ids are at most ${MAX_TEXT} characters`);
  if (rules.length) filter.rules = rules;
  filter.cluster = one('cluster');
  filter.namespace = one('namespace');
  if (filter.cluster === undefined) delete filter.cluster;
  if (filter.namespace === undefined) delete filter.namespace;
  const a = one('after');
  if (a !== undefined) {
    if (!/^\d{1,15}$/.test(a)) throw new FeedRequestError(400, `after must be an alert id (a non-negative integer), not "${a.slice(0, 40)}"`);
    after = Number(a);
  }
  return { filter, after };
}

/** Answers a refused upgrade with a plain HTTP response on the raw socket. */
function refuse(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: message });
  const text: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' };
  const head = [
    `HTTP/1.1 ${status} ${text[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(head.join('\r\n') + '\r\n\r\n' + body);
}

export async function streamRoutes(app: FastifyInstance, opts: StreamOptions): Promise<void> {
  const { ctx, access } = opts;
  const path = `${app.prefix}/alerts/stream`;
  const maxClients = opts.maxClients ?? 256;
  const hub = new AlertHub(ctx.bus, ctx.store, ctx.metrics, opts.hub);
  // Clients send nothing but control frames: a small payload bound keeps a hostile peer from buffering much.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 4096,
    perMessageDeflate: false,
    clientTracking: false,
    // Only ever select the feed protocol: a client that offered its token as a subprotocol never sees it echoed.
    handleProtocols: (offered: Set<string>) => (offered.has(FEED_PROTOCOL) ? FEED_PROTOCOL : false),
  });
  const upgrades = ctx.metrics.counter('kaudit_feed_upgrades_total', 'Alert feed connection attempts, by HTTP status (101 = accepted)');

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    let status = 101;
    try {
      const url = new URL(req.url ?? '/', 'http://kaudit');
      if (url.pathname !== path) throw new FeedRequestError(404, `no WebSocket endpoint at ${url.pathname.slice(0, 100)}; the alert feed is ${path}`);
      let principal;
      try {
        const carried = req.headers.authorization === undefined ? bearerFromProtocols(req.headers['sec-websocket-protocol']) : undefined;
        if (carried !== undefined && !(req.headers['sec-websocket-protocol'] ?? '').includes(FEED_PROTOCOL))
          throw new FeedRequestError(400, `a client sending its token as a subprotocol must also offer ${FEED_PROTOCOL}`);
        const headers = carried === undefined ? req.headers : { ...req.headers, authorization: `Bearer ${carried}` };
        principal = access.authorize(headers, req.socket, 'read');
      } catch (e) {
        if (e instanceof AccessError) throw new FeedRequestError(e.statusCode, e.message);
        throw e;
      }
      const { filter, after } = feedParams(url.searchParams);
      if (principal.cluster !== undefined) {
        if (filter.cluster !== undefined && filter.cluster !== principal.cluster)
          throw new FeedRequestError(403, `${principal.name} is bound to cluster "${principal.cluster}" and cannot watch cluster "${filter.cluster}"`);
        filter.cluster = principal.cluster;
      }
      if (hub.size >= maxClients) throw new FeedRequestError(503, `too many alert feed clients (${maxClients}); retry later`);
      wss.handleUpgrade(req, socket, head, (ws) => hub.add(ws, filter, after));
    } catch (e) {
      status = e instanceof FeedRequestError ? e.statusCode : 500;
      if (status === 500) log.error(`alert feed upgrade failed: ${(e as Error).message}`, 'feed-upgrade');
      const headers: Record<string, string> = status === 401 ? { 'WWW-Authenticate': 'Bearer realm="kaudit"' } : status === 503 ? { 'Retry-After': '5' } : {};
      refuse(socket, status, status === 500 ? 'internal error' : (e as Error).message, headers);
    }
    upgrades.inc({ status: String(status) });
  };
  app.server.on('upgrade', onUpgrade);
  app.addHook('preClose', async () => {
    app.server.off('upgrade', onUpgrade);
    hub.close();
  });

  app.get(
    '/alerts/stream',
    {
      schema: {
        summary: 'Live alert feed (WebSocket): one alert as JSON per text frame; resume with after=<last id>',
        description:
          'Connect with a WebSocket client (Upgrade: websocket). Filters: severity (minimum), rule (comma-separated ids), cluster, namespace; after=<id> first replays stored alerts with greater ids, then streams live ones, with no gap and no duplicate. Close code 4008 means the client was too slow; its reason says the after= to resume with.',
        tags: ['alerts'],
        querystring: {
          type: 'object',
          properties: {
            severity: { type: 'string', enum: [...SEVERITIES] },
            rule: { type: 'string' },
            cluster: { type: 'string' },
            namespace: { type: 'string' },
            after: { type: 'integer', minimum: 0 },
          },
        },
      },
    },
    async (_req, reply) =>
      reply
        .code(426)
        .header('upgrade', 'websocket')
        .send({ error: 'the alert feed is a WebSocket endpoint: connect with Upgrade: websocket (e.g. kaudit alerts --follow)' }),
  );
}
