import type { FastifyReply } from 'fastify';
import { parseTimeArg } from '../events/time.js';
import { StoreUnavailableError } from '../errors.js';
import { QueryError } from '../store/queries.js';

/** Query-string schemas shared by the read routes. */
export const timeWindowProps = {
  since: { type: 'string', description: 'RFC 3339 time, date, epoch seconds, or a duration ago (15m, 2h, 7d)' },
  until: { type: 'string', description: 'as since; exclusive' },
} as const;

export const pageProps = {
  limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 },
  cursor: { type: 'string', description: 'the `next` value of the previous page' },
} as const;

export function timeArg(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  try {
    return parseTimeArg(v);
  } catch (e) {
    throw new QueryError((e as Error).message);
  }
}

/**
 * Seconds a sender waits before it sends again while the store is unavailable (a fleet store that is down, restarting,
 * or whose new index is not yet searchable). Longer than the queue's 1 s: the store's own retries already took seconds.
 */
export const STORE_RETRY_AFTER_SECONDS = '5';

/** The store cannot take or answer the request for now: the one-line reason, else undefined (another failure). */
export function storeUnavailable(e: unknown): string | undefined {
  return e instanceof StoreUnavailableError ? e.message : undefined;
}

export function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).send({ error: message });
}

export const eventRowSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    time: { type: 'string' },
    stage: { type: 'string' },
    auditID: { type: 'string' },
    cluster: { type: 'string' },
    verb: { type: 'string' },
    user: { type: 'string' },
    groups: { type: 'array', items: { type: 'string' } },
    impersonatedUser: { type: 'string' },
    sourceIP: { type: 'string' },
    userAgent: { type: 'string' },
    apiGroup: { type: 'string' },
    apiVersion: { type: 'string' },
    resource: { type: 'string' },
    subresource: { type: 'string' },
    namespace: { type: 'string' },
    name: { type: 'string' },
    code: { type: 'integer' },
    decision: { type: 'string' },
    level: { type: 'string' },
    command: { type: 'string' },
    container: { type: 'string' },
    event: { type: 'object', additionalProperties: true, nullable: true },
    eventOmitted: { type: 'string' },
  },
} as const;

/** The answer of the count routes. */
export const countSchema = {
  type: 'object',
  properties: { count: { type: 'integer', description: 'rows matching the filters' } },
  required: ['count'],
} as const;

export const eventPageSchema = {
  type: 'object',
  properties: { items: { type: 'array', items: eventRowSchema }, next: { type: 'string' } },
} as const;
