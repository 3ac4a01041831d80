import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { deflateRawSync, inflateRawSync, type ZlibOptions } from 'node:zlib';
import { newRedactionKey } from '../events/redact.js';
import type { NormalisedEvent } from '../events/types.js';
import { SEVERITIES, type Alert } from '../detect/alert.js';
import { encodeAuditID } from './audit-id.js';
import { CATEGORY, DECISION_CODES, LEVEL_CODES, migrate, ROLLUP_DIMS, STAGE_CODES } from './schema.js';


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

/**
 * A batch's events as the writer stores them, packed to cross to the writer thread cheaply: numbers in one
 * Float64Array (transferred, not copied), text in two NUL-joined strings. Low-cardinality strings (users, groups,
 * user agents, IPs, verbs, resources, namespaces, clusters) appear once in `dict`, and rows hold their index, so the
 * writer interns each distinct value once per batch.
 */
export interface EventRecords {
  count: number;
  /** NUM_FIELDS numbers per event, see the N_* offsets. */
  nums: Float64Array;
  /** TEXT_FIELDS strings per event (auditID, subresource, name, command, container), NUL-joined. */
  text: string;
  /** Distinct low-cardinality values, NUL-joined. */
  dict: string;
}

const N_TIME = 0, N_STAGE = 1, N_CLUSTER = 2, N_VERB = 3, N_USER = 4, N_GROUPS = 5, N_IMP = 6, N_IP = 7, N_UA = 8, N_GROUP = 9,
  N_VERSION = 10, N_RESOURCE = 11, N_NAMESPACE = 12, N_CODE = 13, N_DECISION = 14, N_LEVEL = 15, N_CAT = 16;
const NUM_FIELDS = 17;
const TEXT_FIELDS = 5;
const NUL = '\u0000';

function noNul(v: string): string {
  return v.indexOf(NUL) < 0 ? v : v.replaceAll(NUL, '\ufffd');
}

const RBAC_RESOURCES = new Set(['roles', 'clusterroles', 'rolebindings', 'clusterrolebindings']);
const WRITE_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
const READ_VERBS = new Set(['get', 'list', 'watch']);

/** The analyst category of an event (see CATEGORY), or null. */
export function categoryOf(e: NormalisedEvent): number | null {
  if (e.resource === 'pods' && (e.subresource === 'exec' || e.subresource === 'attach' || e.subresource === 'portforward') && e.apiGroup === '') return CATEGORY.exec;
  if (e.resource === 'secrets' && e.subresource === '' && e.apiGroup === '' && READ_VERBS.has(e.verb)) return CATEGORY.secretRead;
  if (e.apiGroup === 'rbac.authorization.k8s.io' && RBAC_RESOURCES.has(e.resource) && WRITE_VERBS.has(e.verb)) return CATEGORY.rbacChange;
  return null;
}

export function toRecords(events: readonly NormalisedEvent[]): EventRecords {
  const dict: string[] = [];
  const index = new Map<string, number>();
  const d = (v: string): number => {
    let i = index.get(v);
    if (i === undefined) {
      i = dict.length;
      dict.push(noNul(v));
      index.set(v, i);
    }
    return i;
  };
  const nums = new Float64Array(events.length * NUM_FIELDS);
  const text: string[] = new Array(events.length * TEXT_FIELDS);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const o = i * NUM_FIELDS;
    nums[o + N_TIME] = e.timeMicros;
    nums[o + N_STAGE] = STAGE_CODES[e.stage];
    nums[o + N_CLUSTER] = d(e.cluster);
    nums[o + N_VERB] = d(e.verb);
    nums[o + N_USER] = d(e.user);
    nums[o + N_GROUPS] = d(e.groups.length === 0 ? '' : e.groups.length === 1 ? e.groups[0]! : e.groups.join(','));
    nums[o + N_IMP] = d(e.impersonatedUser);
    nums[o + N_IP] = d(e.sourceIP);
    nums[o + N_UA] = d(e.userAgent);
    nums[o + N_GROUP] = d(e.apiGroup);
    nums[o + N_VERSION] = d(e.apiVersion);
    nums[o + N_RESOURCE] = d(e.resource);
    nums[o + N_NAMESPACE] = d(e.namespace);
    nums[o + N_CODE] = e.code;
    nums[o + N_DECISION] = DECISION_CODES[e.decision];
    nums[o + N_LEVEL] = LEVEL_CODES[e.level];
    nums[o + N_CAT] = categoryOf(e) ?? -1;
    const t = i * TEXT_FIELDS;
    text[t] = noNul(e.auditID);
    text[t + 1] = noNul(e.subresource);
    text[t + 2] = noNul(e.name);
    text[t + 3] = noNul(e.command);
    text[t + 4] = noNul(e.container);
  }
  return { count: events.length, nums, text: text.join(NUL), dict: dict.join(NUL) };
}

/** What completes a batch after its events are in: alerts, dead letters and the source position. */
export interface BatchTail {
  alerts: Alert[];
  deadLetters: DeadLetter[];
  checkpoint?: Checkpoint;
}

/**
 * The two halves of a batch's one transaction, so detection can run between them on only the events that were new:
 * `begin` opens the transaction and inserts events (a retried or re-imported event is recognised by its key, not
 * inserted, and not passed to detection); `finish` adds alerts, dead letters and the position, and commits.
 */
export interface BatchWriter {
  begin(events: EventRecords, raw: string): Promise<boolean[]> | boolean[];
  finish(tail: BatchTail): Promise<Alert[]> | Alert[];
  abort(): Promise<void> | void;
}

const HOUR_US = 3_600_000_000;
// Level 1: measured 9.9% of the input against 7.4% at level 6, at half the time; ingest is CPU-bound.
const COMPRESSION: ZlibOptions = { level: 1, memLevel: 9 };

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
  readonly redactionKey: Buffer;

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
      migrate(this.db);
    }
    // Bounded page caches (KiB): ingest of a 1 GB log stays near 300 MB resident.
    this.db.pragma(`cache_size = ${opts.readonly ? -8192 : -16384}`);
    this.db.pragma('busy_timeout = 5000');
    this.stmts = this.prepare();
    this.redactionKey = opts.readonly ? Buffer.alloc(32) : this.loadRedactionKey();
  }

  private prepare() {
    const db = this.db;
    return {
      dictGet: db.prepare('SELECT id FROM dict WHERE value = ?').pluck(),
      dictGetValue: db.prepare('SELECT value FROM dict WHERE id = ?').pluck(),
      dictPut: db.prepare('INSERT INTO dict (value) VALUES (?)'),
      insertEvent: db.prepare(`INSERT OR IGNORE INTO events (time, stage, audit_id, cluster, verb, user, groups, imp_user,
        source_ip, user_agent, api_group, api_version, resource, subresource, namespace, name, code, decision, level,
        command, container, blob, blob_idx, cat) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
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

  /** Deflates a batch's raw JSON lines (joined by newlines) for its blob. */
  static compress(raw: string): Buffer {
    return deflateRawSync(Buffer.from(raw, 'utf8'), COMPRESSION);
  }

  /** One whole batch, begin to commit, for callers with no detection step between (tests, tools). */
  commitAll(events: NormalisedEvent[], tail: BatchTail): { stored: number; flags: boolean[]; alerts: Alert[] } {
    const flags = this.begin(toRecords(events), events.map((e) => e.raw).join('\n'));
    const alerts = this.finish(tail);
    return { stored: flags.filter(Boolean).length, flags, alerts };
  }

  private open: { eventIds: number[]; keys: Map<string, number> } | undefined;

  /** Opens the batch's transaction and inserts its events; returns which were new. */
  begin(batch: EventRecords, raw: string): boolean[] {
    if (this.open) throw new Error('store: a batch is already open');
    const s = this.stmts;
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const n = batch.count;
      const flags = new Array<boolean>(n).fill(false);
      const eventIds: number[] = new Array(n).fill(0);
      const keys = new Map<string, number>();
      this.open = { eventIds, keys };
      if (n === 0) return flags;
      const nums = batch.nums;
      const text = batch.text.split(NUL);
      const dict = batch.dict.split(NUL);
      const ids = dict.map((v) => this.intern(v));
      let maxTime = 0;
      for (let i = 0; i < n; i++) if (nums[i * NUM_FIELDS]! > maxTime) maxTime = nums[i * NUM_FIELDS]!;
      const blobId = Number(s.insertBlob.run(maxTime, Store.compress(raw)).lastInsertRowid);
      const roll = new Map<number, number>();
      let first = 0;
      let last = 0;
      for (let i = 0; i < n; i++) {
        const o = i * NUM_FIELDS;
        const t = i * TEXT_FIELDS;
        const stage = nums[o + N_STAGE]!;
        const user = ids[nums[o + N_USER]!]!;
        const verb = ids[nums[o + N_VERB]!]!;
        const resource = ids[nums[o + N_RESOURCE]!]!;
        const namespace = ids[nums[o + N_NAMESPACE]!]!;
        const sourceIP = ids[nums[o + N_IP]!]!;
        const cat = nums[o + N_CAT]!;
        const auditID = text[t]!;
        const r = s.insertEvent.run(
          nums[o + N_TIME], stage, encodeAuditID(auditID), ids[nums[o + N_CLUSTER]!], verb, user, ids[nums[o + N_GROUPS]!],
          ids[nums[o + N_IMP]!], sourceIP, ids[nums[o + N_UA]!], ids[nums[o + N_GROUP]!], ids[nums[o + N_VERSION]!], resource,
          text[t + 1], namespace, text[t + 2], nums[o + N_CODE], nums[o + N_DECISION], nums[o + N_LEVEL], text[t + 3] || null,
          text[t + 4] || null, blobId, i, cat < 0 ? null : cat,
        );
        if (r.changes === 0) continue;
        const id = Number(r.lastInsertRowid);
        flags[i] = true;
        eventIds[i] = id;
        keys.set(`${dict[nums[o + N_CLUSTER]!]}${NUL}${auditID}${NUL}${stage}`, i);
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
      if (first === 0) s.deleteBlob.run(blobId);
      else s.finishBlob.run(first, last, blobId);
      for (const [k, c] of roll) {
        const hour = Math.floor(k / ROLL_HOUR);
        const rest = k - hour * ROLL_HOUR;
        s.rollup.run(hour, rest % 8, Math.floor(rest / 8), c);
      }
      return flags;
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  abort(): void {
    this.open = undefined;
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
  }

  /** Adds the batch's alerts, dead letters and position, and commits. Returns the alerts that opened a new row. */
  finish(b: BatchTail): Alert[] {
    if (!this.open) throw new Error('store: no batch is open');
    try {
      const out = this.writeTail(b);
      this.db.exec('COMMIT');
      return out;
    } catch (e) {
      this.abort();
      throw e;
    } finally {
      this.open = undefined;
    }
  }

  private writeTail(b: BatchTail): Alert[] {
    const s = this.stmts;
    const { eventIds, keys } = this.open!;
    const newAlerts: Alert[] = [];
    for (const a of b.alerts) {
      const evIdx = keys.get(`${a.cluster}${NUL}${a.auditID}${NUL}${STAGE_CODES[a.stage]}`);
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
    return newAlerts;
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
