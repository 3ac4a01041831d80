/**
 * What the fleet store's query modules read through: the connection, the index names and a search that returns hits
 * (kept apart from the store class, so those modules do not import the store that imports them).
 */
import type { OpenSearchConnection } from './connection.js';
import type { IndexNames } from './indices.js';

export interface Hit<T> {
  _id: string;
  _index: string;
  _source: T;
  _seq_no?: number;
  _primary_term?: number;
  sort?: unknown[];
}

export interface SearchAnswer<T> {
  hits: { hits: Hit<T>[] };
  aggregations?: Record<string, unknown>;
}

export interface SearchContext {
  readonly conn: OpenSearchConnection;
  readonly names: IndexNames;
}

export async function search<T>(ctx: SearchContext, index: string, body: object): Promise<SearchAnswer<T>> {
  // A pattern that matches no index yet (no events stored) is an empty answer, not an error.
  const r = await ctx.conn.request<SearchAnswer<T>>('POST', `/${index}/_search`, body, { query: { ignore_unavailable: 'true', allow_no_indices: 'true' } });
  return r.body;
}

export async function count(ctx: SearchContext, index: string, query?: object): Promise<number> {
  const r = await ctx.conn.request<{ count: number }>('POST', `/${index}/_count`, query ? { query } : undefined, {
    query: { ignore_unavailable: 'true', allow_no_indices: 'true' },
  });
  return r.body.count;
}

/** A document read by id in real time (a get sees a write at once; a search only after the next refresh). */
export async function getDoc<T>(ctx: SearchContext, index: string, id: string): Promise<Hit<T> | undefined> {
  const r = await ctx.conn.request<Hit<T> & { found?: boolean }>('GET', `/${index}/_doc/${encodeURIComponent(id)}`, undefined, { ignore: [404] });
  return r.status === 404 || !r.body.found ? undefined : r.body;
}
