import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FirehoseSourceConfig } from '../config/sources.js';
import { log } from '../log.js';
import type { RawRecord } from '../pipeline/pipeline.js';
import type { ApiContext } from './context.js';
import { BodyError, rawBodies } from './raw-body.js';
import { OverloadedError } from '../errors.js';
import { STORE_RETRY_AFTER_SECONDS, storeUnavailable } from './common.js';

/**
 * Amazon Kinesis Data Firehose's HTTP endpoint destination, for EKS audit logs pushed by a CloudWatch Logs subscription
 * filter to a delivery stream. Firehose POSTs `{"requestId", "timestamp", "records": [{"data": base64}]}` with the
 * configured access key in `X-Amz-Firehose-Access-Key`, and retries anything but 200 until its retry duration runs
 * out. The answer is Firehose's response format: `{"requestId", "timestamp"}`, plus `errorMessage` on failure. 200
 * only once the records' events are committed; records that are bad input are dead letters (200 still: Firehose
 * could only send them again).
 */
export const FIREHOSE_ROUTE = '/ingest/firehose';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export async function firehoseRoutes(app: FastifyInstance, opts: { ctx: ApiContext; source: FirehoseSourceConfig }): Promise<void> {
  const { ctx, source } = opts;
  const key = digest(source.accessKey);
  const m = ctx.metrics;
  const requests = m.counter('kaudit_firehose_requests_total', 'Firehose delivery requests answered, by status');
  rawBodies(app, source.maxBodyBytes);

  const answer = (reply: FastifyReply, req: FastifyRequest, status: number, errorMessage?: string) => {
    requests.inc({ status: String(status) });
    const requestId = String(req.headers['x-amz-firehose-request-id'] ?? (req.body as { requestId?: unknown } | undefined)?.requestId ?? '');
    return reply
      .code(status)
      .header('content-type', 'application/json')
      .send(JSON.stringify({ requestId, timestamp: Date.now(), ...(errorMessage ? { errorMessage } : {}) }));
  };

  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err instanceof BodyError ? err.statusCode : err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    if (status >= 500) log.error(`firehose request ${req.id}: ${err.message}`, 'firehose-error');
    return answer(reply, req, status, status >= 500 ? 'internal error; retry' : err.message);
  });

  // The access key is checked before the body is read; it is never logged.
  const onRequest = async (req: FastifyRequest, reply: FastifyReply) => {
    const sent = req.headers['x-amz-firehose-access-key'];
    if (typeof sent !== 'string' || !timingSafeEqual(digest(sent), key)) {
      reply.header('connection', 'close');
      return answer(reply, req, 401, 'missing or wrong X-Amz-Firehose-Access-Key');
    }
  };

  app.post(
    FIREHOSE_ROUTE,
    {
      onRequest,
      schema: { summary: 'Kinesis Data Firehose HTTP endpoint delivery (EKS audit logs via a CloudWatch Logs subscription)', tags: ['ingest'] },
    } as never,
    async (req: FastifyRequest, reply: FastifyReply) => {
      let body: unknown;
      try {
        body = JSON.parse((req.body as Buffer).toString('utf8'));
      } catch (e) {
        return answer(reply, req, 400, `body is not JSON (${(e as Error).message.split('\n')[0]})`);
      }
      const b = body as { requestId?: unknown; timestamp?: unknown; records?: unknown };
      if (typeof b !== 'object' || b === null || !Array.isArray(b.records))
        return answer(reply, req, 400, 'body is not a Firehose delivery request: no records array');
      const requestId = typeof b.requestId === 'string' ? b.requestId : String(req.headers['x-amz-firehose-request-id'] ?? req.id);
      // One raw record per Firehose record: a bad one is its own dead letter, holding only its own data.
      const records: RawRecord[] = b.records.map((r, i) => ({
        value: { requestId, timestamp: b.timestamp, records: [r] },
        where: `firehose ${requestId} record ${i}`,
      }));
      const cluster = source.cluster ?? ctx.config.cluster;
      try {
        if (records.length > 0) await ctx.sink.submit({ source: 'firehose', cluster, records, format: 'eks', clusterFixed: source.cluster !== undefined });
      } catch (e) {
        if (e instanceof OverloadedError) return answer(reply.header('retry-after', '1'), req, 503, 'ingest queue is full; retry later');
        log.error(`firehose request ${requestId} was not stored: ${(e as Error).message}`, 'firehose-store');
        const away = storeUnavailable(e);
        if (away) return answer(reply.header('retry-after', STORE_RETRY_AFTER_SECONDS), req, 503, `the records could not be stored now; retry later (${away})`);
        return answer(reply, req, 500, 'the records could not be stored; retry');
      }
      return answer(reply, req, 200);
    },
  );
}
