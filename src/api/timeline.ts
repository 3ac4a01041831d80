import type { FastifyInstance } from 'fastify';
import { ROLLUP_DIMS, type RollupDim } from '../store/schema.js';
import type { Timeline } from '../store/timeline.js';
import { timeArg, timeWindowProps } from './common.js';
import type { ApiContext } from './context.js';

/** Counts over time for charts: requests stacked by a dimension, alerts stacked by severity. */

const timelineSchema = {
  type: 'object',
  properties: {
    buckets: { type: 'array', items: { type: 'string' }, description: 'bucket starts, RFC 3339' },
    bucketSeconds: { type: 'integer' },
    series: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, counts: { type: 'array', items: { type: 'integer' } } } } },
  },
} as const;

const out = (t: Timeline) => ({
  buckets: t.buckets.map((b) => new Date(b / 1000).toISOString()),
  bucketSeconds: Math.round(t.bucketUs / 1e6),
  series: t.series,
});

export async function timelineRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { store } = opts.ctx;
  app.get<{ Querystring: { by?: RollupDim; since?: string; until?: string } }>(
    '/analyst/timeline/events',
    {
      schema: {
        summary:
          'Requests over time, stacked by verb, user, resource, namespace or source IP (the 8 largest, then "other"); the window defaults to the stored span',
        tags: ['analyst'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { by: { type: 'string', enum: Object.keys(ROLLUP_DIMS), default: 'verb' }, ...timeWindowProps },
        },
        response: { 200: timelineSchema },
      },
    },
    async (req) => out(await store.eventTimeline(req.query.by ?? 'verb', { since: timeArg(req.query.since), until: timeArg(req.query.until) })),
  );
  app.get<{ Querystring: { since?: string; until?: string } }>(
    '/analyst/timeline/alerts',
    {
      schema: {
        summary: 'Alerts over time (with their repeats), stacked by severity; the window defaults to the stored span',
        tags: ['analyst'],
        querystring: { type: 'object', additionalProperties: false, properties: { ...timeWindowProps } },
        response: { 200: timelineSchema },
      },
    },
    async (req) => out(await store.alertTimeline({ since: timeArg(req.query.since), until: timeArg(req.query.until) })),
  );
}
