import type { FastifyInstance } from 'fastify';
import { VIOLATION_SIGNALS, type ViolationSignal } from '../store/admission-queries.js';
import { pageProps, timeArg, timeWindowProps } from './common.js';
import type { ApiContext } from './context.js';

interface ViolationQuery {
  namespace?: string;
  cluster?: string;
  user?: string;
  level?: 'baseline' | 'restricted';
  signal?: ViolationSignal[];
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

const str = { type: 'string' } as const;
const strings = { type: 'array', items: str } as const;

const violationRow = {
  type: 'object',
  properties: {
    cluster: str,
    namespace: str,
    ownerKind: str,
    ownerName: str,
    check: str,
    signals: strings,
    violationLevel: str,
    policy: str,
    binding: str,
    reason: str,
    detail: str,
    requests: { type: 'integer' },
    denied: { type: 'integer' },
    users: strings,
    userCount: { type: 'integer' },
    objects: strings,
    firstSeen: str,
    lastSeen: str,
    lastAuditID: str,
  },
} as const;

const postureRow = {
  type: 'object',
  properties: {
    cluster: str,
    namespace: str,
    check: str,
    cis: str,
    workloads: { type: 'integer' },
    findings: { type: 'integer' },
    examples: strings,
    lastSeen: str,
    lastAlertID: { type: 'integer' },
  },
} as const;

const pageOf = (item: object) => ({ type: 'object', properties: { items: { type: 'array', items: item }, next: str } }) as const;

/** The Pod Security migration report and the namespaces' workload posture (store/admission-queries.ts). */
export async function admissionRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { store } = opts.ctx;
  app.get<{ Querystring: ViolationQuery }>(
    '/analyst/psa-violations',
    {
      schema: {
        summary:
          'What enforcing Pod Security would break: per namespace, owning workload and check, the requests that violated it over a window, who made them, first and last seen',
        tags: ['analyst'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            namespace: { type: 'string', description: 'a namespace; * wildcards' },
            cluster: str,
            user: { type: 'string', description: 'who made the request; * wildcards' },
            level: { type: 'string', enum: ['baseline', 'restricted'], description: 'baseline: only what breaks baseline too' },
            signal: {
              type: 'array',
              items: { type: 'string', enum: [...VIOLATION_SIGNALS] },
              description:
                'audit (Pod Security audit mode), denied (enforce refusals), policy (ValidatingAdmissionPolicy audit failures), exempt, error; default audit and denied',
            },
            ...timeWindowProps,
            ...pageProps,
          },
        },
        response: { 200: pageOf(violationRow) },
      },
    },
    async (req) => {
      const q = req.query;
      return store.psaViolations(
        { namespace: q.namespace, cluster: q.cluster, user: q.user, level: q.level, signals: q.signal, since: timeArg(q.since), until: timeArg(q.until) },
        { limit: q.limit, cursor: q.cursor },
      );
    },
  );
  app.get<{ Querystring: { namespace?: string; cluster?: string; since?: string; until?: string; limit?: number; cursor?: string } }>(
    '/analyst/posture',
    {
      schema: {
        summary: 'Per namespace and CIS 5.x posture check (the posture-* rules), the workloads whose pod specs failed it over a window',
        tags: ['analyst'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { namespace: { type: 'string', description: 'a namespace; * wildcards' }, cluster: str, ...timeWindowProps, ...pageProps },
        },
        response: { 200: pageOf(postureRow) },
      },
    },
    async (req) => {
      const q = req.query;
      return store.posture(
        { namespace: q.namespace, cluster: q.cluster, since: timeArg(q.since), until: timeArg(q.until) },
        { limit: q.limit, cursor: q.cursor },
      );
    },
  );
}
