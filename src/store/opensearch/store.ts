/**
 * The fleet store: OpenSearch behind the same seam as SQLite (store.ts), so that any number of detectors write to it
 * and any node answers queries for every cluster. Writing follows the batch-writer protocol (batch.ts):
 *
 *   insert  a pending-detection mark listing the batch's events, then the events with `create` and ids derived from
 *           (cluster, auditID, stage): 201 is new, 409 was stored before (by any writer), so nothing is stored or
 *           detected twice; items refused for now are retried (bulk.ts), items refused for good are dead-lettered.
 *   finish  the alerts (grouped, alert-groups.ts), then dead letters, the source position and the mark's removal;
 *           finishes are committed in call order, several batches' at once when they queue up (a commit group).
 *
 * OpenSearch unreachable or pushing back fails the call with a retriable StoreUnavailableError: the pipeline's source
 * keeps the batch and sends it again. A batch whose insert or finish failed midway keeps its mark (stranded); a
 * writer that stopped leaves its marks behind its expired lease; `pending` hands both back for detection.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Alert } from '../../detect/alert.js';
import { StoreUnavailableError } from '../../errors.js';
import { log } from '../../log.js';
import type { BatchTail, DeadLetter, InsertResult, PendingBatch } from '../batch.js';
import type { PostureFilter, PostureRow, ViolationFilter, ViolationRow } from '../admission-queries.js';
import type * as q from '../queries.js';
import type { EventRecords } from '../records.js';
import type { RollupDim } from '../schema.js';
import type { AuditStore, CommittedAlert, RetentionOptions, StoreOptions, StoreOverview } from '../store.js';
import type { Timeline } from '../timeline.js';
import * as agg from './aggregations.js';
import * as alertGroups from './alert-groups.js';
import * as alerts from './alerts.js';
import * as book from './bookkeeping.js';
import { writeAdmission } from './admission-docs.js';
import * as adm from './admission-queries.js';
import { bulk, type BulkOp } from './bulk.js';
import { OpenSearchConnection, type OpenSearchSettings } from './connection.js';
import { eventDocs, eventKey, type EventDoc } from './documents.js';
import * as ev from './event-queries.js';
import { eventsIndex, indexNames, installIndices, type IndexNames } from './indices.js';
import { PointsInTime, type PointInTimeOptions } from './point-in-time.js';
import { applyRetention } from './retention.js';
import { count, getDoc } from './search.js';
import { Sequence, SLOTS } from './sequence.js';

interface OpenBatch {
  markId: string;
  /** Per event of the batch: its numeric id when it was new, else 0 (what alerts link to). */
  eids: number[];
  /** New events' documents, for discard. */
  stored: [index: string, id: string][];
  /** Events OpenSearch refused for good: dead-lettered with the batch's finish. */
  refused: DeadLetter[];
  /** Admission rows of the new events (admission-docs.ts), for discard. */
  admission?: [index: string, id: string][];
}

interface QueuedFinish {
  open: OpenBatch;
  tail: BatchTail;
  resolve: (alerts: Alert[]) => void;
  reject: (e: unknown) => void;
}

/** Batches committed together at most (a group's alerts and bookkeeping go in a few requests of bounded size). */
const MAX_COMMIT_GROUP = 32;

export interface OpenSearchStoreOptions extends StoreOptions {
  retention?: RetentionOptions & { intervalMs?: number };
  /** The points in time behind cursors (point-in-time.ts). */
  pointsInTime?: PointInTimeOptions;
}

export class OpenSearchStore implements AuditStore {
  readonly names: IndexNames;
  readonly owner = `${hostname()}:${process.pid}:${randomUUID()}`;
  redactionKey: Buffer = Buffer.alloc(32);
  readonly groupWindowUs: number;
  readonly pits: PointsInTime;
  private readonly deadLetterMax: number;
  seq = new Sequence(0);
  private batches = new Map<number, OpenBatch>();
  private stranded = new Map<string, OpenBatch>();
  private nextBatch = 1;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;

  private constructor(
    readonly conn: OpenSearchConnection,
    private readonly opts: OpenSearchStoreOptions,
  ) {
    this.names = indexNames(conn.settings.indexPrefix);
    this.groupWindowUs = (opts.alertGroupWindowMs ?? 600_000) * 1000;
    this.deadLetterMax = opts.deadLetterMaxBytes ?? 64 * 1024;
    this.pits = new PointsInTime(conn, opts.pointsInTime);
  }

  /** Connects; a writer also installs the index template and indices, takes a slot for its ids and starts its lease. */
  static async open(settings: OpenSearchSettings, opts: OpenSearchStoreOptions = {}): Promise<OpenSearchStore> {
    const s = new OpenSearchStore(new OpenSearchConnection(settings), opts);
    try {
      if (!opts.readonly) await s.startWriter();
    } catch (e) {
      await s.conn.close();
      throw e;
    }
    return s;
  }

  private async startWriter(): Promise<void> {
    const { settings } = this.conn;
    await installIndices(this.conn, this.names, { replicas: settings.replicas, shards: settings.shards });
    this.seq = new Sequence(await book.takeSlot(this, SLOTS));
    this.redactionKey = await this.loadRedactionKey();
    await book.renewLease(this, this.owner);
    const lease = setInterval(() => void book.renewLease(this, this.owner).catch(() => undefined), book.LEASE_MS / 4);
    lease.unref();
    this.timers.push(lease);
    const r = this.opts.retention;
    if (r && (r.maxAgeMs !== undefined || r.maxBytes !== undefined)) {
      const run = () => void applyRetention(this, r).catch((e: Error) => log.warn(`retention on OpenSearch failed: ${e.message}`, 'os-retention'));
      const t = setInterval(run, r.intervalMs ?? 60_000);
      t.unref();
      this.timers.push(t);
    }
  }

  /** The redaction key every writer of this store shares (created by the first). */
  private async loadRedactionKey(): Promise<Buffer> {
    const [item] = await bulk(this.conn, [
      { action: 'create', index: this.names.state, id: 'redaction-key', doc: { kind: 'state', value: randomBytes(32).toString('base64') } },
    ]);
    if (item!.error && item!.status !== 409) throw new Error(`redaction key: ${item!.error}`);
    const doc = await getDoc<{ value: string }>(this, this.names.state, 'redaction-key');
    return Buffer.from(doc!._source.value, 'base64');
  }

  async insert(batch: EventRecords): Promise<InsertResult> {
    const docs = eventDocs(batch);
    const id = this.nextBatch++;
    const keys = docs.map((d) => ({ index: eventsIndex(this.names.prefix, d.ts), ...eventKey(d.cluster, d.auditID, d.stage) }));
    const open: OpenBatch = { markId: `mark:${this.owner}:${id}`, eids: new Array<number>(docs.length).fill(0), stored: [], refused: [] };
    const flags = new Array<boolean>(docs.length).fill(false);
    if (docs.length > 0) {
      // The mark goes first: whatever part of the batch is stored, a later writer knows it may need detecting.
      await this.writeOrFail([book.markOp(this, { id: open.markId, owner: this.owner, docs: keys.map((k) => [k.index, k.id]) })]);
      let items;
      try {
        items = await bulk(
          this.conn,
          docs.map((d, i) => ({ action: 'create' as const, index: keys[i]!.index, id: keys[i]!.id, doc: d })),
          {
            stopped: () => this.closed,
          },
        );
        // The one admission step of the write path: the rows of the batch's stored events (admission-docs.ts).
        const admission = await writeAdmission(
          this.conn,
          this.names.prefix,
          batch.admission,
          docs.map((doc, i) => ({ doc, id: keys[i]!.id, item: items![i]! })),
          () => this.closed,
        );
        open.admission = admission.created;
        open.refused.push(...admission.refused);
      } catch (e) {
        // Some of the batch may be stored: the mark lists all of it, and `pending` reads back what is there.
        open.stored = keys.map((k) => [k.index, k.id]);
        this.stranded.set(open.markId, open);
        throw e;
      }
      items.forEach((it, i) => {
        if (it.status >= 200 && it.status < 300) {
          flags[i] = true;
          open.eids[i] = docs[i]!.eid;
          open.stored.push([keys[i]!.index, keys[i]!.id]);
        } else if (it.status !== 409) open.refused.push(refusedEvent(docs[i]!, it.error ?? `status ${it.status}`));
      });
      // Only the new events stay marked: the others belong to batches that detected them.
      if (open.stored.length < docs.length) {
        const narrowed = open.stored.length ? book.markOp(this, { id: open.markId, owner: this.owner, docs: open.stored }) : book.unmarkOp(this, open.markId);
        await this.writeOrFail([narrowed]).catch((e: unknown) => {
          this.stranded.set(open.markId, open);
          throw e;
        });
      }
    }
    this.batches.set(id, open);
    const orphans = flags.includes(false) && (this.stranded.size > 0 || (await this.orphanMarks()).length > 0);
    return { batch: id, flags, orphans };
  }

  /** A bulk whose every item must succeed (404 on a delete is fine). */
  private async writeOrFail(ops: BulkOp[], refresh = false): Promise<void> {
    const items = await bulk(this.conn, ops, { refresh, stopped: () => this.closed });
    items.forEach((it, i) => {
      if (it.error && !(ops[i]!.action === 'delete' && it.status === 404))
        throw new StoreUnavailableError(`OpenSearch at ${this.conn.where} did not take a ${ops[i]!.action} in ${ops[i]!.index}: ${it.error}`);
    });
  }

  /**
   * Finishes are committed one group at a time, in the order they were called: the pipeline has several batches in
   * flight, and their alerts must be grouped (and their ids taken) in batch order, as one SQLite writer would. Batches
   * whose finish was called while a group was being written are committed together as the next group, so a busy
   * writer pays the fixed cost of a commit (the alert groups' reads, the bulks) once for several batches.
   */
  finish(batch: number, b: BatchTail): Promise<Alert[]> {
    const open = this.batches.get(batch);
    if (!open) return Promise.reject(new Error(`store: no batch ${batch} is open`));
    this.batches.delete(batch);
    return new Promise<Alert[]>((resolve, reject) => {
      this.finishing.push({ open, tail: b, resolve, reject });
      if (!this.committing) void this.commitFinishing();
    });
  }

  private finishing: QueuedFinish[] = [];
  private committing = false;

  private async commitFinishing(): Promise<void> {
    this.committing = true;
    try {
      while (this.finishing.length > 0) {
        const group = this.finishing.splice(0, MAX_COMMIT_GROUP);
        try {
          const raised = await this.commit(group);
          group.forEach((f, i) => f.resolve(raised[i]!));
        } catch (e) {
          // The events stay stored and marked; the sources send the batches again, their duplicates bring `pending` here.
          for (const f of group) {
            this.stranded.set(f.open.markId, f.open);
            f.reject(e);
          }
        }
      }
    } finally {
      this.committing = false;
    }
  }

  /** One group of finishes: every batch's alerts (grouped, in batch order), then dead letters, positions and marks. */
  private async commit(group: QueuedFinish[]): Promise<Alert[][]> {
    const list: alertGroups.AlertToWrite[] = [];
    const owner: number[] = [];
    group.forEach(({ open, tail }, k) =>
      tail.alerts.forEach((alert, i) => {
        const evIdx = tail.alertEvents?.[i] ?? -1;
        list.push({ alert, eventId: evIdx >= 0 ? open.eids[evIdx] || null : null });
        owner.push(k);
      }),
    );
    const raised = group.map((): Alert[] => []);
    (await alertGroups.writeAlerts(this, list)).forEach((a, i) => a && raised[owner[i]!]!.push(a));
    const now = Date.now();
    const ops: BulkOp[] = [];
    const positions = new Map<string, string>();
    for (const { open, tail } of group) {
      for (const d of [...tail.deadLetters, ...open.refused]) ops.push(book.deadLetterOp(this, this.seq, d, now, this.deadLetterMax));
      if (tail.checkpoint) positions.set(tail.checkpoint.source, tail.checkpoint.position);
      ops.push(book.unmarkOp(this, open.markId));
    }
    // A source's latest position only: the group's batches are in order.
    for (const [source, position] of positions) ops.push(book.positionOp(this, source, position, now));
    await this.writeOrFail(ops);
    for (const { open } of group) this.stranded.delete(open.markId);
    return raised;
  }

  async discard(batch: number): Promise<void> {
    const open = this.batches.get(batch);
    if (!open) return;
    this.batches.delete(batch);
    try {
      const docs = [...open.stored, ...(open.admission ?? [])];
      await this.writeOrFail([...docs.map(([index, id]): BulkOp => ({ action: 'delete', index, id })), book.unmarkOp(this, open.markId)]);
    } catch (e) {
      this.stranded.set(open.markId, open);
      throw e;
    }
  }

  /** Marks of writers whose lease ran out (they stopped without finishing those batches). */
  private async orphanMarks(): Promise<book.Mark[]> {
    const marks = await book.foreignMarks(this, this.owner);
    const alive = new Map<string, boolean>();
    const out: book.Mark[] = [];
    for (const m of marks) {
      if (!alive.has(m.owner)) alive.set(m.owner, await book.ownerAlive(this, m.owner));
      if (!alive.get(m.owner)) out.push(m);
    }
    return out;
  }

  async pending(): Promise<PendingBatch[]> {
    const claimed: { markId: string; docs: [string, string][] }[] = [];
    for (const [markId, open] of this.stranded) claimed.push({ markId, docs: open.stored });
    this.stranded.clear();
    for (const m of await this.orphanMarks()) if (await book.claimMark(this, m, this.owner)) claimed.push({ markId: m.id, docs: m.docs });
    const out: PendingBatch[] = [];
    for (const c of claimed) {
      const docs = c.docs.length ? await this.mget(c.docs) : [];
      const id = this.nextBatch++;
      this.batches.set(id, { markId: c.markId, eids: docs.map((d) => d.eid), stored: c.docs, refused: [] });
      out.push({ batch: id, events: docs.map((d) => ({ cluster: d.cluster, line: d.raw })) });
    }
    return out;
  }

  private async mget(docs: [string, string][]): Promise<EventDoc[]> {
    const r = await this.conn.request<{ docs: { found: boolean; _source?: EventDoc }[] }>('POST', '/_mget', {
      docs: docs.map(([index, id]) => ({ _index: index, _id: id })),
    });
    return r.body.docs.filter((d) => d.found && d._source).map((d) => d._source!);
  }

  saveState(name: string, json: string): Promise<void> {
    return book.saveState(this, name, json);
  }

  takeState(name: string): Promise<string | undefined> {
    return book.takeState(this, name);
  }

  /** Makes every write so far visible to searches (a refresh happens by itself within a second). */
  async refresh(): Promise<void> {
    await this.conn.request('POST', `/${this.names.prefix}-*/_refresh`, undefined, { query: { ignore_unavailable: 'true', allow_no_indices: 'true' } });
  }

  /** One retention pass now (it also runs on a timer when configured). */
  applyRetention(o: RetentionOptions, now?: number): Promise<string[]> {
    return applyRetention(this, o, now);
  }

  // StoreReader

  async queryEvents(f: q.EventFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return ev.queryEvents(this, f, page);
  }
  async getEvent(id: number): Promise<q.EventRow | undefined> {
    return ev.getEvent(this, id);
  }
  async execSessions(f: q.AnalystFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return ev.execSessions(this, f, page);
  }
  async secretReads(f: q.AnalystFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return ev.secretReads(this, f, page);
  }
  async rbacChanges(f: q.AnalystFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return ev.rbacChanges(this, f, page);
  }
  async userActivity(f: q.AnalystFilter & { user: string }, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return ev.userActivity(this, f, page);
  }
  async top(dim: RollupDim, f: { since?: number; until?: number; limit?: number }): Promise<q.TopEntry[]> {
    return agg.top(this, dim, f);
  }
  async queryAlerts(f: q.AlertFilter, page?: q.PageOptions): Promise<q.Page<q.AlertRow>> {
    return alerts.queryAlerts(this, f, page);
  }
  async getAlert(id: number): Promise<q.AlertRow | undefined> {
    return alerts.getAlert(this, id);
  }
  async alertsAfter(f: q.AlertFilter & { afterId: number }, limit: number): Promise<q.AlertRow[]> {
    return alerts.alertsAfter(this, f, limit);
  }
  async committedAlertsAfter(afterId: number, limit: number): Promise<CommittedAlert[]> {
    return alerts.committedAlertsAfter(this, afterId, limit);
  }
  async psaViolations(f: ViolationFilter, page?: q.PageOptions): Promise<q.Page<ViolationRow>> {
    return adm.psaViolations(this, f, page);
  }
  async posture(f: PostureFilter, page?: q.PageOptions): Promise<q.Page<PostureRow>> {
    return adm.posture(this, f, page);
  }
  async latestAlertId(): Promise<number> {
    return alerts.latestAlertId(this);
  }
  holdRole(role: string, holder: string, ttlMs: number): Promise<boolean> {
    return book.holdRole(this, role, holder, ttlMs);
  }
  async countEvents(f: q.EventFilter): Promise<number> {
    return ev.countEvents(this, f);
  }
  async countAlerts(f: q.AlertFilter): Promise<number> {
    return alerts.countAlerts(this, f);
  }
  async eventTimeline(by: RollupDim, f: { since?: number; until?: number }): Promise<Timeline> {
    return agg.eventTimeline(this, by, f);
  }
  async alertTimeline(f: { since?: number; until?: number }): Promise<Timeline> {
    return agg.alertTimeline(this, f);
  }
  async overview(): Promise<StoreOverview> {
    const [span, alertCount, deadLetters, positions] = await Promise.all([
      agg.fieldSpan(this, this.names.events, 'ts'),
      count(this, this.names.alerts),
      book.countDeadLetters(this),
      book.positions(this),
    ]);
    return { ...(span ? { oldestEvent: span.a, newestEvent: span.b } : {}), alerts: alertCount, deadLetters, positions };
  }
  async deadLetters(limit?: number): Promise<q.DeadLetterRow[]> {
    return book.deadLetters(this, limit);
  }
  async counts(): Promise<{ events: number; alerts: number; deadLetters: number }> {
    const [events, alertCount, deadLetters] = await Promise.all([count(this, this.names.events), count(this, this.names.alerts), book.countDeadLetters(this)]);
    return { events, alerts: alertCount, deadLetters };
  }
  async position(source: string): Promise<string | undefined> {
    return (await book.position(this, source))?.position;
  }
  async positionUpdated(source: string): Promise<number | undefined> {
    return (await book.position(this, source))?.updated;
  }
  async sizeBytes(): Promise<number> {
    const r = await this.conn.request<{ _all?: { total?: { store?: { size_in_bytes?: number } } } }>('GET', `/${this.names.prefix}-*/_stats/store`, undefined, {
      query: { ignore_unavailable: 'true', allow_no_indices: 'true' },
    });
    return r.body._all?.total?.store?.size_in_bytes ?? 0;
  }
  async check(): Promise<void> {
    const r = await this.conn.request<{ status: string }>('GET', '/_cluster/health', undefined, { query: { timeout: '5s' } });
    if (r.body.status === 'red') throw new StoreUnavailableError(`OpenSearch at ${this.conn.where} is red: some shards are unassigned`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.pits.closeAll();
    if (!this.opts.readonly) {
      // A closed writer finishes nothing more: its lease goes, so its marks are other writers' to detect.
      await this.refresh().catch(() => undefined);
      await book.dropLease(this, this.owner).catch(() => undefined);
    }
    await this.conn.close();
  }
}

function refusedEvent(d: EventDoc, reason: string): DeadLetter {
  return {
    source: 'opensearch',
    where: `${d.cluster}/${d.auditID}/${d.stage}`,
    reason: `OpenSearch refused the event: ${reason}`,
    data: d.raw,
  };
}
