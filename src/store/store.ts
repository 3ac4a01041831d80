import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { deflateRaw, inflateRawSync } from 'node:zlib';
import { promisify } from 'node:util';
import { newRedactionKey } from '../events/redact.js';
import type { NormalisedEvent } from '../events/types.js';
import { SEVERITIES, type Alert } from '../detect/alert.js';
import { encodeAuditID } from './audit-id.js';
import { DECISION_CODES, LEVEL_CODES, migrate, ROLLUP_DIMS, STAGE_CODES } from './schema.js';

const deflateRawAsync = promisify(deflateRaw);

export interface StoreOptions {
  /** Alerts of one rule with the same group key within this window are counted on one row (default 10 minutes). */
  alertGroupWindowMs?: number;
  /** Longest part of a bad record kept in the dead-letter table (default 64 KiB). */
  deadLetterMaxBytes?: number;
  readonly?: boolean;
}

export interface DeadLetter {
  source: string;
  where: string;
  reason: string;
  data?: string | Buffer;
}

export interface Checkpoint {
  source: string;
  position: string;
}

/** A batch ready to commit: raw blob compressed outside the transaction. */
export interface PreparedBatch {
  events: NormalisedEvent[];
  blob: Buffer | null;
  alerts: Alert[];
  deadLetters: DeadLetter[];
  checkpoint?: Checkpoint;
}

export interface CommitResult {
  stored: number;
  duplicates: number;
  /** Alerts that opened a new alert row, with their ids (repeats folded into an open group are not listed). */
  newAlerts: Alert[];
  /** Store ids of `events`, in order (0 for a duplicate). */
  eventIds: number[];
}

const HOUR_US = 3_600_000_000;
const FINAL_STAGES = new Set([STAGE_CODES.ResponseComplete, STAGE_CODES.Panic]);

/**
 * The SQLite store: one writer connection (this object), WAL, prepared statements made once, one transaction per
 * batch holding its events, alerts, dead letters and the source position together.
 */
export class Store {
  readonly db: Database.Database;
  readonly path: string;
  private dictCache = new Map<string, number>();
  private dictRev = new Map<number, string>();
  private readonly groupWindowUs: number;
  private readonly deadLetterMax: number;
  private stmts!: ReturnType<Store['prepare']>;
  private readonly commitTxn: (b: PreparedBatch) => CommitResult;
  readonly redactionKey: Buffer;

  constructor(path: string, opts: StoreOptions = {}) {
    this.path = path;
    if (path !== ':memory:' && !opts.readonly) mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path, { readonly: !!opts.readonly, fileMustExist: !!opts.readonly });
    this.groupWindowUs = (opts.alertGroupWindowMs ?? 600_000) * 1000;
    this.deadLetterMax = opts.deadLetterMaxBytes ?? 64 * 1024;
    if (!opts.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('auto_vacuum = INCREMENTAL');
      migrate(this.db);
    }
    this.db.pragma('cache_size = -65536');
    this.db.pragma('busy_timeout = 5000');
    this.stmts = this.prepare();
    this.redactionKey = opts.readonly ? Buffer.alloc(32) : this.loadRedactionKey();
    this.commitTxn = this.db.transaction((b: PreparedBatch) => this.writeBatch(b));
  }

  private prepare() {
    const db = this.db;
    return {
      dictGet: db.prepare('SELECT id FROM dict WHERE value = ?').pluck(),
      dictGetValue: db.prepare('SELECT value FROM dict WHERE id = ?').pluck(),
      dictPut: db.prepare('INSERT INTO dict (value) VALUES (?)'),
      exists: db.prepare('SELECT 1 FROM events WHERE time = ? AND audit_id = ? AND stage = ? AND cluster = ?').pluck(),
      insertEvent: db.prepare(`INSERT OR IGNORE INTO events (time, stage, audit_id, cluster, verb, user, groups, imp_user,
        source_ip, user_agent, api_group, api_version, resource, subresource, namespace, name, code, decision, level,
        command, container, blob, blob_idx) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
      insertBlob: db.prepare('INSERT INTO blobs (first_event, last_event, max_time, data) VALUES (0, 0, ?, ?)'),
      finishBlob: db.prepare('UPDATE blobs SET first_event = ?, last_event = ? WHERE id = ?'),
      deleteBlob: db.prepare('DELETE FROM blobs WHERE id = ?'),
      rollup: db.prepare('INSERT INTO rollup (hour, dim, value, n) VALUES (?, ?, ?, ?) ON CONFLICT (hour, dim, value) DO UPDATE SET n = n + excluded.n'),
      openGroup: db.prepare('SELECT id, count, last_time FROM alerts WHERE group_key = ? AND last_time >= ? ORDER BY last_time DESC LIMIT 1'),
      bumpGroup: db.prepare('UPDATE alerts SET count = count + 1, last_time = max(last_time, ?), last_event_id = ? WHERE id = ?'),
      insertAlert: db.prepare(`INSERT OR IGNORE INTO alerts (rule, severity, cluster, group_key, first_time, last_time, count, audit_id, stage,
        event_id, last_event_id, user, namespace, body) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)`),
      putPosition: db.prepare('INSERT INTO positions (source, position, updated) VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated = excluded.updated'),
      getPosition: db.prepare('SELECT position FROM positions WHERE source = ?').pluck(),
      deadLetter: db.prepare('INSERT INTO dead_letters (received, source, position, reason, size, data) VALUES (?, ?, ?, ?, ?, ?)'),
      blobData: db.prepare('SELECT data FROM blobs WHERE id = ?').pluck(),
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

  /** Which of these events are already stored (or repeated earlier in the same list)? Runs outside any transaction. */
  duplicates(events: readonly NormalisedEvent[]): boolean[] {
    const seen = new Set<string>();
    const out = new Array<boolean>(events.length);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const k = `${e.cluster}\u0000${e.auditID}\u0000${e.stage}`;
      if (seen.has(k)) {
        out[i] = true;
        continue;
      }
      seen.add(k);
      const cluster = this.lookup(e.cluster);
      out[i] = cluster !== undefined && this.stmts.exists.get(e.timeMicros, encodeAuditID(e.auditID), STAGE_CODES[e.stage], cluster) !== undefined;
    }
    return out;
  }

  /** Compresses the raw JSON of a batch's events; done before the transaction, off the main thread. */
  static async compressRaw(events: readonly NormalisedEvent[]): Promise<Buffer | null> {
    if (events.length === 0) return null;
    let s = events[0]!.raw;
    for (let i = 1; i < events.length; i++) s += '\n' + events[i]!.raw;
    return deflateRawAsync(Buffer.from(s, 'utf8'), { level: 6, memLevel: 9 });
  }

  /** Commits a batch in one transaction. */
  commit(batch: PreparedBatch): CommitResult {
    return this.commitTxn(batch);
  }

  private writeBatch(b: PreparedBatch): CommitResult {
    const s = this.stmts;
    const eventIds: number[] = new Array(b.events.length).fill(0);
    let stored = 0;
    let blobId = 0;
    let first = 0;
    let last = 0;
    if (b.events.length > 0 && b.blob) {
      let maxTime = 0;
      for (const e of b.events) if (e.timeMicros > maxTime) maxTime = e.timeMicros;
      blobId = Number(s.insertBlob.run(maxTime, b.blob).lastInsertRowid);
      const roll = new Map<number, number>();
      for (let i = 0; i < b.events.length; i++) {
        const e = b.events[i]!;
        const r = s.insertEvent.run(
          e.timeMicros, STAGE_CODES[e.stage], encodeAuditID(e.auditID), this.intern(e.cluster), this.intern(e.verb),
          this.intern(e.user), this.intern(e.groups.join(',')), this.intern(e.impersonatedUser), this.intern(e.sourceIP),
          this.intern(e.userAgent), this.intern(e.apiGroup), this.intern(e.apiVersion), this.intern(e.resource),
          e.subresource, this.intern(e.namespace), e.name, e.code, DECISION_CODES[e.decision], LEVEL_CODES[e.level],
          e.command || null, e.container || null, blobId, i,
        );
        if (r.changes === 0) continue;
        const id = Number(r.lastInsertRowid);
        eventIds[i] = id;
        if (first === 0) first = id;
        last = id;
        stored++;
        if (FINAL_STAGES.has(STAGE_CODES[e.stage] as 2 | 3)) {
          const hour = Math.floor(e.timeMicros / HOUR_US);
          addRoll(roll, hour, ROLLUP_DIMS.user, this.intern(e.user));
          addRoll(roll, hour, ROLLUP_DIMS.resource, this.intern(e.resource));
          addRoll(roll, hour, ROLLUP_DIMS.verb, this.intern(e.verb));
          addRoll(roll, hour, ROLLUP_DIMS.namespace, this.intern(e.namespace));
          addRoll(roll, hour, ROLLUP_DIMS.sourceIP, this.intern(e.sourceIP));
        }
      }
      if (stored === 0) s.deleteBlob.run(blobId);
      else s.finishBlob.run(first, last, blobId);
      for (const [k, n] of roll) {
        const hour = Math.floor(k / ROLL_HOUR);
        const rest = k - hour * ROLL_HOUR;
        s.rollup.run(hour, rest % 8, Math.floor(rest / 8), n);
      }
    }
    const newAlerts: Alert[] = [];
    const idxByAudit = new Map<string, number>();
    for (let i = 0; i < b.events.length; i++) idxByAudit.set(`${b.events[i]!.cluster}\u0000${b.events[i]!.auditID}\u0000${b.events[i]!.stage}`, i);
    for (const a of b.alerts) {
      const evIdx = idxByAudit.get(`${a.cluster}\u0000${a.auditID}\u0000${a.stage}`);
      const eventId = evIdx !== undefined ? eventIds[evIdx] || null : null;
      const open = s.openGroup.get(a.groupKey, a.timeMicros - this.groupWindowUs) as { id: number } | undefined;
      if (open) {
        s.bumpGroup.run(a.timeMicros, eventId, open.id);
        continue;
      }
      const row = { ...a };
      delete row.id;
      const r = s.insertAlert.run(
        a.rule, SEVERITIES.indexOf(a.severity), a.cluster, a.groupKey, a.timeMicros, a.timeMicros, a.auditID, a.stage,
        eventId, eventId, a.user, a.objectRef?.namespace ?? '', JSON.stringify(row),
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
    return { stored, duplicates: b.events.length - stored, newAlerts, eventIds };
  }

  position(source: string): string | undefined {
    return this.stmts.getPosition.get(source) as string | undefined;
  }

  /** When a source's position was last committed (ms since the epoch). */
  positionUpdated(source: string): number | undefined {
    return this.db.prepare('SELECT updated FROM positions WHERE source = ?').pluck().get(source) as number | undefined;
  }

  /** The raw JSON lines of a blob (decompressed), cached for a few recent blobs. */
  private blobCache = new Map<number, string[]>();
  blobLines(blobId: number): string[] {
    let lines = this.blobCache.get(blobId);
    if (lines) return lines;
    const data = this.stmts.blobData.get(blobId) as Buffer | undefined;
    if (!data) return [];
    lines = inflateRawSync(data).toString('utf8').split('\n');
    if (this.blobCache.size >= 32) this.blobCache.delete(this.blobCache.keys().next().value!);
    this.blobCache.set(blobId, lines);
    return lines;
  }

  rawEvent(blobId: number, idx: number): string | undefined {
    return this.blobLines(blobId)[idx];
  }

  /** Bytes the database uses (pages in use, excluding free pages), and the WAL aside. */
  sizeBytes(): number {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * pageSize;
  }

  close(): void {
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
