import type { FastifyInstance } from 'fastify';
import { SEVERITIES, type Severity } from '../detect/alert.js';
import type { AlertFilter } from '../store/queries.js';
import { countSchema, pageProps, sendError, timeArg, timeWindowProps } from './common.js';
import type { ApiContext } from './context.js';

interface AlertQuery {
  rule?: string;
  severity?: Severity;
  cluster?: string;
  namespace?: string;
  user?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

export const alertSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    id: { type: 'integer' },
    rule: { type: 'string' },
    title: { type: 'string' },
    severity: { type: 'string' },
    tags: { type: 'array', items: { type: 'string' } },
    summary: { type: 'string' },
    cluster: { type: 'string' },
    auditID: { type: 'string' },
    stage: { type: 'string' },
    time: { type: 'string' },
    user: { type: 'string' },
    sourceIP: { type: 'string' },
    verb: { type: 'string' },
    objectRef: { type: 'object', additionalProperties: true },
    count: { type: 'integer' },
    firstTime: { type: 'string' },
    lastTime: { type: 'string' },
    eventId: { type: 'integer', nullable: true },
    lastEventId: { type: 'integer', nullable: true },
    details: { type: 'object', additionalProperties: true },
  },
} as const;

/** The filters of /alerts, shared with /alerts/count. */
const alertFilterProps = {
  rule: { type: 'string', description: 'rule id, or several separated by commas' },
  severity: { type: 'string', enum: [...SEVERITIES], description: 'minimum severity' },
  cluster: { type: 'string' },
  namespace: { type: 'string' },
  user: { type: 'string' },
  ...timeWindowProps,
} as const;

function alertFilter(q: AlertQuery): AlertFilter {
  return {
    rule: q.rule ? q.rule.split(',') : undefined,
    minSeverity: q.severity,
    cluster: q.cluster,
    namespace: q.namespace,
    user: q.user,
    since: timeArg(q.since),
    until: timeArg(q.until),
  };
}

export async function alertRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { store } = opts.ctx;
  app.get<{ Querystring: AlertQuery }>(
    '/alerts/count',
    {
      schema: {
        summary: 'How many alert rows match the filters of /alerts (a row counting repeats counts once)',
        tags: ['alerts'],
        querystring: { type: 'object', additionalProperties: false, properties: alertFilterProps },
        response: { 200: countSchema },
      },
    },
    async (req) => ({ count: await store.countAlerts(alertFilter(req.query)) }),
  );
  app.get<{ Querystring: AlertQuery }>(
    '/alerts',
    {
      schema: {
        summary: 'Search alerts, newest first (repeats of one rule, identity and object within the group window are one row with a count)',
        tags: ['alerts'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { ...alertFilterProps, ...pageProps },
        },
        response: { 200: { type: 'object', properties: { items: { type: 'array', items: alertSchema }, next: { type: 'string' } } } },
      },
    },
    async (req) => store.queryAlerts(alertFilter(req.query), { limit: req.query.limit, cursor: req.query.cursor }),
  );
  app.get<{ Params: { id: number } }>(
    '/alerts/:id',
    { schema: { summary: 'One alert', tags: ['alerts'], params: { type: 'object', properties: { id: { type: 'integer' } } }, response: { 200: alertSchema } } },
    async (req, reply) => (await store.getAlert(req.params.id)) ?? sendError(reply, 404, `no alert ${req.params.id}`),
  );
}
