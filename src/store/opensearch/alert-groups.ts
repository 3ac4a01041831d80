/**
 * Writing alerts to the fleet store with SQLite's grouping: an alert of a group key whose newest row's last time is
 * within the group window of it is counted on that row (count, last time, last event), else it opens a row. A row's
 * document id is its alert's (rule, cluster, auditID), as SQLite's alerts_once index: an alert raised again for the
 * same event (a batch detected again after a crash) opens no second row.
 *
 * The row a group counts on is found through a head document per group key, read in real time by id (a search would
 * miss a row written less than a refresh ago). A whole commit's alerts take a fixed number of requests, however many
 * there are: one mget of the heads and of the rows the alerts would open, one mget of the rows the heads point to,
 * then one bulk of every row and head written. The alerts are grouped in memory in their commit order, so the rows
 * are the ones that alert-by-alert writing would leave.
 *
 * Rows counted on and heads moved are written over the version read (optimistic concurrency). When another writer
 * changed one in between (two detectors counting on one group), the alerts that write carried are grouped again from
 * a fresh read: no repeat is lost, though under such a race they may count on a newer row of their group.
 */
import { createHash } from 'node:crypto';
import { SEVERITIES, type Alert } from '../../detect/alert.js';
import { log } from '../../log.js';
import type { AlertDoc } from './alerts.js';
import { bulk, type BulkOp } from './bulk.js';
import { getDocs } from './mget.js';
import type { SearchContext } from './search.js';
import { SETTLE_MS, type Sequence } from './sequence.js';

export interface AlertWriter extends SearchContext {
  readonly seq: Sequence;
  readonly groupWindowUs: number;
}

export interface AlertToWrite {
  alert: Alert;
  /** The stored event that raised it, if it is stored (an alert links to it). */
  eventId: number | null;
}

interface GroupHead {
  alert: string;
  lastTime: number;
}

interface Version {
  seqNo: number;
  primaryTerm: number;
}

/** A row as this commit leaves it, and the alerts (indexes into the commit's list) it carries. */
interface RowWrite {
  id: string;
  doc: AlertDoc;
  /** The version read, for a row that exists; none for a row this commit opens. */
  version?: Version;
  carried: number[];
}

/** A group key's state while a commit's alerts are grouped. */
interface GroupState {
  key: string;
  headId: string;
  head?: GroupHead;
  headVersion?: Version;
  row?: RowWrite;
  /** The head as this commit leaves it, when it moves. */
  moveTo?: GroupHead;
}

const hashId = (...parts: string[]) => createHash('sha256').update(parts.join('\u0000')).digest().subarray(0, 16).toString('base64url');

/** How many times the alerts of a write that lost a race are grouped again before the commit fails (retriable). */
const REGROUPS = 10;

/**
 * Writes a commit's alerts (grouped) and makes them visible to readers (a refresh of the alerts index) before the
 * commit's batches are acknowledged. Returns, per alert of `list`, the alert with its id when it opened a row, else
 * undefined (counted on a row, or stored before).
 */
export async function writeAlerts(ctx: AlertWriter, list: readonly AlertToWrite[]): Promise<(Alert | undefined)[]> {
  const out = new Array<Alert | undefined>(list.length);
  let todo = list.map((_, i) => i);
  for (let attempt = 0; todo.length > 0; attempt++) {
    if (attempt >= REGROUPS) throw new Error(`alerts: their groups kept changing under concurrent writers (${todo.length} not written)`);
    const plan = await groupAlerts(ctx, list, todo);
    todo = await writePlan(ctx, list, plan, out);
  }
  return out;
}

/** Reads the groups' heads and rows and groups the alerts `todo` (indexes into `list`, in commit order) in memory. */
async function groupAlerts(ctx: AlertWriter, list: readonly AlertToWrite[], todo: number[]): Promise<{ rows: RowWrite[]; groups: GroupState[] }> {
  const { alerts, groups: groupsIndex } = ctx.names;
  const groups = new Map<string, GroupState>();
  const openIds = new Map<number, string>();
  for (const i of todo) {
    const a = list[i]!.alert;
    if (!groups.has(a.groupKey)) groups.set(a.groupKey, { key: a.groupKey, headId: hashId(a.groupKey) });
    openIds.set(i, hashId(a.rule, a.cluster, a.auditID));
  }
  const heads = [...groups.values()];
  const opens = [...new Set(openIds.values())];
  const first = await getDocs<GroupHead | AlertDoc>(ctx, [
    ...heads.map((g) => ({ index: groupsIndex, id: g.headId })),
    ...opens.map((id) => ({ index: alerts, id, source: ['count', 'lastTime'] })),
  ]);
  heads.forEach((g, k) => {
    const h = first[k];
    if (h) {
      g.head = h._source as GroupHead;
      g.headVersion = { seqNo: h._seq_no!, primaryTerm: h._primary_term! };
    }
  });
  // Rows that exist: those the alerts would open (stored before) and, read next, those the heads point to.
  const stored = new Map<string, { count: number; lastTime: number; version: Version }>();
  opens.forEach((id, k) => {
    const h = first[heads.length + k];
    if (h) stored.set(id, { ...(h._source as AlertDoc), version: { seqNo: h._seq_no!, primaryTerm: h._primary_term! } });
  });
  const pointed = [...new Set(heads.flatMap((g) => (g.head && !stored.has(g.head.alert) ? [g.head.alert] : [])))];
  const second = await getDocs<AlertDoc>(
    ctx,
    pointed.map((id) => ({ index: alerts, id, source: ['count', 'lastTime'] })),
  );
  pointed.forEach((id, k) => {
    const h = second[k];
    if (h) stored.set(id, { ...h._source, version: { seqNo: h._seq_no!, primaryTerm: h._primary_term! } });
  });

  const rows = new Map<string, RowWrite>();
  for (const i of todo) {
    const { alert: a, eventId } = list[i]!;
    const g = groups.get(a.groupKey)!;
    // The same alert again (its batch detected again because a finish failed after this row was written): not a
    // repeat of itself.
    if (stored.has(openIds.get(i)!)) continue;
    const lastTime = g.moveTo?.lastTime ?? g.head?.lastTime;
    const rowId = g.moveTo?.alert ?? g.head?.alert;
    if (rowId !== undefined && lastTime! >= a.timeMicros - ctx.groupWindowUs) {
      let row = rows.get(rowId);
      if (!row) {
        const s = stored.get(rowId);
        // A head whose row is missing (its writer stopped between the two): the alert opens a row instead.
        if (s) rows.set(rowId, (row = { id: rowId, doc: { count: s.count, lastTime: s.lastTime } as AlertDoc, version: s.version, carried: [] }));
      }
      if (row) {
        row.doc.count++;
        row.doc.lastTime = Math.max(row.doc.lastTime, a.timeMicros);
        row.doc.lastEventId = eventId;
        row.carried.push(i);
        if (a.timeMicros > lastTime!) g.moveTo = { alert: rowId, lastTime: a.timeMicros };
        continue;
      }
    }
    const id = openIds.get(i)!;
    // This event's alert of this rule is stored already (or opened earlier in this commit): nothing to add.
    if (stored.has(id) || rows.has(id)) continue;
    rows.set(id, { id, doc: alertDoc(a, eventId), carried: [i] });
    g.moveTo = { alert: id, lastTime: a.timeMicros };
  }
  return { rows: [...rows.values()], groups: heads };
}

/**
 * One bulk of the plan's rows and heads. New rows take their commit-ordered ids (sequence.ts) just before the write
 * that makes them visible; a write slower than SETTLE_MS allows is stamped again. Returns the alerts to group again.
 */
async function writePlan(
  ctx: AlertWriter,
  list: readonly AlertToWrite[],
  plan: { rows: RowWrite[]; groups: GroupState[] },
  out: (Alert | undefined)[],
): Promise<number[]> {
  const { alerts, groups } = ctx.names;
  const moved = plan.groups.filter((g) => g.moveTo);
  if (plan.rows.length === 0) return [];
  const opened = plan.rows.filter((r) => !r.version);
  let stampedAt = Date.now();
  for (const r of opened) r.doc.seq = ctx.seq.next(stampedAt);
  const ops: BulkOp[] = plan.rows.map((r) =>
    r.version
      ? {
          action: 'update',
          index: alerts,
          id: r.id,
          doc: { count: r.doc.count, lastTime: r.doc.lastTime, lastEventId: r.doc.lastEventId },
          ifSeqNo: r.version.seqNo,
          ifPrimaryTerm: r.version.primaryTerm,
        }
      : { action: 'create', index: alerts, id: r.id, doc: r.doc },
  );
  for (const g of moved) {
    ops.push(
      g.headVersion
        ? { action: 'index', index: groups, id: g.headId, doc: g.moveTo, ifSeqNo: g.headVersion.seqNo, ifPrimaryTerm: g.headVersion.primaryTerm }
        : { action: 'create', index: groups, id: g.headId, doc: g.moveTo },
    );
  }
  const items = await bulk(ctx.conn, ops, { refresh: true });
  const again: number[] = [];
  const written: RowWrite[] = [];
  plan.rows.forEach((r, k) => {
    const item = items[k]!;
    if (item.status === 409) {
      // Counted on by another writer meanwhile: group these again. A row opened meanwhile by another writer holds
      // this alert already; the alerts counted on it here are grouped again.
      again.push(...(r.version ? r.carried : r.carried.slice(1)));
    } else if (item.error) throw new Error(`alerts: writing row ${r.id} failed: ${item.error}`);
    else if (!r.version) written.push(r);
  });
  moved.forEach((g, k) => {
    const item = items[plan.rows.length + k]!;
    if (item.status === 409) {
      if (written.some((r) => r.id === g.moveTo!.alert))
        log.warn(`alert group ${g.key}: another writer opened a row at the same time; repeats count on the newest`, 'os-alert-group');
    } else if (item.error) throw new Error(`alerts: moving a group's head failed: ${item.error}`);
  });
  // Rows opened here and visible now: when the write took too long for readers' settled ids, stamp them again.
  for (let attempt = 0; written.length > 0 && Date.now() - stampedAt > SETTLE_MS / 2 && attempt < 2; attempt++) {
    stampedAt = Date.now();
    for (const r of written) r.doc.seq = ctx.seq.next(stampedAt);
    const restamped = await bulk(
      ctx.conn,
      written.map((r) => ({ action: 'update' as const, index: alerts, id: r.id, doc: { seq: r.doc.seq } })),
      { refresh: true },
    );
    const failed = restamped.find((i) => i.error);
    if (failed) throw new Error(`alerts: stamping their ids again failed: ${failed.error}`);
  }
  for (const r of written) out[r.carried[0]!] = { ...list[r.carried[0]!]!.alert, id: r.doc.seq! };
  return again;
}

function alertDoc(a: Alert, eventId: number | null): AlertDoc {
  const body = { ...a };
  delete body.id;
  return {
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
    ...postureFields(a),
    body: JSON.stringify(body),
  };
}

/** `details.workload` and `details.cis` as fields of their own (the posture table's), when the rule gave strings. */
function postureFields(a: Alert): Pick<AlertDoc, 'workload' | 'cis'> {
  const out: Pick<AlertDoc, 'workload' | 'cis'> = {};
  if (typeof a.details?.workload === 'string') out.workload = a.details.workload;
  if (typeof a.details?.cis === 'string') out.cis = a.details.cis;
  return out;
}
