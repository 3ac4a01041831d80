import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants, inflateRawSync } from 'node:zlib';
import { newRedactionKey } from '../events/redact.js';
import type { NormalisedEvent } from '../events/types.js';
import { SEVERITIES, type Alert } from '../detect/alert.js';
import { encodeAuditID } from './audit-id.js';
import { AuditIDRuns } from './audit-id-index.js';
import { posture, psaViolations, type PostureFilter, type PostureRow, type ViolationFilter, type ViolationRow } from './admission-queries.js';
import { dropAdmission, insertAdmission } from './admission-write.js';
import { alertEventIndexes, type BatchTail, type BatchWriter, type InsertResult, type PendingBatch } from './batch.js';
import * as q from './queries.js';
import { alertTimeline, eventTimeline, type Timeline } from './timeline.js';
import {
  FieldReader,
  N_CAT,
  N_CLUSTER,
  N_CODE,
  N_DECISION,
  N_GROUP,
  N_GROUPS,
  N_IMP,
  N_IP,
  N_LEVEL,
  N_NAMESPACE,
  N_RESOURCE,
  N_STAGE,
  N_TIME,
  N_UA,
  N_USER,
  N_VERB,
  N_VERSION,
  NUL,
  NUM_FIELDS,
  toRecords,
  type EventRecords,
} from './records.js';
import { LIVE_OWNERS, ownerAlive } from './owners.js';
import { BLOB_CODECS, migrate, ROLLUP_DIMS, STAGE_CODES, type RollupDim } from './schema.js';
import type { AuditStore, CommittedAlert, StoreOptions, StoreOverview } from './store.js';

interface OpenBatch {
  /** Per event of the batch, its row id when it was new, else 0. */
  eventIds: number[];
  /** The batch's blob when some event was new (else 0), and its rollup counts (undone by discard). */
  blob: number;
  roll: Map<number, number>;
}

const HOUR_US = 3_600_000_000;
/**
 * Brotli at quality 1: on batches of audit log lines measured 7.4% of the input at ~1.1 GB/s, against 9.2% at
 * ~420 MB/s for deflate at level 1 (the codec before; those blobs still read). Decompression runs at the same speed.
 */
const COMPRESSION_QUALITY = 1;
/**
 * The SQLite store: one writer connection (this object), WAL, prepared statements made once. A batch takes two
 * transactions (see BatchWriter): its events, marked pending detection; then its alerts, dead letters and the
 * source position, clearing the mark.
 */
export class SqliteStore implements AuditStore, BatchWriter {
  readonly db: Database.Database;
  readonly path: string;
  private dictCache = new Map<string, number>();
  private dictRev = new Map<number, string>();
  private readonly groupWindowUs: number;
  private readonly deadLetterMax: number;
  private stmts!: ReturnType<SqliteStore['prepare']>;
  readonly redactionKey: Buffer;
  /** The auditID index's runs (writer only). */
  readonly auditIDs: AuditIDRuns | undefined;
  /** This writer's name on its pending-detection marks: "pid:instance". */
  readonly owner = `${process.pid}:${randomUUID()}`;

  constructor(path: string, opts: StoreOptions = {}) {
    this.path = path;
    if (path !== ':memory:' && !opts.readonly) mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path, { readonly: !!opts.readonly, fileMustExist: !!opts.readonly });
    this.groupWindowUs = (opts.alertGroupWindowMs ?? 600_000) * 1000;
    this.deadLetterMax = opts.deadLetterMaxBytes ?? 64 * 1024;
    if (!opts.readonly) {
      // 8 KiB pages: measured faster for this insert pattern than the 4 KiB default (a new store only).
      this.db.pragma('page_size = 8192');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('auto_vacuum = INCREMENTAL');
      // Checkpoints every 8,000 WAL pages (64 MiB) instead of SQLite's 1,000: an index page rewritten by several
      // commits between two checkpoints reaches the database file once. Bytes written per byte of log on 1 M mixed
      // events (with commit groups of ~3-4 MiB): 1,000 pages 1.69, 4,000 1.44, 8,000 1.36 (target < 1.5).
      this.db.pragma('wal_autocheckpoint = 8000');
      migrate(this.db);
      // After the migrations (migration 6 sorts every event's auditID, which must spill to files): the writer's
      // temporary data is bounded (a statement's journal, a merge slice's sort of ~8,192 entries), and kept in files it
      // was written to disk for nothing: 72 bytes per event on 1 M events (benchmarks/NOTES.md, auditID runs).
      this.db.pragma('temp_store = MEMORY');
    }
    // Bounded page caches (KiB): ingest of a 1 GB log stays under 300 MB resident. The writer touches the right edge
    // of its indexes and a page per active user: 8 MiB measured as fast as 16.
    this.db.pragma('cache_size = -8192');
    this.db.pragma('busy_timeout = 5000');
    this.stmts = this.prepare();
    if (!opts.readonly) LIVE_OWNERS.add(this.owner);
    if (!opts.readonly) this.auditIDs = new AuditIDRuns(this.db);
    this.redactionKey = opts.readonly ? Buffer.alloc(32) : this.loadRedactionKey();
  }

  private prepare() {
    const db = this.db;
    // A reader may open a store an older kaudit wrote and no newer writer has migrated: its blobs are all deflate.
    const codecs = (db.pragma('user_version', { simple: true }) as number) >= 3;
    return {
      dictGet: db.prepare('SELECT id FROM dict WHERE value = ?').pluck(),
      dictGetValue: db.prepare('SELECT value FROM dict WHERE id = ?').pluck(),
      dictPut: db.prepare('INSERT INTO dict (value) VALUES (?)'),
      insertEvent: db.prepare(`INSERT OR IGNORE INTO events (time, stage, audit_id, cluster, verb, user, groups, imp_user,
        source_ip, user_agent, api_group, api_version, resource, subresource, namespace, name, code, decision, level,
        command, container, blob, blob_idx, cat) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
      insertBlob: db.prepare(
        codecs ? `INSERT INTO blobs (first_event, last_event, max_time, data, codec) VALUES (0, 0, ?, ?, ${BLOB_CODECS.brotli})` : 'SELECT 1 WHERE 0',
      ),
      finishBlob: db.prepare('UPDATE blobs SET first_event = ?, last_event = ? WHERE id = ?'),
      deleteBlob: db.prepare('DELETE FROM blobs WHERE id = ?'),
      rollup: db.prepare('INSERT INTO rollup (hour, dim, value, n) VALUES (?, ?, ?, ?) ON CONFLICT (hour, dim, value) DO UPDATE SET n = n + excluded.n'),
      openGroup: db.prepare('SELECT id, count, last_time FROM alerts WHERE group_key = ? AND last_time >= ? ORDER BY last_time DESC LIMIT 1'),
      bumpGroup: db.prepare('UPDATE alerts SET count = count + 1, last_time = max(last_time, ?), last_event_id = ? WHERE id = ?'),
      insertAlert: db.prepare(`INSERT OR IGNORE INTO alerts (rule, severity, cluster, group_key, first_time, last_time, count, audit_id, stage,
        event_id, last_event_id, user, namespace, body) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)`),
      putPosition: db.prepare(
        'INSERT INTO positions (source, position, updated) VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated = excluded.updated',
      ),
      getPosition: db.prepare('SELECT position FROM positions WHERE source = ?').pluck(),
      deadLetter: db.prepare('INSERT INTO dead_letters (received, source, position, reason, size, data) VALUES (?, ?, ?, ?, ?, ?)'),
      blobData: db.prepare(codecs ? 'SELECT data, codec FROM blobs WHERE id = ?' : `SELECT data, ${BLOB_CODECS.deflateRaw} AS codec FROM blobs WHERE id = ?`),
      metaGet: db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      metaPut: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    };
  }

  private loadRedactionKey(): Buffer {
    const k = this.stmts.metaGet.get('redaction_key') as Buffer | undefined;
    if (k) return k;
    const key = newRedactionKey();
    this.stmts.metaPut.run('redaction_key', key);
    return key;
  }

  /** Interned id of a string (writer side; creates it). */
  intern(value: string): number {
    let id = this.dictCache.get(value);
    if (id !== undefined) return id;
    id = this.stmts.dictGet.get(value) as number | undefined;
    if (id === undefined) id = Number(this.stmts.dictPut.run(value).lastInsertRowid);
    // Bounded cache: names of the long tail (user agents with versions, IPs) must not grow memory without end.
    if (this.dictCache.size >= 200_000) this.dictCache.clear();
    this.dictCache.set(value, id);
    return id;
  }

  /** Interned id of a string if it exists (reader side), else undefined. */
  lookup(value: string): number | undefined {
    const c = this.dictCache.get(value);
    if (c !== undefined) return c;
    return this.stmts.dictGet.get(value) as number | undefined;
  }

  dictValue(id: number): string {
    let v = this.dictRev.get(id);
    if (v === undefined) {
      v = (this.stmts.dictGetValue.get(id) as string | undefined) ?? '';
      if (this.dictRev.size >= 100_000) this.dictRev.clear();
      this.dictRev.set(id, v);
    }
    return v;
  }

  /** Compresses a batch's raw JSON lines (UTF-8, joined by newlines) for its blob (codec BLOB_CODECS.brotli). */
  static compress(raw: Uint8Array): Buffer {
    return brotliCompressSync(raw, {
      params: { [zlibConstants.BROTLI_PARAM_QUALITY]: COMPRESSION_QUALITY, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: raw.length },
    });
  }

  /** One whole batch, insert to finish, for callers with no detection step between (tests, tools). */
  commitAll(events: NormalisedEvent[], tail: BatchTail): { stored: number; flags: boolean[]; alerts: Alert[] } {
    const { batch, flags } = this.insert(toRecords(events));
    const alerts = this.finish(batch, { alertEvents: alertEventIndexes(tail.alerts, events), ...tail });
    return { stored: flags.filter(Boolean).length, flags, alerts };
  }

  private batches = new Map<number, OpenBatch>();
  private markStmts: { put: Database.Statement; del: Database.Statement; others: Database.Statement } | undefined;
  /** The pending-detection marks' statements (writer only: a read-only connection never prepares them). */
  private marks() {
    return (this.markStmts ??= {
      put: this.db.prepare('INSERT INTO pending (blob, owner) VALUES (?, ?)'),
      del: this.db.prepare('DELETE FROM pending WHERE blob = ?'),
      others: this.db.prepare('SELECT 1 FROM pending WHERE owner != ? LIMIT 1').pluck(),
    });
  }
  private nextBatch = 1;

  /** Inserts a batch's events and commits them, marked pending detection; returns which were new. */
  insert(batch: EventRecords): InsertResult {
    const n = batch.count;
    const flags = new Array<boolean>(n).fill(false);
    const open: OpenBatch = { eventIds: new Array<number>(n).fill(0), blob: 0, roll: new Map() };
    if (n > 0) {
      this.write(() => {
        this.insertEvents(batch, flags, open);
        if (open.blob) this.marks().put.run(open.blob, this.owner);
      });
    }
    const id = this.nextBatch++;
    this.batches.set(id, open);
    if (this.grouped) {
      this.group.batches.push(id);
      this.group.events += n;
    }
    // Duplicates may be the resent events of a batch whose writer stopped before detecting it: say so, so the
    // pipeline takes that batch over (pending) before going on.
    const orphans = flags.includes(false) && (this.stranded.size > 0 || this.marks().others.get(this.owner) !== undefined) && this.orphanBlobs().length > 0;
    return { batch: id, flags, orphans };
  }

  /** Pending marks whose writer is gone: another process that has exited, or a closed SqliteStore of this process. */
  private orphanBlobs(): { blob: number; owner: string }[] {
    const rows = this.db.prepare('SELECT blob, owner FROM pending ORDER BY blob').all() as { blob: number; owner: string }[];
    return rows.filter((r) => (r.owner === this.owner ? this.stranded.has(r.blob) : !ownerAlive(r.owner)));
  }

  private insertEvents(batch: EventRecords, flags: boolean[], open: OpenBatch): void {
    const s = this.stmts;
    const n = batch.count;
    const nums = batch.nums;
    // The text fields are read in order from the joined string, not split into an array of the whole batch's fields
    // (that array would outlive young-generation collections while the batch is inserted).
    const next = new FieldReader(batch.text);
    const dict = batch.dict.split(NUL);
    // A typed array, so every batch's ids have the same shape (an array's element kind can vary between batches and
    // send the optimised loop below back to the interpreter).
    const ids = new Float64Array(dict.length);
    for (let j = 0; j < dict.length; j++) ids[j] = this.intern(dict[j]!);
    let maxTime = 0;
    for (let i = 0; i < n; i++) if (nums[i * NUM_FIELDS]! > maxTime) maxTime = nums[i * NUM_FIELDS]!;
    const blobId = Number(s.insertBlob.run(maxTime, SqliteStore.compress(batch.raw)).lastInsertRowid);
    const { eventIds, roll } = open;
    let first = 0;
    let last = 0;
    // One buffer for every row's auditID: SQLite copies a bound blob (better-sqlite3 binds with SQLITE_TRANSIENT).
    const idScratch = Buffer.allocUnsafe(16);
    for (let i = 0; i < n; i++) {
      const o = i * NUM_FIELDS;
      const stage = nums[o + N_STAGE]!;
      const user = ids[nums[o + N_USER]!]!;
      const verb = ids[nums[o + N_VERB]!]!;
      const resource = ids[nums[o + N_RESOURCE]!]!;
      const namespace = ids[nums[o + N_NAMESPACE]!]!;
      const sourceIP = ids[nums[o + N_IP]!]!;
      const cat = nums[o + N_CAT]!;
      // TEXT_FIELDS in packing order: auditID, subresource, name, command, container.
      const auditID = next.read();
      const subresource = next.read();
      const name = next.read();
      const command = next.read();
      const container = next.read();
      const r = s.insertEvent.run(
        nums[o + N_TIME],
        stage,
        encodeAuditID(auditID, idScratch),
        ids[nums[o + N_CLUSTER]!],
        verb,
        user,
        ids[nums[o + N_GROUPS]!],
        ids[nums[o + N_IMP]!],
        sourceIP,
        ids[nums[o + N_UA]!],
        ids[nums[o + N_GROUP]!],
        ids[nums[o + N_VERSION]!],
        resource,
        subresource,
        namespace,
        name,
        nums[o + N_CODE],
        nums[o + N_DECISION],
        nums[o + N_LEVEL],
        command || null,
        container || null,
        blobId,
        i,
        cat < 0 ? null : cat,
      );
      if (r.changes === 0) continue;
      const id = Number(r.lastInsertRowid);
      flags[i] = true;
      eventIds[i] = id;
      if (first === 0) first = id;
      last = id;
      if (stage === STAGE_CODES.ResponseComplete || stage === STAGE_CODES.Panic) {
        const hour = Math.floor(nums[o + N_TIME]! / HOUR_US);
        addRoll(roll, hour, ROLLUP_DIMS.user, user);
        addRoll(roll, hour, ROLLUP_DIMS.resource, resource);
        addRoll(roll, hour, ROLLUP_DIMS.verb, verb);
        addRoll(roll, hour, ROLLUP_DIMS.namespace, namespace);
        addRoll(roll, hour, ROLLUP_DIMS.sourceIP, sourceIP);
      }
    }
    if (first === 0) {
      s.deleteBlob.run(blobId);
      return;
    }
    s.finishBlob.run(first, last, blobId);
    this.auditIDs!.add(first, last, blobId);
    if (batch.admission) insertAdmission(this.db, batch.admission, eventIds, blobId);
    open.blob = blobId;
    this.applyRoll(roll, 1);
  }

  private applyRoll(roll: Map<number, number>, sign: 1 | -1): void {
    const drop = sign < 0 ? this.db.prepare('DELETE FROM rollup WHERE hour = ? AND dim = ? AND value = ? AND n <= 0') : undefined;
    for (const [k, c] of roll) {
      const hour = Math.floor(k / ROLL_HOUR);
      const rest = k - hour * ROLL_HOUR;
      this.stmts.rollup.run(hour, rest % 8, Math.floor(rest / 8), sign * c);
      drop?.run(hour, rest % 8, Math.floor(rest / 8));
    }
  }

  /** Adds the batch's alerts, dead letters and position, clears its pending mark, and commits. Returns the alerts that opened a new row. */
  finish(batch: number, b: BatchTail): Alert[] {
    const open = this.batches.get(batch);
    if (!open) {
      const lost = this.lost.get(batch);
      // A batch rolled back with its group fails with the group's cause, code included (SQLITE_FULL, ...).
      throw lost ? Object.assign(new Error(lost.message), { code: lost.code }) : new Error(`store: no batch ${batch} is open`);
    }
    this.batches.delete(batch);
    if (this.grouped && open.blob) this.group.closed.set(open.blob, batch);
    try {
      return this.write(() => {
        const alerts = this.writeTail(open, b);
        if (open.blob) this.marks().del.run(open.blob);
        return alerts;
      });
    } catch (e) {
      // Its own transaction failed (not grouped): the events stay committed and marked, and nobody finishes them.
      if (!this.grouped && open.blob) this.stranded.add(open.blob);
      throw e;
    }
  }

  /**
   * Blobs whose events were committed and whose finish (or discard) was then rolled back (a full disk): their pending
   * marks, owned by this live writer, would otherwise wait for its restart. They count as orphans (see orphanBlobs),
   * so the source's resent events, found to be duplicates, have them detected and finished now.
   */
  private stranded = new Set<number>();

  /**
   * Group commit (the writer thread's mode): insert, finish and discard write into one open transaction that
   * `commitGroup` commits, so a busy writer commits several batches at once. A commit's cost is mostly the pages it
   * writes, and consecutive batches dirty the same index pages (the right edge of the time index, a page per active
   * user), so fewer, larger commits write far less. Callers hold back acknowledgements until `commitGroup`
   * returns. A failure rolls the whole group back: its batches are lost (their finish fails), nothing is half-stored.
   */
  grouped = false;
  private group = { batches: [] as number[], events: 0, closed: new Map<number, number>() };
  private lost = new Map<number, { message: string; code?: string }>();

  /** Groups rolled back so far: a caller compares it before and after an operation to learn whether it took the group down. */
  groupAborts = 0;

  /** Events inserted since the last commit (group mode). */
  get uncommittedEvents(): number {
    return this.group.events;
  }

  /** Commits the open group; on failure rolls it back (see abortGroup) and throws. */
  commitGroup(): void {
    if (!this.db.inTransaction) return;
    try {
      this.db.exec('COMMIT');
    } catch (e) {
      this.abortGroup(e as Error);
      throw e;
    }
    this.group = { batches: [], events: 0, closed: new Map() };
  }

  /** Rolls back the open group: batches inserted in it are forgotten, and their finish reports why. */
  private abortGroup(cause: Error): void {
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.groupAborts++;
    if (this.lost.size > 1000) this.lost.clear();
    for (const id of this.group.batches) {
      this.batches.delete(id);
      this.lost.set(id, { message: `store: batch ${id} was rolled back with its transaction (${cause.message})`, code: (cause as { code?: string }).code });
    }
    // Finished or discarded in this group but inserted in an earlier, committed one: stranded (a batch inserted in
    // this group has no committed blob, and its id may be taken by the next batch's).
    for (const [blob, id] of this.group.closed) if (!this.group.batches.includes(id)) this.stranded.add(blob);
    this.group = { batches: [], events: 0, closed: new Map() };
  }

  /** Runs `fn` in a transaction of its own, or in the open group (group mode), rolling back on failure. */
  private write<T>(fn: () => T): T {
    if (this.grouped) {
      if (!this.db.inTransaction) this.db.exec('BEGIN IMMEDIATE');
      try {
        return fn();
      } catch (e) {
        this.abortGroup(e as Error);
        throw e;
      }
    }
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const r = fn();
      this.db.exec('COMMIT');
      return r;
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw e;
    }
  }

  /**
   * Keeps a named piece of state (JSON text, compressed) in place of the one kept before: `kaudit serve` saves its
   * detection state here when it stops.
   */
  saveState(name: string, json: string): void {
    this.write(() => this.stmts.metaPut.run(`state:${name}`, SqliteStore.compress(Buffer.from(json, 'utf8'))));
  }

  /**
   * The named state saved before, if any, removed as it is read: it describes the moment it was saved, and a process
   * that takes it and then stops without saving again must not leave it to be taken a second time.
   */
  takeState(name: string): string | undefined {
    const v = this.write(() => {
      const row = this.stmts.metaGet.get(`state:${name}`) as Buffer | undefined;
      if (row) this.db.prepare('DELETE FROM meta WHERE key = ?').run(`state:${name}`);
      return row;
    });
    // Decompressed after the row is gone: a damaged row is reported once, not kept to fail every start.
    return v === undefined ? undefined : brotliDecompressSync(v).toString('utf8');
  }

  /** Undoes an inserted batch (its detection failed): its events, blob, rollup counts and mark go. */
  discard(batch: number): void {
    const open = this.batches.get(batch);
    if (!open) return;
    this.batches.delete(batch);
    if (!open.blob) return;
    if (this.grouped) this.group.closed.set(open.blob, batch);
    this.write(() => {
      // A batch's events are the rowid range its blob records: no scan of the table.
      const range = this.db.prepare('SELECT first_event, last_event FROM blobs WHERE id = ?').get(open.blob) as { first_event: number; last_event: number };
      this.auditIDs!.forget(range.first_event, range.last_event, open.blob);
      this.db
        .prepare(
          'DELETE FROM events WHERE id BETWEEN (SELECT first_event FROM blobs WHERE id = ?) AND (SELECT last_event FROM blobs WHERE id = ?) AND blob = ?',
        )
        .run(open.blob, open.blob, open.blob);
      this.stmts.deleteBlob.run(open.blob);
      dropAdmission(this.db, open.blob);
      this.marks().del.run(open.blob);
      this.applyRoll(open.roll, -1);
    });
  }

  /**
   * Takes over the batches whose events were committed but whose detection never finished because their writer
   * stopped (see orphanBlobs), and hands them back for detection; `finish` then completes them as usual.
   */
  pending(): PendingBatch[] {
    this.commitGroup();
    const out: PendingBatch[] = [];
    const claim = this.db.prepare('UPDATE pending SET owner = ? WHERE blob = ? AND owner = ?');
    const blobs = this.db
      .transaction(() =>
        this.orphanBlobs()
          .filter((r) => claim.run(this.owner, r.blob, r.owner).changes === 1)
          .map((r) => r.blob),
      )
      .immediate();
    for (const b of blobs) this.stranded.delete(b);
    const rowsOf = this.db.prepare(
      'SELECT id, blob_idx, cluster, audit_id, stage FROM events WHERE id BETWEEN (SELECT first_event FROM blobs WHERE id = ?) AND (SELECT last_event FROM blobs WHERE id = ?) AND blob = ? ORDER BY id',
    );
    for (const blob of blobs) {
      const lines = this.blobLines(blob);
      const rows = rowsOf.all(blob, blob, blob) as { id: number; blob_idx: number; cluster: number; audit_id: Buffer | string; stage: number }[];
      const open: OpenBatch = { eventIds: [], blob, roll: new Map() };
      const events: PendingBatch['events'] = [];
      for (const r of rows) {
        const line = lines[r.blob_idx];
        if (line === undefined) continue;
        open.eventIds.push(r.id);
        events.push({ cluster: this.dictValue(r.cluster), line });
      }
      const id = this.nextBatch++;
      this.batches.set(id, open);
      out.push({ batch: id, events });
    }
    return out;
  }

  private writeTail(open: OpenBatch, b: BatchTail): Alert[] {
    const s = this.stmts;
    const { eventIds } = open;
    const newAlerts: Alert[] = [];
    for (let i = 0; i < b.alerts.length; i++) {
      const a = b.alerts[i]!;
      const evIdx = b.alertEvents?.[i] ?? -1;
      const eventId = evIdx >= 0 ? eventIds[evIdx] || null : null;
      const open = s.openGroup.get(a.groupKey, a.timeMicros - this.groupWindowUs) as { id: number } | undefined;
      if (open) {
        s.bumpGroup.run(a.timeMicros, eventId, open.id);
        continue;
      }
      const row = { ...a };
      delete row.id;
      const r = s.insertAlert.run(
        a.rule,
        SEVERITIES.indexOf(a.severity),
        a.cluster,
        a.groupKey,
        a.timeMicros,
        a.timeMicros,
        a.auditID,
        a.stage,
        eventId,
        eventId,
        a.user,
        a.objectRef?.namespace ?? '',
        JSON.stringify(row),
      );
      if (r.changes === 0) continue;
      newAlerts.push({ ...a, id: Number(r.lastInsertRowid) });
    }
    const now = Date.now();
    for (const d of b.deadLetters) {
      const buf = d.data === undefined ? null : typeof d.data === 'string' ? Buffer.from(d.data, 'utf8') : d.data;
      s.deadLetter.run(now, d.source, d.where, d.reason, buf ? buf.length : 0, buf ? buf.subarray(0, this.deadLetterMax) : null);
    }
    if (b.checkpoint) s.putPosition.run(b.checkpoint.source, b.checkpoint.position, now);
    return newAlerts;
  }

  async position(source: string): Promise<string | undefined> {
    return this.positionNow(source);
  }

  /** position, synchronously (this kind can: tests and tools that hold a SqliteStore). */
  positionNow(source: string): string | undefined {
    return this.stmts.getPosition.get(source) as string | undefined;
  }

  /** When a source's position was last committed (ms since the epoch). */
  async positionUpdated(source: string): Promise<number | undefined> {
    return this.db.prepare('SELECT updated FROM positions WHERE source = ?').pluck().get(source) as number | undefined;
  }

  // StoreReader: the analyst's queries (queries.ts), alerts, dead letters and health.

  async queryEvents(f: q.EventFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return q.queryEvents(this, f, page);
  }

  async getEvent(id: number): Promise<q.EventRow | undefined> {
    return q.getEvent(this, id);
  }

  async execSessions(f: q.AnalystFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return q.execSessions(this, f, page);
  }

  async secretReads(f: q.AnalystFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return q.secretReads(this, f, page);
  }

  async rbacChanges(f: q.AnalystFilter, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return q.rbacChanges(this, f, page);
  }

  async userActivity(f: q.AnalystFilter & { user: string }, page?: q.PageOptions): Promise<q.Page<q.EventRow>> {
    return q.userActivity(this, f, page);
  }

  async psaViolations(f: ViolationFilter, page?: q.PageOptions): Promise<q.Page<ViolationRow>> {
    return psaViolations(this, f, page);
  }

  async posture(f: PostureFilter, page?: q.PageOptions): Promise<q.Page<PostureRow>> {
    return posture(this, f, page);
  }

  async top(dim: RollupDim, f: { since?: number; until?: number; limit?: number }): Promise<q.TopEntry[]> {
    return q.top(this, dim, f);
  }

  async queryAlerts(f: q.AlertFilter, page?: q.PageOptions): Promise<q.Page<q.AlertRow>> {
    return q.queryAlerts(this, f, page);
  }

  async getAlert(id: number): Promise<q.AlertRow | undefined> {
    return q.getAlert(this, id);
  }

  async alertsAfter(f: q.AlertFilter & { afterId: number }, limit: number): Promise<q.AlertRow[]> {
    return q.alertsAfter(this, f, limit);
  }

  private committedStmt: Database.Statement | undefined;
  async committedAlertsAfter(afterId: number, limit: number): Promise<CommittedAlert[]> {
    this.committedStmt ??= this.db.prepare('SELECT id, body FROM alerts WHERE id > ? ORDER BY id LIMIT ?');
    return this.committedStmt.all(afterId, limit) as CommittedAlert[];
  }

  async latestAlertId(): Promise<number> {
    return (this.db.prepare('SELECT max(id) FROM alerts').pluck().get() as number | null) ?? 0;
  }

  async countEvents(f: q.EventFilter): Promise<number> {
    return q.countEvents(this, f);
  }

  async countAlerts(f: q.AlertFilter): Promise<number> {
    return q.countAlerts(this, f);
  }

  async eventTimeline(by: RollupDim, f: { since?: number; until?: number }): Promise<Timeline> {
    return eventTimeline(this, by, f);
  }

  async alertTimeline(f: { since?: number; until?: number }): Promise<Timeline> {
    return alertTimeline(this, f);
  }

  async overview(): Promise<StoreOverview> {
    const span = this.db.prepare('SELECT min(time) AS oldest, max(time) AS newest FROM events').get() as { oldest: number | null; newest: number | null };
    const positions = this.db.prepare('SELECT source, updated FROM positions ORDER BY source LIMIT 1000').all() as { source: string; updated: number }[];
    const one = (sql: string) => this.db.prepare(sql).pluck().get() as number;
    return {
      ...(span.oldest !== null ? { oldestEvent: span.oldest } : {}),
      ...(span.newest !== null ? { newestEvent: span.newest } : {}),
      alerts: one('SELECT count(*) FROM alerts'),
      deadLetters: one('SELECT count(*) FROM dead_letters'),
      positions,
    };
  }

  async deadLetters(limit?: number): Promise<q.DeadLetterRow[]> {
    return q.deadLetters(this, limit);
  }

  async counts(): Promise<{ events: number; alerts: number; deadLetters: number }> {
    return q.counts(this);
  }

  async check(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  /** The raw JSON lines of a blob (decompressed), cached for a few recent blobs. */
  private blobCache = new Map<number, string[]>();
  blobLines(blobId: number): string[] {
    let lines = this.blobCache.get(blobId);
    if (lines) return lines;
    const row = this.stmts.blobData.get(blobId) as { data: Buffer; codec: number } | undefined;
    if (!row) return [];
    const raw = row.codec === BLOB_CODECS.brotli ? brotliDecompressSync(row.data) : inflateRawSync(row.data);
    lines = raw.toString('utf8').split('\n');
    if (this.blobCache.size >= 32) this.blobCache.delete(this.blobCache.keys().next().value!);
    this.blobCache.set(blobId, lines);
    return lines;
  }

  rawEvent(blobId: number, idx: number): string | undefined {
    return this.blobLines(blobId)[idx];
  }

  /** Bytes the database uses (pages in use, excluding free pages), and the WAL aside. */
  async sizeBytes(): Promise<number> {
    return this.bytesInUse();
  }

  /** sizeBytes, synchronously (retention runs on the writer thread between writes). */
  bytesInUse(): number {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * pageSize;
  }

  close(): void {
    this.commitGroup();
    LIVE_OWNERS.delete(this.owner);
    this.db.close();
  }
}

/** Rollup keys packed in one number: hour * 2^27 + value id * 8 + dim (exact below 2^53 for 2^26 hours). */
const ROLL_HOUR = 2 ** 27;

function addRoll(m: Map<number, number>, hour: number, dim: number, value: number): void {
  if (value >= 2 ** 24) return; // beyond the packing range: such a long tail is not a "top" entry anyway
  const k = hour * ROLL_HOUR + value * 8 + dim;
  m.set(k, (m.get(k) ?? 0) + 1);
}
