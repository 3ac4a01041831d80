import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PubSubPushSourceConfig } from '../config/sources.js';
import { log } from '../log.js';
import type { ApiContext } from './context.js';
import { OidcVerifier, TokenError } from './oidc.js';
import { BodyError, rawBodies } from './raw-body.js';
import { OverloadedError } from '../errors.js';
import { STORE_RETRY_AFTER_SECONDS, storeUnavailable } from './common.js';

/**
 * A Pub/Sub push subscription's endpoint, for GKE audit logs routed by a log sink to a topic: each POST is one
 * message, `{"message": {"data": base64 LogEntry, "messageId", "attributes", "publishTime"}, "subscription"}`, and
 * is acknowledged by a 2xx answer (204 here), once its event is committed. A message that is bad input is a dead
 * letter and acknowledged too (Pub/Sub would only send it again); an overloaded pipeline answers 503 and Pub/Sub
 * redelivers with backoff. With `audience` configured, the push's OIDC token is verified first.
 */
export const PUBSUB_ROUTE = '/ingest/pubsub';

const MAX_PUSH_BYTES = 16 * 1024 * 1024;

export async function pubsubRoutes(app: FastifyInstance, opts: { ctx: ApiContext; source: PubSubPushSourceConfig }): Promise<void> {
  const { ctx, source } = opts;
  const verifier = source.audience
    ? new OidcVerifier({ jwks: source.jwks, audience: source.audience, issuers: source.issuers, email: source.serviceAccount })
    : undefined;
  const counted = ctx.metrics.counter('kaudit_pubsub_push_requests_total', 'Pub/Sub push requests answered, by status');
  rawBodies(app, MAX_PUSH_BYTES);
  const send = (reply: FastifyReply, status: number, body?: Record<string, unknown>) => {
    counted.inc({ status: String(status) });
    return body ? reply.code(status).send(body) : reply.code(status).send();
  };
  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err instanceof BodyError ? err.statusCode : err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    if (status >= 500) log.error(`pubsub push ${req.id}: ${err.message}`, 'pubsub-error');
    return send(reply, status, { error: status >= 500 ? 'internal error; retry' : err.message });
  });
  const onRequest = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!verifier) return;
    try {
      await verifier.verify(req.headers.authorization);
    } catch (e) {
      if (!(e instanceof TokenError)) {
        log.error(`pubsub push: token check failed: ${(e as Error).message}`, 'pubsub-oidc');
        return send(reply.header('connection', 'close'), 503, { error: 'token check unavailable; retry' });
      }
      log.warn(`pubsub push refused: ${e.message}`, 'pubsub-oidc');
      return send(reply.header('connection', 'close'), 401, { error: e.message });
    }
  };
  app.post(
    PUBSUB_ROUTE,
    { onRequest, schema: { summary: 'Pub/Sub push delivery of a GKE log sink (one LogEntry a message); 204 once committed', tags: ['ingest'] } } as never,
    async (req: FastifyRequest, reply: FastifyReply) => {
      let body: unknown;
      try {
        body = JSON.parse((req.body as Buffer).toString('utf8'));
      } catch (e) {
        return send(reply, 400, { error: `body is not JSON (${(e as Error).message.split('\n')[0]})` });
      }
      const msg = (body as { message?: { messageId?: unknown } } | null)?.message;
      if (typeof msg !== 'object' || msg === null) return send(reply, 400, { error: 'body is not a Pub/Sub push: no message object' });
      const id = typeof msg.messageId === 'string' ? msg.messageId : req.id;
      const cluster = source.cluster ?? ctx.config.cluster;
      try {
        const o = await ctx.sink.submit({
          source: 'pubsub',
          cluster,
          records: [{ value: body, where: `pubsub request ${req.id}` }],
          format: 'gke',
          clusterFixed: source.cluster !== undefined,
        });
        if (o.bad.length) log.warn(`pubsub message ${id}: dead-lettered: ${o.bad[0]!.reason}`, 'pubsub-bad');
        return send(reply, 204);
      } catch (e) {
        if (e instanceof OverloadedError) return send(reply.header('retry-after', '1'), 503, { error: 'ingest queue is full; retry later' });
        log.error(`pubsub message ${id} was not stored: ${(e as Error).message}`, 'pubsub-store');
        const away = storeUnavailable(e);
        if (away)
          return send(reply.header('retry-after', STORE_RETRY_AFTER_SECONDS), 503, { error: `the message could not be stored now; retry later (${away})` });
        return send(reply, 500, { error: 'the message could not be stored; retry' });
      }
    },
  );
}
