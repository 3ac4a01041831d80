import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OverloadedError } from '../errors.js';
import { log } from '../log.js';
import { WebhookCoalescer, type CoalescerOptions, type Committed } from '../sources/webhook-coalescer.js';
import { BodyBuffers } from '../sources/body-buffers.js';
import { readAuditBody, tooLarge, WebhookError, type ParsedBody } from '../sources/webhook-body.js';
import { CLUSTER_NAME, type Principal } from './auth.js';
import { STORE_RETRY_AFTER_SECONDS, storeUnavailable } from './common.js';
import type { ApiContext } from './context.js';

/**
 * The audit webhook backend's routes and admission: what kube-apiserver's `--audit-webhook-config-file` sends. The
 * apiserver POSTs an `EventList` (application/json) of up to 400 events to exactly the configured URL, several batches
 * in flight, and retries anything but 200-206 with backoff. So: 200 only once the batch is committed (nothing
 * acknowledged can be lost), 503 with Retry-After at once when the pipeline is full (the apiserver's retry then
 * buffers), and 4xx for bodies that no retry can fix, each with a message saying what is wrong. The body's framing is
 * sources/webhook-body.ts; the group commit, sources/webhook-coalescer.ts.
 */

declare module 'fastify' {
  interface FastifyRequest {
    /** The cluster a webhook request writes to (credential binding, else path, else the default). */
    auditCluster?: string;
    /** The credential or the path named that cluster: an envelope in the body cannot send events elsewhere. */
    auditClusterFixed?: boolean;
  }
}

export interface WebhookOptions {
  ctx: ApiContext;
  /** Webhook requests being read or waiting for their commit; past this, 503 (default 64). */
  maxInFlight?: number;
  /**
   * Body bytes admitted and not yet answered (being read, parsed, waiting or committing); a request that would pass
   * this is refused with 503 before its body is read (default 8 MiB; a body alone is admitted whatever its size, up to
   * webhook.maxBodyBytes).
   */
  maxBytesInFlight?: number;
  /** Group commit tuning; `false` hands each request to the pipeline as its own batch. */
  coalesce?: CoalescerOptions | false;
}

const RETRY_AFTER_SECONDS = '1';
/** Default admission budget: about 24 apiserver batches of 400 typical events. More only adds parse work and GC. */
const BYTES_IN_FLIGHT = 8 * 1024 * 1024;

/**
 * Cluster precedence: a credential bound to a cluster always writes to that cluster; a path segment naming another
 * cluster is refused (403), naming the same one is fine. An unbound credential (or none, on loopback) writes to the
 * path's cluster, else to the configured default `cluster`. A cluster from the binding or the path is fixed: an
 * envelope in the body naming another cluster does not move its events there (only the default gives way to it).
 */
export function webhookCluster(
  principal: Principal | undefined,
  pathCluster: string | undefined,
  fallback: string,
): { cluster: string; fixed: boolean } | { status: 400 | 403; error: string } {
  if (pathCluster !== undefined && !CLUSTER_NAME.test(pathCluster)) {
    return { status: 400, error: `bad cluster name "${pathCluster.slice(0, 80)}" in the path (letters, digits, . _ -; at most 63)` };
  }
  const bound = principal?.cluster;
  if (bound !== undefined) {
    if (pathCluster !== undefined && pathCluster !== bound) {
      return { status: 403, error: `${principal!.name} is bound to cluster "${bound}" and cannot write to cluster "${pathCluster}"` };
    }
    return { cluster: bound, fixed: true };
  }
  return { cluster: pathCluster ?? fallback, fixed: pathCluster !== undefined };
}

export async function webhookRoutes(app: FastifyInstance, opts: WebhookOptions): Promise<void> {
  const { ctx } = opts;
  const limit = ctx.config.webhook.maxBodyBytes;
  const maxInFlight = opts.maxInFlight ?? 64;
  const m = ctx.metrics;
  const rejected = m.counter(
    'kaudit_webhook_rejected_total',
    'Webhook requests refused, by reason (content_type, too_large, malformed, overloaded, busy, unavailable, cluster, error)',
  );
  const received = m.counter('kaudit_webhook_events_received_total', 'Events received in webhook bodies that were handed to the pipeline');
  const bytesIn = m.counter('kaudit_webhook_bytes_total', 'Webhook body bytes read');
  const acked = m.counter('kaudit_webhook_batches_acknowledged_total', 'Webhook batches committed and answered 200');
  const seconds = m.counter('kaudit_webhook_request_seconds_sum', 'Total seconds webhook requests took, receipt to answer');
  const count = m.counter('kaudit_webhook_request_seconds_count', 'Webhook requests answered');
  // Admission happens before a body is read: parsing a body that is then refused would be work thrown away, and under
  // overload that waste collapses throughput (measured: 64 concurrent senders got a fifth of what 8 got).
  // Not raised to webhook.maxBodyBytes (12 MiB by default): a body larger than the budget is still admitted when it is
  // the only one, and 12 MiB of bodies in flight, with as much again in recycled buffers, was a resident memory that
  // the 200 MB bound of `kaudit serve` had no room for.
  const maxBytes = opts.maxBytesInFlight ?? BYTES_IN_FLIGHT;
  let inFlight = 0;
  let bytesInFlight = 0;
  m.collect('kaudit_webhook_in_flight', 'Webhook requests being read or waiting for their commit', () => [{ value: inFlight }]);
  m.collect('kaudit_webhook_bytes_in_flight', 'Webhook body bytes admitted and not yet answered', () => [{ value: bytesInFlight }]);
  const counted = new WeakMap<FastifyRequest, number>();
  const coalescer = opts.coalesce === false ? undefined : new WebhookCoalescer(ctx.sink, opts.coalesce);
  if (coalescer) m.collect('kaudit_webhook_pending_events', 'Webhook events waiting to be merged into a pipeline batch', () => [{ value: coalescer.pending }]);

  const refuse = (reply: FastifyReply, status: number, reason: string, error: string, headers: Record<string, string> = {}) => {
    rejected.inc({ reason });
    return reply.code(status).headers(headers).send({ error });
  };

  // Only this plugin's routes: JSON bodies are split as they stream; anything else is refused before it is read.
  app.removeAllContentTypeParsers();
  // Bodies are read into recycled buffers, as many bytes kept for reuse as are admitted at once (see body-buffers.ts).
  const bodyBuffers = new BodyBuffers(maxBytes);
  m.collect('kaudit_webhook_body_buffer_bytes', 'Bytes of recycled webhook body buffers waiting for a request', () => [{ value: bodyBuffers.bytes }]);
  app.addContentTypeParser('application/json', (req, payload, done) => {
    const len = Number(req.headers['content-length']);
    readAuditBody(payload, limit, whereOf(req), bodyBuffers, Number.isFinite(len) && len > 0 ? len : undefined).then(
      (b) => done(null, b),
      (e) => done(e as Error),
    );
  });
  app.addContentTypeParser('*', (req, _payload, done) => {
    const type = req.headers['content-type'];
    done(
      new WebhookError(
        415,
        `unsupported Content-Type ${JSON.stringify(type ?? '')}: the audit webhook takes application/json (an EventList, an Event or an array of events)`,
        'content_type',
        { connection: 'close' },
      ),
    );
  });

  app.setErrorHandler((err: FastifyError & { reason?: string; headers?: Record<string, string> }, req, reply) => {
    // The body may be unread past the error: close the connection rather than read (and discard) the rest.
    if (err instanceof WebhookError) return refuse(reply, err.statusCode, err.reason, err.message, { connection: 'close', ...err.headers });
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return refuse(reply, 415, 'content_type', 'missing or unsupported Content-Type: the audit webhook takes application/json', { connection: 'close' });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return refuse(reply, 413, 'too_large', tooLarge(limit, 'Content-Length over the limit').message, { connection: 'close' });
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) log.error(`webhook request ${req.id}: ${err.message}`, 'webhook-error');
    return refuse(reply, status, status === 500 ? 'error' : 'malformed', status === 500 ? 'internal error; retry' : err.message);
  });

  const onRequest = async (req: FastifyRequest<{ Params: { cluster?: string } }>, reply: FastifyReply) => {
    const c = webhookCluster(req.principal, req.params.cluster, ctx.config.cluster);
    if ('error' in c) return refuse(reply, c.status, 'cluster', c.error, { connection: 'close' });
    req.auditCluster = c.cluster;
    req.auditClusterFixed = c.fixed;
    const len = Number(req.headers['content-length']);
    if (Number.isFinite(len) && len > limit) return refuse(reply, 413, 'too_large', tooLarge(limit, `Content-Length ${len}`).message, { connection: 'close' });
    const enc = req.headers['content-encoding'];
    if (enc !== undefined && enc.toLowerCase() !== 'identity')
      return refuse(reply, 415, 'content_type', `unsupported Content-Encoding "${enc}": send the body uncompressed`, { connection: 'close' });
    // Refuse before reading the body when it could not be accepted anyway: the apiserver retries after Retry-After.
    // Early 503s keep the connection: Node discards the unread body (bounded by Content-Length, checked above), which
    // is cheaper than the new TLS handshake the sender's retry would otherwise need.
    if (ctx.sink.overloaded === true || coalescer?.full) {
      return refuse(reply, 503, 'overloaded', 'ingest queue is full; retry later', { 'retry-after': RETRY_AFTER_SECONDS });
    }
    if (inFlight >= maxInFlight)
      return refuse(reply, 503, 'busy', `too many webhook requests in progress (${maxInFlight}); retry later`, { 'retry-after': RETRY_AFTER_SECONDS });
    // A body without Content-Length is reserved at 1 MiB; it is still bounded by webhook.maxBodyBytes while read.
    const reserve = Number.isFinite(len) ? len : 1024 * 1024;
    if (bytesInFlight > 0 && bytesInFlight + reserve > maxBytes) {
      return refuse(reply, 503, 'busy', `webhook is busy (${bytesInFlight} body bytes in progress); retry later`, { 'retry-after': RETRY_AFTER_SECONDS });
    }
    inFlight++;
    bytesInFlight += reserve;
    counted.set(req, reserve);
  };
  const onResponse = async (req: FastifyRequest, reply: FastifyReply) => {
    // A body the handler never took (a refusal after it was read) gives its buffer back here; once answered, nothing
    // reads it any more.
    (req.body as ParsedBody | undefined)?.release?.();
    const reserved = counted.get(req);
    if (reserved !== undefined) {
      counted.delete(req);
      inFlight--;
      bytesInFlight -= reserved;
    }
    seconds.inc(undefined, reply.elapsedTime / 1000);
    count.inc();
  };

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const body = req.body as ParsedBody | undefined;
    if (!body) return refuse(reply, 400, 'malformed', 'empty body: expected an EventList, an Event or an array of events (Content-Type: application/json)');
    try {
      return await store(req, reply, body);
    } finally {
      // Answered, and its records no longer read (committed, or refused): the body's buffer takes the next request's.
      body.release();
    }
  };
  const store = async (req: FastifyRequest, reply: FastifyReply, body: ParsedBody) => {
    const cluster = req.auditCluster!;
    bytesIn.inc(undefined, body.bytes);
    received.inc(undefined, body.records.length);
    try {
      let o: Committed;
      const fixed = req.auditClusterFixed === true;
      if (coalescer) o = await coalescer.submit(cluster, body.records, whereOf(req) + ' ', fixed);
      else {
        const r = await ctx.sink.submit({ source: `webhook:${cluster}`, cluster, clusterFixed: fixed, records: body.records });
        o = { stored: r.stored, duplicates: r.duplicates, requests: 1, bad: r.bad };
      }
      acked.inc();
      return reply.code(200).send({
        cluster,
        events: body.records.length,
        bad: o.bad.length,
        ...(o.bad.length ? { badRecords: o.bad.slice(0, 10) } : {}),
        stored: o.stored,
        duplicates: o.duplicates,
        requests: o.requests,
      });
    } catch (e) {
      if (e instanceof OverloadedError) {
        return refuse(reply, 503, 'overloaded', 'ingest queue is full; retry later', { 'retry-after': RETRY_AFTER_SECONDS });
      }
      log.error(`webhook batch for cluster ${cluster} (request ${req.id}) was not stored: ${(e as Error).message}`, 'webhook-store');
      // The store is away (a fleet store down or restarting): a 503 the apiserver retries, after Retry-After.
      const away = storeUnavailable(e);
      if (away)
        return refuse(reply, 503, 'unavailable', `the store cannot take the batch now; retry later (${away})`, { 'retry-after': STORE_RETRY_AFTER_SECONDS });
      return refuse(reply, 500, 'error', 'the batch could not be stored; retry');
    }
  };

  const schema = {
    summary: "kube-apiserver's audit webhook backend: POST an EventList (or one Event, or an array); 200 once committed",
    tags: ['ingest'],
  };
  // A client that goes away releases its admission too (whichever of the two hooks runs first; the other finds nothing).
  const onRequestAbort = async (req: FastifyRequest) => {
    const reserved = counted.get(req);
    if (reserved === undefined) return;
    counted.delete(req);
    inFlight--;
    bytesInFlight -= reserved;
  };
  const routeOpts = { schema, bodyLimit: limit, onRequest, onResponse, onRequestAbort };
  app.post('/audit/webhook', routeOpts as never, handler);
  app.post(
    '/audit/webhook/:cluster',
    {
      ...routeOpts,
      schema: {
        ...schema,
        params: {
          type: 'object',
          properties: {
            cluster: {
              type: 'string',
              pattern: CLUSTER_NAME.source,
              description: 'cluster the events belong to (a credential bound to a cluster must name that one or none)',
            },
          },
        },
      },
    } as never,
    handler,
  );
}

function whereOf(req: FastifyRequest): string {
  return `webhook ${req.auditCluster ?? ''} request ${req.id}`;
}
