/**
 * Alerts in the fleet store, read: newest first with filters and a cursor, by id, and followed in commit order by the
 * feed and the Kafka outbox (sequence.ts). One document per alert group; alert-groups.ts writes them.
 */
import { SEVERITIES, type Alert } from '../../detect/alert.js';
import { formatMicros } from '../../events/time.js';
import { clampLimit, decodeCursor, QueryError, type AlertFilter, type AlertRow, type Page, type PageOptions } from '../queries.js';
import type { CommittedAlert } from '../store.js';
import type { PagingContext } from './point-in-time.js';
import { count, search, type SearchContext } from './search.js';
import { settledBelow } from './sequence.js';

export interface AlertDoc {
  /** The commit-ordered id (sequence.ts), taken just before the write that makes the row visible. */
  seq?: number;
  rule: string;
  severity: number;
  cluster: string;
  groupKey: string;
  firstTime: number;
  lastTime: number;
  count: number;
  auditID: string;
  stage: string;
  eventId: number | null;
  lastEventId: number | null;
  user: string;
  namespace: string;
  /** The posture rules' details, which the posture table groups by (admission-queries.ts). */
  workload?: string;
  cis?: string;
  body: string;
}

function alertRow(d: AlertDoc): AlertRow {
  return {
    ...(JSON.parse(d.body) as Alert),
    id: d.seq!,
    count: d.count,
    firstTime: formatMicros(d.firstTime),
    lastTime: formatMicros(d.lastTime),
    eventId: d.eventId,
    lastEventId: d.lastEventId,
  };
}

function alertClauses(f: AlertFilter): object[] {
  // A row without an id (written by an earlier kaudit before its batch's commit) is not shown.
  const c: object[] = [{ exists: { field: 'seq' } }];
  if (f.rule && f.rule.length) c.push({ terms: { rule: f.rule } });
  if (f.minSeverity) {
    const s = SEVERITIES.indexOf(f.minSeverity);
    if (s < 0) throw new QueryError(`bad severity "${f.minSeverity}": one of ${SEVERITIES.join(', ')}`);
    c.push({ range: { severity: { gte: s } } });
  }
  if (f.cluster) c.push({ term: { cluster: f.cluster } });
  if (f.namespace) c.push({ term: { namespace: f.namespace } });
  if (f.user) c.push({ term: { user: f.user } });
  const range: Record<string, number> = {};
  if (f.since !== undefined) range.gte = f.since;
  if (f.until !== undefined) range.lt = f.until;
  if (Object.keys(range).length) c.push({ range: { firstTime: range } });
  if (f.afterId !== undefined) c.push({ range: { seq: { gt: f.afterId } } });
  return c;
}

/**
 * Alerts newest first (commit order), a page at a time. The cursor is the last row's id and the point in time the
 * pages are read from (point-in-time.ts), so repeats counted while paging do not change the counts halfway through.
 */
export async function queryAlerts(ctx: PagingContext, f: AlertFilter, page: PageOptions = {}): Promise<Page<AlertRow>> {
  const limit = clampLimit(page.limit);
  const c = alertClauses(f);
  const cursor = page.cursor ? decodeAlertCursor(page.cursor) : undefined;
  if (cursor) c.push({ range: { seq: { lt: cursor.seq } } });
  const found = await ctx.pits.search<AlertDoc>(ctx.names.alerts, cursor ? cursor.pit : await ctx.pits.create(ctx.names.alerts), {
    query: { bool: { filter: c } },
    sort: [{ seq: 'desc' }],
    size: limit + 1,
  });
  const rows = found.answer.hits.hits.map((h) => h._source);
  const more = rows.length > limit;
  if (more) rows.length = limit;
  const last = rows[rows.length - 1];
  if (more && last)
    return { items: rows.map(alertRow), next: Buffer.from(JSON.stringify(found.pit ? [last.seq, found.pit] : [last.seq])).toString('base64url') };
  if (found.pit) ctx.pits.close(found.pit);
  return { items: rows.map(alertRow) };
}

/** `[id, pointInTime?]`; a cursor of the form SQLite's alerts use (`time:id`) is read too. */
function decodeAlertCursor(c: string): { seq: number; pit?: string } {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(c, 'base64url').toString());
  } catch {
    return { seq: decodeCursor(c)[1] };
  }
  if (Array.isArray(v) && typeof v[0] === 'number' && (v.length === 1 || (v.length === 2 && typeof v[1] === 'string')))
    return { seq: v[0], ...(v.length === 2 ? { pit: v[1] as string } : {}) };
  throw new QueryError('bad cursor: pass back the `next` value of the previous page unchanged');
}

export function countAlerts(ctx: SearchContext, f: AlertFilter): Promise<number> {
  return count(ctx, ctx.names.alerts, { bool: { filter: alertClauses(f) } });
}

export async function getAlert(ctx: SearchContext, id: number): Promise<AlertRow | undefined> {
  const r = await search<AlertDoc>(ctx, ctx.names.alerts, { query: { term: { seq: id } }, size: 1 });
  const h = r.hits.hits[0];
  return h ? alertRow(h._source) : undefined;
}

/** Settled alerts after an id, oldest first: ids below settledBelow() are all visible, so none is skipped. */
async function settledAfter(ctx: SearchContext, clauses: object[], afterId: number, limit: number): Promise<AlertDoc[]> {
  const r = await search<AlertDoc>(ctx, ctx.names.alerts, {
    query: { bool: { filter: [...clauses, { range: { seq: { gt: afterId, lt: settledBelow() } } }] } },
    sort: [{ seq: 'asc' }],
    size: Math.max(1, Math.min(limit, 10_000)),
  });
  return r.hits.hits.map((h) => h._source);
}

export async function alertsAfter(ctx: SearchContext, f: AlertFilter & { afterId: number }, limit: number): Promise<AlertRow[]> {
  const { afterId, ...rest } = f;
  return (await settledAfter(ctx, alertClauses(rest), afterId, limit)).map(alertRow);
}

export async function committedAlertsAfter(ctx: SearchContext, afterId: number, limit: number): Promise<CommittedAlert[]> {
  return (await settledAfter(ctx, [], afterId, limit)).map((d) => ({ id: d.seq!, body: d.body }));
}

/** The newest settled alert's id (0: none). */
export async function latestAlertId(ctx: SearchContext): Promise<number> {
  const r = await search<AlertDoc>(ctx, ctx.names.alerts, {
    query: { range: { seq: { lt: settledBelow() } } },
    sort: [{ seq: 'desc' }],
    size: 1,
    _source: ['seq'],
  });
  return r.hits.hits[0]?._source.seq ?? 0;
}
