import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { log } from '../log.js';
import type { RawRecord } from '../pipeline/pipeline.js';
import { CLUSTER_NAME } from './auth.js';
import type { ApiContext } from './context.js';
import { BodyError, rawBodies } from './raw-body.js';
import { webhookCluster } from './webhook.js';
import { OverloadedError } from '../errors.js';
import { STORE_RETRY_AFTER_SECONDS, storeUnavailable } from './common.js';

/**
 * Log forwarders' HTTP outputs shipping a self-managed cluster's audit.log: Fluent Bit's `http` output (`format json`
 * or `json_lines`), Vector's `http` sink (`codec json`, framing `newline_delimited` or a JSON array), Logstash's `http`
 * output (`format json_batch` or `json`). A body is a JSON array of records, NDJSON (one record a line) or one record,
 * optionally gzipped; each record is the event itself or holds it under `log`, `message` or `event.original` (the
 * forwarder envelope, by shape). Same credentials and cluster rules as the audit webhook; 200 once committed.
 */
export async function forwarderRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts;
  const limit = ctx.config.webhook.maxBodyBytes;
  const counted = ctx.metrics.counter('kaudit_forwarder_requests_total', 'Forwarder ingest requests answered, by status');
  rawBodies(app, limit);
  const send = (reply: FastifyReply, status: number, body: Record<string, unknown>) => {
    counted.inc({ status: String(status) });
    return reply.code(status).send(body);
  };
  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err instanceof BodyError ? err.statusCode : err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    if (status >= 500) log.error(`forwarder request ${req.id}: ${err.message}`, 'forwarder-error');
    return send(reply, status, { error: status >= 500 ? 'internal error; retry' : err.message });
  });
  const handler = async (req: FastifyRequest<{ Params: { cluster?: string } }>, reply: FastifyReply) => {
    const c = webhookCluster(req.principal, req.params.cluster, ctx.config.cluster);
    if ('error' in c) return send(reply, c.status, { error: c.error });
    const body = req.body as Buffer | undefined;
    if (!body || body.length === 0) return send(reply, 400, { error: 'empty body: expected a JSON array of records, NDJSON or one record' });
    const where = `forwarder ${c.cluster} request ${req.id}`;
    let records: RawRecord[];
    const text = body.toString('utf8');
    const first = text.search(/\S/);
    if (text[first] === '[') {
      let arr: unknown;
      try {
        arr = JSON.parse(text);
      } catch (e) {
        return send(reply, 400, { error: `body starts a JSON array but is not JSON (${(e as Error).message.split('\n')[0]})` });
      }
      records = (arr as unknown[]).map((value, i) => ({ value, where: `${where} item ${i}` }));
    } else {
      // NDJSON, or one record: each line is parsed in the pipeline, a bad line its own dead letter.
      records = [];
      const lines = text.split('\n');
      for (let i = 0; i < lines.length; i++) {
        const l = lines[i]!.replace(/\r$/, '');
        if (l.trim()) records.push({ text: l, where: `${where} line ${i + 1}` });
      }
    }
    if (records.length === 0) return send(reply, 200, { cluster: c.cluster, events: 0, stored: 0, duplicates: 0, bad: 0 });
    try {
      const o = await ctx.sink.submit({ source: `forwarder:${c.cluster}`, cluster: c.cluster, records, clusterFixed: c.fixed });
      return send(reply, 200, {
        cluster: c.cluster,
        records: records.length,
        stored: o.stored,
        duplicates: o.duplicates,
        bad: o.bad.length,
        ...(o.bad.length ? { badRecords: o.bad.slice(0, 10) } : {}),
      });
    } catch (e) {
      if (e instanceof OverloadedError) return send(reply.header('retry-after', '1'), 503, { error: 'ingest queue is full; retry later' });
      log.error(`forwarder batch for cluster ${c.cluster} (request ${req.id}) was not stored: ${(e as Error).message}`, 'forwarder-store');
      const away = storeUnavailable(e);
      if (away) return send(reply.header('retry-after', STORE_RETRY_AFTER_SECONDS), 503, { error: `the batch could not be stored now; retry later (${away})` });
      return send(reply, 500, { error: 'the batch could not be stored; retry' });
    }
  };
  const schema = {
    summary: "Log forwarders' HTTP outputs (Fluent Bit, Vector, Logstash): a JSON array, NDJSON or one record; 200 once committed",
    tags: ['ingest'],
  };
  app.post('/ingest/forwarder', { schema } as never, handler);
  app.post(
    '/ingest/forwarder/:cluster',
    { schema: { ...schema, params: { type: 'object', properties: { cluster: { type: 'string', pattern: CLUSTER_NAME.source } } } } } as never,
    handler,
  );
}
