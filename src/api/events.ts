import type { FastifyInstance } from 'fastify';
import type { EventFilter } from '../store/queries.js';
import { countSchema, eventPageSchema, eventRowSchema, pageProps, sendError, timeArg, timeWindowProps } from './common.js';
import type { ApiContext } from './context.js';

/** The query string: the store's filter, with times as the user typed them, plus paging. */
type EventQuery = Omit<EventFilter, 'since' | 'until'> & { since?: string; until?: string; limit?: number; cursor?: string; include?: 'event' };

/** The filters of /events, shared with /events/count. */
const eventFilterProps = {
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
} as const;

export async function eventRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { store } = opts.ctx;
  app.get<{ Querystring: Omit<EventQuery, 'limit' | 'cursor' | 'include'> }>(
    '/events/count',
    {
      schema: {
        summary: 'How many stored events match the filters of /events (every stage counts)',
        tags: ['events'],
        querystring: { type: 'object', additionalProperties: false, properties: eventFilterProps },
        response: { 200: countSchema },
      },
    },
    async (req) => {
      const { since, until, ...filter } = req.query;
      return { count: await store.countEvents({ ...filter, since: timeArg(since), until: timeArg(until) }) };
    },
  );
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
            ...eventFilterProps,
            ...pageProps,
            include: { type: 'string', enum: ['event'], description: 'add the full (redacted) audit event to each row' },
          },
        },
        response: { 200: eventPageSchema },
      },
    },
    async (req) => {
      const { since, until, limit, cursor, include, ...filter } = req.query;
      return store.queryEvents({ ...filter, since: timeArg(since), until: timeArg(until) }, { limit, cursor, includeEvent: include === 'event' });
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
      const row = await store.getEvent(req.params.id);
      return row ?? sendError(reply, 404, `no event ${req.params.id} (expired by retention, or never stored)`);
    },
  );
}
