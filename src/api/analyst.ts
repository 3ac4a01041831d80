import type { FastifyInstance } from 'fastify';
import type { AnalystFilter } from '../store/queries.js';
import { ROLLUP_DIMS, type RollupDim } from '../store/schema.js';
import { eventPageSchema, pageProps, timeArg, timeWindowProps } from './common.js';
import type { ApiContext } from './context.js';

interface AnalystQuery {
  user?: string;
  namespace?: string;
  cluster?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

const analystQuerystring = {
  type: 'object',
  additionalProperties: false,
  properties: { user: { type: 'string' }, namespace: { type: 'string' }, cluster: { type: 'string' }, ...timeWindowProps, ...pageProps },
} as const;

function filterOf(q: AnalystQuery): AnalystFilter {
  return { user: q.user, namespace: q.namespace, cluster: q.cluster, since: timeArg(q.since), until: timeArg(q.until) };
}

/** The questions analysts ask first, as routes of their own. */
export async function analystRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { store } = opts.ctx;
  const page = (q: AnalystQuery) => ({ limit: q.limit, cursor: q.cursor });
  const route = (path: string, summary: string, fn: (q: AnalystQuery) => unknown) =>
    app.get<{ Querystring: AnalystQuery }>(
      path,
      { schema: { summary, tags: ['analyst'], querystring: analystQuerystring, response: { 200: eventPageSchema } } },
      async (req) => fn(req.query),
    );

  route('/analyst/exec', "Who exec'd or attached into which pod: user, pod, namespace, container, command, time, source IP, decision", (q) =>
    store.execSessions(filterOf(q), page(q)),
  );
  route('/analyst/secret-reads', 'Who read or listed Secrets', (q) => store.secretReads(filterOf(q), page(q)));
  route('/analyst/rbac-changes', 'Who changed RBAC (roles, cluster roles, bindings)', (q) => store.rbacChanges(filterOf(q), page(q)));
  app.get<{ Params: { user: string }; Querystring: AnalystQuery }>(
    '/analyst/users/:user/activity',
    {
      schema: {
        summary: 'Everything one identity did in a window',
        tags: ['analyst'],
        params: { type: 'object', properties: { user: { type: 'string' } } },
        querystring: analystQuerystring,
        response: { 200: eventPageSchema },
      },
    },
    async (req) => store.userActivity({ ...filterOf(req.query), user: req.params.user }, page(req.query)),
  );
  app.get<{ Params: { dim: RollupDim }; Querystring: { since?: string; until?: string; limit?: number } }>(
    '/analyst/top/:dim',
    {
      schema: {
        summary: 'Busiest users, resources, verbs, namespaces or source IPs over a window (requests)',
        tags: ['analyst'],
        params: { type: 'object', properties: { dim: { type: 'string', enum: Object.keys(ROLLUP_DIMS) } } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { ...timeWindowProps, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 10 } },
        },
        response: {
          200: {
            type: 'object',
            properties: { items: { type: 'array', items: { type: 'object', properties: { value: { type: 'string' }, count: { type: 'integer' } } } } },
          },
        },
      },
    },
    async (req) => ({ items: await store.top(req.params.dim, { since: timeArg(req.query.since), until: timeArg(req.query.until), limit: req.query.limit }) }),
  );
}
