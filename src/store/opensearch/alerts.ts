/**
 * Alerts in the fleet store: written with SQLite's grouping (an alert of a rule whose group key has a row whose last
 * time is within the group window of it is counted on that row, else it opens a row), read newest first, and followed
 * in commit order by the feed and the Kafka outbox (sequence.ts).
 *
 * A row's document id is its alert's (rule, cluster, auditID), as SQLite's alerts_once index: an alert raised again
 * for the same event (a batch detected again after a crash) opens no second row. The row a group counts on is found
 * through a small document per group key, read in real time by id (a search would miss a row written less than a
 * refresh ago), and rows and heads are updated with optimistic concurrency, so two detectors counting on one group do
 * not lose a repeat.
 */
import { createHash } from 'node:crypto';
import { SEVERITIES, type Alert } from '../../detect/alert.js';
import { formatMicros } from '../../events/time.js';
import { log } from '../../log.js';
import { clampLimit, decodeCursor, encodeCursor, QueryError, type AlertFilter, type AlertRow, type Page, type PageOptions } from '../queries.js';
import type { CommittedAlert } from '../store.js';
import { bulk } from './bulk.js';
import { count, getDoc, search, type SearchContext } from './search.js';
import { SETTLE_MS, settledBelow, type Sequence } from './sequence.js';

export interface AlertDoc {
  seq: number;
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
  body: string;
}

interface GroupHead {
  alert: string;
  lastTime: number;
}

const hashId = (...parts: string[]) => createHash('sha256').update(parts.join('\u0000')).digest().subarray(0, 16).toString('base64url');

export interface AlertWriter extends SearchContext {
  readonly seq: Sequence;
  readonly groupWindowUs: number;
}

/**
 * Writes a batch's alerts (grouped), then refreshes the alerts index once, so they are visible to readers before the
 * batch is acknowledged. Returns the alerts that opened a row, with their ids.
 */
export async function writeAlerts(ctx: AlertWriter, list: { alert: Alert; eventId: number | null }[]): Promise<Alert[]> {
  if (list.length === 0) return [];
  const stampedAt = Date.now();
  const opened: { alert: Alert; id: string; doc: AlertDoc }[] = [];
  for (const { alert, eventId } of list) {
    const o = await writeAlert(ctx, alert, eventId);
    if (o) opened.push(o);
  }
  await ctx.conn.request('POST', `/${ctx.names.alerts}/_refresh`);
  // Slower than readers allow for: stamped again (and refreshed), so a reader already past the first stamps meets them.
  if (opened.length && Date.now() - stampedAt > SETTLE_MS / 2) {
    for (const o of opened) o.doc.seq = ctx.seq.next();
    await bulk(
      ctx.conn,
      opened.map((o) => ({ action: 'index' as const, index: ctx.names.alerts, id: o.id, doc: o.doc })),
      { refresh: true },
    );
  }
  return opened.map((o) => ({ ...o.alert, id: o.doc.seq }));
}

/** Writes one alert (grouped): the row it opened, or undefined when it was counted on one (or is a repeat). */
async function writeAlert(ctx: AlertWriter, a: Alert, eventId: number | null): Promise<{ alert: Alert; id: string; doc: AlertDoc } | undefined> {
  const { alerts, groups } = ctx.names;
  const headId = hashId(a.groupKey);
  for (let attempt = 0; attempt < 10; attempt++) {
    const head = await getDoc<GroupHead>(ctx, groups, headId);
    if (head && head._source.lastTime >= a.timeMicros - ctx.groupWindowUs) {
      const row = await getDoc<AlertDoc>(ctx, alerts, head._source.alert);
      if (row) {
        const r = row._source;
        const [item] = await bulk(ctx.conn, [
          {
            action: 'index',
            index: alerts,
            id: row._id,
            doc: { ...r, count: r.count + 1, lastTime: Math.max(r.lastTime, a.timeMicros), lastEventId: eventId },
            ifSeqNo: row._seq_no,
            ifPrimaryTerm: row._primary_term,
          },
        ]);
        if (item!.status === 409) continue; // another writer counted on it meanwhile: read it again
        if (item!.error) throw new Error(`alert ${a.rule}: counting a repeat failed: ${item!.error}`);
        if (a.timeMicros > head._source.lastTime) await moveHead(ctx, headId, { alert: row._id, lastTime: a.timeMicros }, head);
        return undefined;
      }
    }
    const id = hashId(a.rule, a.cluster, a.auditID);
    const doc = alertDoc(a, ctx.seq.next(), eventId);
    const [item] = await bulk(ctx.conn, [{ action: 'create', index: alerts, id, doc }]);
    if (item!.status === 409) return undefined; // this event's alert of this rule is stored already
    if (item!.error) throw new Error(`alert ${a.rule}: not stored: ${item!.error}`);
    if (!(await moveHead(ctx, headId, { alert: id, lastTime: a.timeMicros }, head)))
      log.warn(`alert group ${a.groupKey}: another writer opened a row at the same time; repeats count on the newest`, 'os-alert-group');
    return { alert: a, id, doc };
  }
  throw new Error(`alert ${a.rule}: its group ${a.groupKey} kept changing under concurrent writers`);
}

/** Points a group at a row (over the head read before, if any). False when another writer moved it first. */
async function moveHead(ctx: AlertWriter, headId: string, to: GroupHead, seen: { _seq_no?: number; _primary_term?: number } | undefined): Promise<boolean> {
  const [item] = await bulk(ctx.conn, [
    seen
      ? { action: 'index', index: ctx.names.groups, id: headId, doc: to, ifSeqNo: seen._seq_no, ifPrimaryTerm: seen._primary_term }
      : { action: 'create', index: ctx.names.groups, id: headId, doc: to },
  ]);
  if (item!.status === 409) return false;
  if (item!.error) throw new Error(`alert group head: ${item!.error}`);
  return true;
}

function alertDoc(a: Alert, seq: number, eventId: number | null): AlertDoc {
  const body = { ...a };
  delete body.id;
  return {
    seq,
    rule: a.rule,
    severity: SEVERITIES.indexOf(a.severity),
    cluster: a.cluster,
    groupKey: a.groupKey,
    firstTime: a.timeMicros,
    lastTime: a.timeMicros,
    count: 1,
    auditID: a.auditID,
    stage: a.stage,
    eventId,
    lastEventId: eventId,
    user: a.user,
    namespace: a.objectRef?.namespace ?? '',
    body: JSON.stringify(body),
  };
}

function alertRow(d: AlertDoc): AlertRow {
  return {
    ...(JSON.parse(d.body) as Alert),
    id: d.seq,
    count: d.count,
    firstTime: formatMicros(d.firstTime),
    lastTime: formatMicros(d.lastTime),
    eventId: d.eventId,
    lastEventId: d.lastEventId,
  };
}

function alertClauses(f: AlertFilter): object[] {
  const c: object[] = [];
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

export async function queryAlerts(ctx: SearchContext, f: AlertFilter, page: PageOptions = {}): Promise<Page<AlertRow>> {
  const limit = clampLimit(page.limit);
  const c = alertClauses(f);
  if (page.cursor) c.push({ range: { seq: { lt: decodeCursor(page.cursor)[1] } } });
  const r = await search<AlertDoc>(ctx, ctx.names.alerts, { query: { bool: { filter: c } }, sort: [{ seq: 'desc' }], size: limit + 1 });
  const rows = r.hits.hits.map((h) => h._source);
  const more = rows.length > limit;
  if (more) rows.length = limit;
  const last = rows[rows.length - 1];
  return { items: rows.map(alertRow), next: more && last ? encodeCursor(0, last.seq) : undefined };
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
  return (await settledAfter(ctx, [], afterId, limit)).map((d) => ({ id: d.seq, body: d.body }));
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
