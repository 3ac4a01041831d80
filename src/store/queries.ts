import { SEVERITIES, type Alert, type Severity } from '../detect/alert.js';
import { KauditError } from '../errors.js';
import type { NormalisedEvent } from '../events/types.js';
import { formatMicros } from '../events/time.js';
import { decodeAuditID, encodeAuditID } from './audit-id.js';
import { auditIDTerm } from './audit-id-index.js';
import { CATEGORY, DECISION_NAMES, LEVEL_NAMES, ROLLUP_DIMS, STAGE_CODES, STAGE_NAMES, type RollupDim } from './schema.js';
import type { SqliteContext } from './sqlite-context.js';

/** Filters shared by the CLI and the HTTP API. Times are microseconds since the epoch. */
export interface EventFilter {
  user?: string;
  verb?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  code?: number;
  sourceIP?: string;
  cluster?: string;
  auditID?: string;
  stage?: string;
  since?: number;
  until?: number;
}

export interface PageOptions {
  limit?: number;
  cursor?: string;
  includeEvent?: boolean;
}

export interface Page<T> {
  items: T[];
  /** Pass back as `cursor` for the next page; absent on the last page. */
  next?: string;
}

/**
 * A stored event as queries return it: the normalised event's indexed fields (command and container only when set),
 * its store id, and on request the full (redacted) audit event.
 */
export interface EventRow extends Omit<NormalisedEvent, 'timeMicros' | 'command' | 'container' | 'event' | 'raw' | 'admission'> {
  id: number;
  command?: string;
  container?: string;
  event?: unknown;
  /** Why `event` is null although it was asked for. */
  eventOmitted?: string;
}

export class QueryError extends KauditError {
  constructor(message: string) {
    super(message);
    this.name = 'QueryError';
  }
}

export const MAX_LIMIT = 10_000;
const HOUR_US = 3_600_000_000;

/**
 * One row per request: the ResponseComplete (or Panic) event where there is one, else the latest stage logged.
 * Used by the analyst questions, which count requests, not stages.
 */
const ONE_PER_REQUEST = `(e.stage >= 2
  OR (e.stage = 1 AND NOT EXISTS (SELECT 1 FROM events x WHERE x.time = e.time AND x.audit_id = e.audit_id AND x.stage IN (2, 3) AND x.cluster = e.cluster))
  OR (e.stage = 0 AND NOT EXISTS (SELECT 1 FROM events x WHERE x.time = e.time AND x.audit_id = e.audit_id AND x.stage IN (1, 2, 3) AND x.cluster = e.cluster)))`;

const DICT_COLUMNS: Partial<Record<keyof EventFilter, string>> = {
  user: 'user',
  verb: 'verb',
  resource: 'resource',
  namespace: 'namespace',
  sourceIP: 'source_ip',
  cluster: 'cluster',
};

export function encodeCursor(time: number, id: number): string {
  return Buffer.from(`${time}:${id}`).toString('base64url');
}

export function decodeCursor(c: string): [number, number] {
  const m = /^(\d+):(\d+)$/.exec(Buffer.from(c, 'base64url').toString());
  if (!m) throw new QueryError('bad cursor: pass back the `next` value of the previous page unchanged');
  return [Number(m[1]), Number(m[2])];
}

export function clampLimit(l: number | undefined, dflt = 100): number {
  if (l === undefined) return dflt;
  if (!Number.isInteger(l) || l < 1) throw new QueryError('limit must be a positive integer');
  return Math.min(l, MAX_LIMIT);
}

interface Where {
  sql: string[];
  params: unknown[];
  /** A filter value that names nothing in the store: the result is empty. */
  empty: boolean;
}

/** Builds the WHERE terms for a filter. `*` in user, namespace, name and resource values is a wildcard. */
function buildWhere(store: SqliteContext, f: EventFilter): Where {
  const w: Where = { sql: [], params: [], empty: false };
  for (const key of Object.keys(DICT_COLUMNS) as (keyof EventFilter)[]) {
    const v = f[key];
    if (v === undefined || v === '') continue;
    const col = DICT_COLUMNS[key]!;
    const s = String(v);
    if (s.includes('*')) {
      w.sql.push(`e.${col} IN (SELECT id FROM dict WHERE value GLOB ?)`);
      w.params.push(s);
    } else {
      const id = store.lookup(s);
      if (id === undefined) w.empty = true;
      w.sql.push(`e.${col} = ?`);
      w.params.push(id ?? -1);
    }
  }
  if (f.subresource !== undefined) {
    w.sql.push('e.subresource = ?');
    w.params.push(f.subresource);
  }
  if (f.name) {
    w.sql.push(f.name.includes('*') ? 'e.name GLOB ?' : 'e.name = ?');
    w.params.push(f.name);
  }
  if (f.code !== undefined) {
    w.sql.push('e.code = ?');
    w.params.push(f.code);
  }
  if (f.auditID) {
    const term = auditIDTerm(store.db);
    const id = encodeAuditID(f.auditID);
    w.sql.push(term.sql);
    for (let i = 0; i < term.binds; i++) w.params.push(id);
  }
  if (f.stage) {
    const code = STAGE_CODES[f.stage as keyof typeof STAGE_CODES];
    if (code === undefined) throw new QueryError(`bad stage "${f.stage}": one of ${STAGE_NAMES.join(', ')}`);
    w.sql.push('e.stage = ?');
    w.params.push(code);
  }
  if (f.since !== undefined) {
    w.sql.push('e.time >= ?');
    w.params.push(f.since);
  }
  if (f.until !== undefined) {
    w.sql.push('e.time < ?');
    w.params.push(f.until);
  }
  return w;
}

interface RawRow {
  id: number;
  time: number;
  stage: number;
  audit_id: Buffer | string;
  cluster: number;
  verb: number;
  user: number;
  groups: number;
  imp_user: number;
  source_ip: number;
  user_agent: number;
  api_group: number;
  api_version: number;
  resource: number;
  subresource: string;
  namespace: number;
  name: string;
  code: number;
  decision: number;
  level: number;
  command: string | null;
  container: string | null;
  blob: number;
  blob_idx: number;
  cat: number | null;
}

/**
 * Nesting past which a stored event is not returned parsed: JSON.parse takes any depth, but serialising the value
 * again (the API's reply, `--format json`) recurses, and an event nested tens of thousands of levels deep (a request
 * body can be) overflowed the stack, failing the whole page. Kubernetes objects are a few dozen levels deep.
 */
export const MAX_RETURNED_DEPTH = 512;

/** Whether JSON text nests arrays and objects more than `limit` deep (brackets inside strings do not count). */
export function nestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      // Skip the string, and its escapes.
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
    } else if (c === 123 || c === 91) {
      if (++depth > limit) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

function toRow(store: SqliteContext, r: RawRow, includeEvent: boolean): EventRow {
  const groups = store.dictValue(r.groups);
  const row: EventRow = {
    id: r.id,
    time: formatMicros(r.time),
    stage: STAGE_NAMES[r.stage]!, // codes are written by this store only (schema.ts)
    auditID: decodeAuditID(r.audit_id),
    cluster: store.dictValue(r.cluster),
    verb: store.dictValue(r.verb),
    user: store.dictValue(r.user),
    groups: groups ? groups.split(',') : [],
    impersonatedUser: store.dictValue(r.imp_user),
    sourceIP: store.dictValue(r.source_ip),
    userAgent: store.dictValue(r.user_agent),
    apiGroup: store.dictValue(r.api_group),
    apiVersion: store.dictValue(r.api_version),
    resource: store.dictValue(r.resource),
    subresource: r.subresource,
    namespace: store.dictValue(r.namespace),
    name: r.name,
    code: r.code,
    decision: DECISION_NAMES[r.decision] ?? '',
    level: LEVEL_NAMES[r.level]!,
  };
  if (r.command !== null) row.command = r.command;
  if (r.container !== null) row.container = r.container;
  if (includeEvent) {
    const raw = store.rawEvent(r.blob, r.blob_idx);
    if (raw !== undefined && nestedDeeperThan(raw, MAX_RETURNED_DEPTH)) {
      row.event = null;
      row.eventOmitted = `the event's JSON is nested more than ${MAX_RETURNED_DEPTH} levels deep: not returned`;
    } else row.event = raw === undefined ? null : JSON.parse(raw);
  }
  return row;
}

/** Pages through events newest first; the cursor is (time, id) so pages stay stable while new events arrive. */
function pageEvents(store: SqliteContext, w: Where, extra: string[], page: PageOptions): Page<EventRow> {
  const limit = clampLimit(page.limit);
  if (w.empty) return { items: [] };
  const sql = [...w.sql, ...extra];
  const params = [...w.params];
  if (page.cursor) {
    const [t, id] = decodeCursor(page.cursor);
    sql.push('(e.time, e.id) < (?, ?)');
    params.push(t, id);
  }
  const text = `SELECT e.* FROM events e ${sql.length ? 'WHERE ' + sql.join(' AND ') : ''} ORDER BY e.time DESC, e.id DESC LIMIT ?`;
  const rows = store.db.prepare(text).all(...params, limit + 1) as RawRow[];
  const more = rows.length > limit;
  if (more) rows.length = limit;
  const items = rows.map((r) => toRow(store, r, !!page.includeEvent));
  const last = rows[rows.length - 1];
  return { items, next: more && last ? encodeCursor(last.time, last.id) : undefined };
}

export function queryEvents(store: SqliteContext, f: EventFilter, page: PageOptions = {}): Page<EventRow> {
  return pageEvents(store, buildWhere(store, f), [], page);
}

/** How many stored events match a filter (every stage counts, as in queryEvents). */
export function countEvents(store: SqliteContext, f: EventFilter): number {
  const w = buildWhere(store, f);
  if (w.empty) return 0;
  return store.db
    .prepare(`SELECT count(*) FROM events e ${w.sql.length ? 'WHERE ' + w.sql.join(' AND ') : ''}`)
    .pluck()
    .get(...w.params) as number;
}

/**
 * Every matching row, newest first, a page at a time through the cursor (so a page is never repeated or skipped while
 * new events arrive), holding one page in memory: for exports.
 */
export async function* allPages<T>(query: (page: PageOptions) => Promise<Page<T>>, page: PageOptions = {}): AsyncGenerator<Page<T>> {
  let cursor = page.cursor;
  for (;;) {
    const p = await query({ ...page, limit: MAX_LIMIT, cursor });
    yield p;
    if (!p.next) return;
    cursor = p.next;
  }
}

export function getEvent(store: SqliteContext, id: number): EventRow | undefined {
  const r = store.db.prepare('SELECT e.* FROM events e WHERE e.id = ?').get(id) as RawRow | undefined;
  return r ? toRow(store, r, true) : undefined;
}

export interface AnalystFilter {
  user?: string;
  namespace?: string;
  cluster?: string;
  since?: number;
  until?: number;
}

function analystWhere(store: SqliteContext, f: AnalystFilter): Where {
  return buildWhere(store, { user: f.user, namespace: f.namespace, cluster: f.cluster, since: f.since, until: f.until });
}

/** Who exec'd or attached into which pod (one row per request; denied attempts included, see `decision`/`code`). */
export function execSessions(store: SqliteContext, f: AnalystFilter, page: PageOptions = {}): Page<EventRow> {
  const w = analystWhere(store, f);
  return pageEvents(store, w, [`e.cat = ${CATEGORY.exec}`, "e.subresource IN ('exec', 'attach')", ONE_PER_REQUEST], page);
}

/** Who read or listed Secrets (get, list, watch), one row per request. */
export function secretReads(store: SqliteContext, f: AnalystFilter, page: PageOptions = {}): Page<EventRow> {
  return pageEvents(store, analystWhere(store, f), [`e.cat = ${CATEGORY.secretRead}`, ONE_PER_REQUEST], page);
}

/** Who changed RBAC: writes to roles, cluster roles and their bindings, one row per request. */
export function rbacChanges(store: SqliteContext, f: AnalystFilter, page: PageOptions = {}): Page<EventRow> {
  return pageEvents(store, analystWhere(store, f), [`e.cat = ${CATEGORY.rbacChange}`, ONE_PER_REQUEST], page);
}

/** Everything one identity did between two times, one row per request. */
export function userActivity(store: SqliteContext, f: AnalystFilter & { user: string }, page: PageOptions = {}): Page<EventRow> {
  if (!f.user) throw new QueryError('user is required');
  return pageEvents(store, analystWhere(store, f), [ONE_PER_REQUEST], page);
}

export interface TopEntry {
  value: string;
  count: number;
}

const TOP_COLUMNS: Record<RollupDim, string> = { user: 'user', resource: 'resource', verb: 'verb', namespace: 'namespace', sourceIP: 'source_ip' };

/**
 * The busiest users, resources, verbs, namespaces or source IPs over a window, counting requests (final stages).
 * Whole hours come from the hourly rollup kept at ingest; the partial hours at either end are counted from events.
 */
export function top(store: SqliteContext, dim: RollupDim, f: { since?: number; until?: number; limit?: number }): TopEntry[] {
  if (!(dim in ROLLUP_DIMS)) throw new QueryError(`cannot rank by "${dim}": one of ${Object.keys(ROLLUP_DIMS).join(', ')}`);
  const limit = clampLimit(f.limit, 10);
  const since = f.since ?? 0;
  const until = f.until ?? Number.MAX_SAFE_INTEGER;
  const counts = new Map<number, number>();
  const add = (rows: { v: number; n: number }[]) => {
    for (const r of rows) counts.set(r.v, (counts.get(r.v) ?? 0) + r.n);
  };
  const col = TOP_COLUMNS[dim];
  const h0 = Math.ceil(since / HOUR_US);
  const h1 = Math.floor(Math.min(until, 8.64e18) / HOUR_US);
  const scan = (a: number, b: number) =>
    add(
      store.db.prepare(`SELECT ${col} AS v, count(*) AS n FROM events WHERE time >= ? AND time < ? AND stage IN (2, 3) GROUP BY ${col}`).all(a, b) as {
        v: number;
        n: number;
      }[],
    );
  if (h0 < h1) {
    add(
      store.db.prepare('SELECT value AS v, sum(n) AS n FROM rollup WHERE dim = ? AND hour >= ? AND hour < ? GROUP BY value').all(ROLLUP_DIMS[dim], h0, h1) as {
        v: number;
        n: number;
      }[],
    );
    if (since < h0 * HOUR_US) scan(since, h0 * HOUR_US);
    if (until > h1 * HOUR_US) scan(h1 * HOUR_US, until);
  } else {
    scan(since, until);
  }
  // Ties by value (as OpenSearch's terms aggregation orders them), so that every store kind ranks alike.
  return [...counts.entries()]
    .map(([v, n]) => ({ value: store.dictValue(v), count: n }))
    .sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
    .slice(0, limit);
}

export interface AlertFilter {
  rule?: string[];
  minSeverity?: Severity;
  cluster?: string;
  namespace?: string;
  user?: string;
  since?: number;
  until?: number;
  /** Only alerts with an id greater than this (the WebSocket feed's resume point). */
  afterId?: number;
}

export interface AlertRow extends Alert {
  id: number;
  count: number;
  firstTime: string;
  lastTime: string;
  eventId: number | null;
  lastEventId: number | null;
}

interface RawAlert {
  id: number;
  count: number;
  first_time: number;
  last_time: number;
  event_id: number | null;
  last_event_id: number | null;
  body: string;
}

function alertWhere(f: AlertFilter): { sql: string[]; params: unknown[] } {
  const sql: string[] = [];
  const params: unknown[] = [];
  if (f.rule && f.rule.length) {
    sql.push(`rule IN (${f.rule.map(() => '?').join(',')})`);
    params.push(...f.rule);
  }
  if (f.minSeverity) {
    const s = SEVERITIES.indexOf(f.minSeverity);
    if (s < 0) throw new QueryError(`bad severity "${f.minSeverity}": one of ${SEVERITIES.join(', ')}`);
    sql.push('severity >= ?');
    params.push(s);
  }
  if (f.cluster) {
    sql.push('cluster = ?');
    params.push(f.cluster);
  }
  if (f.namespace) {
    sql.push('namespace = ?');
    params.push(f.namespace);
  }
  if (f.user) {
    sql.push('user = ?');
    params.push(f.user);
  }
  if (f.since !== undefined) {
    sql.push('first_time >= ?');
    params.push(f.since);
  }
  if (f.until !== undefined) {
    sql.push('first_time < ?');
    params.push(f.until);
  }
  if (f.afterId !== undefined) {
    sql.push('id > ?');
    params.push(f.afterId);
  }
  return { sql, params };
}

export function toAlertRow(r: RawAlert): AlertRow {
  const body = JSON.parse(r.body) as Alert;
  return {
    ...body,
    id: r.id,
    count: r.count,
    firstTime: formatMicros(r.first_time),
    lastTime: formatMicros(r.last_time),
    eventId: r.event_id,
    lastEventId: r.last_event_id,
  };
}

/** Alerts newest first, paged by id (ids only grow, so pages are stable under ingest). */
export function queryAlerts(store: SqliteContext, f: AlertFilter, page: PageOptions = {}): Page<AlertRow> {
  const limit = clampLimit(page.limit);
  const { sql, params } = alertWhere(f);
  if (page.cursor) {
    const [, id] = decodeCursor(page.cursor);
    sql.push('id < ?');
    params.push(id);
  }
  const rows = store.db
    .prepare(
      `SELECT id, count, first_time, last_time, event_id, last_event_id, body FROM alerts ${sql.length ? 'WHERE ' + sql.join(' AND ') : ''} ORDER BY id DESC LIMIT ?`,
    )
    .all(...params, limit + 1) as RawAlert[];
  const more = rows.length > limit;
  if (more) rows.length = limit;
  const last = rows[rows.length - 1];
  return { items: rows.map(toAlertRow), next: more && last ? encodeCursor(0, last.id) : undefined };
}

/** How many alert rows match a filter (a row with a count of repeats counts once). */
export function countAlerts(store: SqliteContext, f: AlertFilter): number {
  const { sql, params } = alertWhere(f);
  return store.db
    .prepare(`SELECT count(*) FROM alerts ${sql.length ? 'WHERE ' + sql.join(' AND ') : ''}`)
    .pluck()
    .get(...params) as number;
}

/** Alerts after an id, oldest first: the replay a resuming feed client needs before it goes live. */
export function alertsAfter(store: SqliteContext, f: AlertFilter & { afterId: number }, limit: number): AlertRow[] {
  const { sql, params } = alertWhere(f);
  return (
    store.db
      .prepare(`SELECT id, count, first_time, last_time, event_id, last_event_id, body FROM alerts WHERE ${sql.join(' AND ')} ORDER BY id ASC LIMIT ?`)
      .all(...params, limit) as RawAlert[]
  ).map(toAlertRow);
}

export function getAlert(store: SqliteContext, id: number): AlertRow | undefined {
  const r = store.db.prepare('SELECT id, count, first_time, last_time, event_id, last_event_id, body FROM alerts WHERE id = ?').get(id) as RawAlert | undefined;
  return r ? toAlertRow(r) : undefined;
}

export interface DeadLetterRow {
  id: number;
  received: string;
  source: string;
  position: string;
  reason: string;
  size: number;
}

export function deadLetters(store: SqliteContext, limit = 100): DeadLetterRow[] {
  return (
    store.db.prepare('SELECT id, received, source, position, reason, size FROM dead_letters ORDER BY id DESC LIMIT ?').all(clampLimit(limit)) as (Omit<
      DeadLetterRow,
      'received'
    > & { received: number })[]
  ).map((r) => ({ ...r, received: new Date(r.received).toISOString() }));
}

export function counts(store: SqliteContext): { events: number; alerts: number; deadLetters: number } {
  const one = (sql: string) => (store.db.prepare(sql).pluck().get() as number) ?? 0;
  return { events: one('SELECT count(*) FROM events'), alerts: one('SELECT count(*) FROM alerts'), deadLetters: one('SELECT count(*) FROM dead_letters') };
}
