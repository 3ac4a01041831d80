/**
 * Documents read by id, many in one request (`_mget`), in real time: like a get, an mget sees a write at once, where a
 * search only sees it after the next refresh. The write path reads what it is about to change this way (alert groups,
 * a stopped writer's batches), one request for a whole commit.
 */
import type { Hit, SearchContext } from './search.js';

export interface DocRef {
  index: string;
  id: string;
  /** Only these fields of the source (default: all of it). */
  source?: string[];
}

/** The documents, in the order asked; undefined for one that does not exist (or whose index does not). */
export async function getDocs<T>(ctx: SearchContext, refs: readonly DocRef[]): Promise<(Hit<T> | undefined)[]> {
  if (refs.length === 0) return [];
  const r = await ctx.conn.request<{ docs: (Hit<T> & { found?: boolean; error?: unknown })[] }>('POST', '/_mget', {
    docs: refs.map((d) => ({ _index: d.index, _id: d.id, ...(d.source ? { _source: d.source } : {}) })),
  });
  return r.body.docs.map((d) => (d.found ? d : undefined));
}
