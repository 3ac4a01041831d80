import type { FastifyInstance } from 'fastify';
import { getEvent, queryEvents } from '../store/queries.js';
import { eventPageSchema, eventRowSchema, pageProps, sendError, timeArg, timeWindowProps } from './common.js';
import type { ApiContext } from './context.js';

interface EventQuery {
  user?: string;
  verb?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  code?: number;
  sourceIP?: string;
  cluster?: string;
  auditID?: string;
  stage?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
  include?: 'event';
}

export async function eventRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { store } = opts.ctx;
  app.get<{ Querystring: EventQuery }>(
    '/events',
    {
      schema: {
        summary: 'Search audit events, newest first',
        tags: ['events'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            user: { type: 'string', description: 'exact, or with * wildcards' },
            verb: { type: 'string' },
            resource: { type: 'string' },
            subresource: { type: 'string' },
            namespace: { type: 'string' },
            name: { type: 'string' },
            code: { type: 'integer' },
            sourceIP: { type: 'string' },
            cluster: { type: 'string' },
            auditID: { type: 'string' },
            stage: { type: 'string', enum: ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] },
            ...timeWindowProps,
            ...pageProps,
            include: { type: 'string', enum: ['event'], description: 'add the full (redacted) audit event to each row' },
          },
        },
        response: { 200: eventPageSchema },
      },
    },
    async (req) => {
      const q = req.query;
      return queryEvents(
        store,
        { user: q.user, verb: q.verb, resource: q.resource, subresource: q.subresource, namespace: q.namespace, name: q.name, code: q.code, sourceIP: q.sourceIP, cluster: q.cluster, auditID: q.auditID, stage: q.stage, since: timeArg(q.since), until: timeArg(q.until) },
        { limit: q.limit, cursor: q.cursor, includeEvent: q.include === 'event' },
      );
    },
  );
  app.get<{ Params: { id: number } }>(
    '/events/:id',
    {
      schema: {
        summary: 'One stored event with its full (redacted) audit event',
        tags: ['events'],
        params: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] },
        response: { 200: eventRowSchema },
      },
    },
    async (req, reply) => {
      const row = getEvent(store, req.params.id);
      return row ?? sendError(reply, 404, `no event ${req.params.id} (expired by retention, or never stored)`);
    },
  );
}
