/**
 * The analyst's event queries on the fleet store, with SQLite's semantics (queries.ts): the same filters (a `*` in
 * user, namespace, name, resource and the other keyword filters is a wildcard), newest first, one row per request
 * for the analyst questions (the highest stage logged), and cursors that page to the end without repeats or gaps.
 *
 * Order: time, newest first; events of the same microsecond by auditID, cluster and stage (highest first), so every
 * stage of a request is adjacent and the first one met is the one to keep. SQLite breaks such ties by insertion order
 * instead, which a store with several writers does not have. The cursor is the last row's sort values, given to
 * `search_after`, and the point in time the pages are read from (point-in-time.ts): pages stay one snapshot while
 * events arrive, newer ones (which sort before the cursor) and late older ones alike.
 */
import { CATEGORY, STAGE_CODES, STAGE_NAMES } from '../schema.js';
import { clampLimit, QueryError, type AnalystFilter, type EventFilter, type EventRow, type Page, type PageOptions } from '../queries.js';
import { eventRow, type EventDoc } from './documents.js';
import type { PagingContext } from './point-in-time.js';
import { count, search, type SearchContext } from './search.js';

const KEYWORD_FILTERS: [keyof EventFilter, keyof EventDoc][] = [
  ['user', 'user'],
  ['verb', 'verb'],
  ['resource', 'resource'],
  ['namespace', 'namespace'],
  ['sourceIP', 'sourceIP'],
  ['cluster', 'cluster'],
];

const term = (field: string, value: unknown) => ({ term: { [field]: value } });
const match = (field: string, value: string) => (value.includes('*') ? { wildcard: { [field]: { value } } } : term(field, value));

/** The filter clauses of an event filter. */
export function eventClauses(f: EventFilter): object[] {
  const c: object[] = [];
  for (const [key, field] of KEYWORD_FILTERS) {
    const v = f[key];
    if (v === undefined || v === '') continue;
    c.push(match(field, String(v)));
  }
  if (f.subresource !== undefined) c.push(term('subresource', f.subresource));
  if (f.name) c.push(match('name', f.name));
  if (f.code !== undefined) c.push(term('code', f.code));
  if (f.auditID) c.push(term('auditID', f.auditID));
  if (f.stage) {
    if (!Object.hasOwn(STAGE_CODES, f.stage)) throw new QueryError(`bad stage "${f.stage}": one of ${STAGE_NAMES.join(', ')}`);
    c.push(term('stage', f.stage));
  }
  const range: Record<string, number> = {};
  if (f.since !== undefined) range.gte = f.since;
  if (f.until !== undefined) range.lt = f.until;
  if (Object.keys(range).length) c.push({ range: { ts: range } });
  return c;
}

const SORT = [{ ts: 'desc' }, { auditID: 'asc' }, { cluster: 'asc' }, { stageCode: 'desc' }];
type SortKey = [number, string, string, number];

/** The cursor: the last row's sort values, then the point in time's id when the pages have one. */
function encode(k: SortKey, pit: string | undefined): string {
  return Buffer.from(JSON.stringify(pit ? [...k, pit] : k)).toString('base64url');
}

function decode(c: string): { key: SortKey; pit?: string } {
  try {
    const k = JSON.parse(Buffer.from(c, 'base64url').toString()) as unknown;
    if (
      Array.isArray(k) &&
      (k.length === 4 || (k.length === 5 && typeof k[4] === 'string')) &&
      typeof k[0] === 'number' &&
      typeof k[1] === 'string' &&
      typeof k[2] === 'string' &&
      typeof k[3] === 'number'
    )
      return { key: k.slice(0, 4) as SortKey, ...(k.length === 5 ? { pit: k[4] as string } : {}) };
  } catch {
    /* below */
  }
  throw new QueryError('bad cursor: pass back the `next` value of the previous page unchanged');
}

const requestOf = (k: SortKey) => `${k[0]}\u0000${k[1]}\u0000${k[2]}`;

/**
 * A page of events, newest first. `onePerRequest`: only the highest stage of each request (its stages are adjacent
 * in this order; the lower ones are skipped, on this page and, through the cursor, on the next).
 */
export async function pageEvents(ctx: PagingContext, clauses: object[], page: PageOptions, onePerRequest: boolean): Promise<Page<EventRow>> {
  const limit = clampLimit(page.limit);
  const cursor = page.cursor ? decode(page.cursor) : undefined;
  let after: SortKey | undefined = cursor?.key;
  let pit = cursor ? cursor.pit : await ctx.pits.create(ctx.names.events);
  let lastRequest = onePerRequest && after ? requestOf(after) : undefined;
  const chunk = Math.min(10_000, onePerRequest ? (limit + 1) * 2 : limit + 1);
  const items: EventRow[] = [];
  let lastKey: SortKey | undefined;
  let more = false;
  for (;;) {
    const found = await ctx.pits.search<EventDoc>(ctx.names.events, pit, {
      query: { bool: { filter: clauses } },
      sort: SORT,
      size: chunk,
      ...(after ? { search_after: after } : {}),
      _source: page.includeEvent ? true : { excludes: ['raw'] },
      track_total_hits: false,
    });
    pit = found.pit;
    const hits = found.answer.hits.hits;
    for (const h of hits) {
      const key = h.sort as SortKey;
      after = key;
      if (onePerRequest) {
        const req = requestOf(key);
        if (req === lastRequest) continue;
        lastRequest = req;
      }
      if (items.length === limit) {
        more = true;
        break;
      }
      items.push(eventRow(h._source, !!page.includeEvent));
      lastKey = key;
    }
    if (more || hits.length < chunk) break;
  }
  if (more && lastKey) return { items, next: encode(lastKey, pit) };
  if (pit) ctx.pits.close(pit); // the last page: nothing will read this snapshot again
  return { items };
}

export function queryEvents(ctx: PagingContext, f: EventFilter, page: PageOptions = {}): Promise<Page<EventRow>> {
  return pageEvents(ctx, eventClauses(f), page, false);
}

export function countEvents(ctx: SearchContext, f: EventFilter): Promise<number> {
  return count(ctx, ctx.names.events, { bool: { filter: eventClauses(f) } });
}

export async function getEvent(ctx: SearchContext, id: number): Promise<EventRow | undefined> {
  const r = await search<EventDoc>(ctx, ctx.names.events, { query: { term: { eid: id } }, size: 1 });
  const h = r.hits.hits[0];
  return h ? eventRow(h._source, true) : undefined;
}

function analystClauses(f: AnalystFilter): object[] {
  return eventClauses({ user: f.user, namespace: f.namespace, cluster: f.cluster, since: f.since, until: f.until });
}

export function execSessions(ctx: PagingContext, f: AnalystFilter, page: PageOptions = {}): Promise<Page<EventRow>> {
  return pageEvents(ctx, [...analystClauses(f), term('cat', CATEGORY.exec), { terms: { subresource: ['exec', 'attach'] } }], page, true);
}

export function secretReads(ctx: PagingContext, f: AnalystFilter, page: PageOptions = {}): Promise<Page<EventRow>> {
  return pageEvents(ctx, [...analystClauses(f), term('cat', CATEGORY.secretRead)], page, true);
}

export function rbacChanges(ctx: PagingContext, f: AnalystFilter, page: PageOptions = {}): Promise<Page<EventRow>> {
  return pageEvents(ctx, [...analystClauses(f), term('cat', CATEGORY.rbacChange)], page, true);
}

export function userActivity(ctx: PagingContext, f: AnalystFilter & { user: string }, page: PageOptions = {}): Promise<Page<EventRow>> {
  if (!f.user) throw new QueryError('user is required');
  return pageEvents(ctx, analystClauses(f), page, true);
}
