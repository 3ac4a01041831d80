import type Database from 'better-sqlite3';

/**
 * The lookup by auditID alone (an alert's "show me the request", `--audit-id` with no time range), as sorted runs
 * merged in tiers, in the manner of an LSM tree.
 *
 * An index on auditID itself would put every insert at a random place in a B-tree as large as the store: a commit of
 * a few thousand events would rewrite a few thousand index pages, several times the log's own bytes. So new entries
 * go to a bucket of 2^AUDIT_ID_BUCKET_BITS consecutive event ids (run key = id >> bits, level 0): a commit writes
 * only into the newest bucket's few dozen pages. A lookup seeks each run once, so the runs must stay few: when
 * AUDIT_ID_FANOUT complete runs of one level exist, they are merged into one run of the next level, written in
 * auditID order at the right edge of the table (dense pages, appended). An entry (~30 bytes, against ~1,500 bytes of
 * log per event) is rewritten once per level, log_16 of the bucket count: twice at 10 M events. A store of n events
 * holds at most 15 runs per level plus the bucket being filled, a few dozen seeks where the buckets alone were
 * n / 16,384 (611 at 10 M).
 *
 * A merge copies its inputs' entries into the output a slice of the auditID space at a time, each slice inside a
 * writer's transaction, so a large merge never stalls the writer for seconds and a crash loses at most the
 * uncommitted slice; then it drops its inputs whole, one per step. Until an input is dropped an entry may be in both
 * it and the output: the lookup's IN takes it once. Dropping a whole run frees its pages without rewriting them,
 * where deleting each slice from the inputs as it was copied rewrote the pages at every slice's edges (measured
 * +0.15 bytes written per byte of log on a 1 M import, against +0.0x this way: benchmarks/NOTES.md).
 *
 * Entries are not removed with their events (retention, a discarded batch): a lookup joins each entry to its event
 * and checks the auditID there, which also makes a row id used again after a discard harmless. A merge leaves out
 * entries older than the oldest stored event, and a run whose events are all gone is dropped whole.
 */
export const AUDIT_ID_BUCKET_BITS = 14;
/** Runs of one level merged at once. Measured: see benchmarks/NOTES.md ("auditID runs"). */
export const AUDIT_ID_FANOUT = 16;
/** Merged runs' keys start here, above every bucket key, and grow: each new run is appended at the table's end. */
const MERGED_RUNS = 2 ** 40;
/** Entries a merge moves per slice (the slices are 2-byte auditID prefixes, so at most 65,536 per merge). */
const SLICE_ENTRIES = 8192;
/** Merge work a commit may do per entry it adds: above the level count, so merges keep up with any insert rate. */
const PACE = 6;
/** The level of the one run a migration builds from an older store's events: never merged with others. */
const MIGRATED_LEVEL = 64;

/**
 * Schema migration 6: the runs and their entries. An older store's events become one run, sorted once (about
 * 2-3 s per million events, at the first open by a writer), and the bucket index of migration 5 goes.
 */
export const AUDIT_ID_RUNS_SQL = `
  CREATE TABLE audit_id_runs (
    run INTEGER PRIMARY KEY,
    level INTEGER NOT NULL,
    first_event INTEGER NOT NULL,
    last_event INTEGER NOT NULL,
    merging_into INTEGER,
    slices INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE audit_id_index (
    run INTEGER NOT NULL,
    audit_id BLOB NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (run, audit_id, event_id)
  ) WITHOUT ROWID;
  INSERT INTO audit_id_runs (run, level, first_event, last_event)
    SELECT ${MERGED_RUNS}, ${MIGRATED_LEVEL}, (SELECT min(id) FROM events), (SELECT max(id) FROM events) WHERE EXISTS (SELECT 1 FROM events);
  INSERT INTO audit_id_index (run, audit_id, event_id) SELECT ${MERGED_RUNS}, audit_id, id FROM events ORDER BY audit_id, id;
  DROP INDEX IF EXISTS events_audit_id;
`;

/** The WHERE term for an auditID, and how many times its value is bound. */
export interface AuditIDTerm {
  sql: string;
  binds: number;
}

/**
 * The WHERE term for `e.audit_id = ?`. On a store that a writer has not yet migrated (a reader opened it), the
 * bucket index of schema 5 (one seek per bucket) or, older still, a scan.
 */
export function auditIDTerm(db: Database.Database): AuditIDTerm {
  switch (layout(db)) {
    case 'runs':
      return {
        sql: 'e.id IN (SELECT event_id FROM audit_id_index WHERE run IN (SELECT run FROM audit_id_runs) AND audit_id = ?) AND e.audit_id = ?',
        binds: 2,
      };
    case 'buckets': {
      const b = AUDIT_ID_BUCKET_BITS;
      return {
        sql: `(e.id >> ${b}) IN (WITH RECURSIVE bucket(x) AS (SELECT (SELECT min(id) FROM events) >> ${b} UNION ALL SELECT x + 1 FROM bucket WHERE x < (SELECT max(id) FROM events) >> ${b}) SELECT x FROM bucket) AND e.audit_id = ?`,
        binds: 1,
      };
    }
    default:
      return { sql: 'e.audit_id = ?', binds: 1 };
  }
}

type Layout = 'runs' | 'buckets' | 'none';
const known = new WeakMap<Database.Database, Layout>();

function layout(db: Database.Database): Layout {
  let l = known.get(db);
  if (l === undefined) {
    const names = new Set(db.prepare("SELECT name FROM sqlite_master WHERE name IN ('audit_id_runs', 'events_audit_id')").pluck().all() as string[]);
    l = names.has('audit_id_runs') ? 'runs' : names.has('events_audit_id') ? 'buckets' : 'none';
    // Only the newest layout is kept: a reader of an older store moves on once a writer has migrated it.
    if (l === 'runs') known.set(db, l);
  }
  return l;
}

interface Run {
  run: number;
  level: number;
  first_event: number;
  last_event: number;
  merging_into: number | null;
  slices: number;
  done: number;
}

/** Slice bounds: a slice is [lo, hi) in SQLite's order, where every text sorts below every blob. */
const BELOW_ALL = '';
const ABOVE_ALL = Buffer.alloc(17, 0xff);

function prefix(p: number): Buffer {
  return Buffer.from([p >> 8, p & 0xff]);
}

/**
 * The writer's side: adds each committed batch's entries, merges runs as they accumulate and drops the runs that
 * retention emptied. Every method runs inside the caller's open transaction.
 */
export class AuditIDRuns {
  /** Merge work earned by added entries and not yet spent (entries); lost with the process, which only delays a merge. */
  private credit = 0;
  private readonly s;
  private readonly bits: number;
  private readonly fanout: number;
  private readonly sliceEntries: number;
  private readonly pace: number;

  /** `shape`: the defaults but in tests, which make many levels out of few events with small buckets. */
  constructor(
    private readonly db: Database.Database,
    shape: { bucketBits?: number; fanout?: number; sliceEntries?: number; pace?: number } = {},
  ) {
    this.pace = shape.pace ?? PACE;
    this.bits = shape.bucketBits ?? AUDIT_ID_BUCKET_BITS;
    this.fanout = shape.fanout ?? AUDIT_ID_FANOUT;
    this.sliceEntries = shape.sliceEntries ?? SLICE_ENTRIES;
    this.s = {
      add: db.prepare(
        `INSERT OR IGNORE INTO audit_id_index (run, audit_id, event_id) SELECT max(id >> ${this.bits}, ?), audit_id, id FROM events WHERE id BETWEEN ? AND ? AND blob = ?`,
      ),
      bucket: db.prepare(
        'INSERT INTO audit_id_runs (run, level, first_event, last_event) VALUES (?, 0, ?, ?) ON CONFLICT (run) DO UPDATE SET first_event = min(first_event, excluded.first_event), last_event = max(last_event, excluded.last_event)',
      ),
      floor: db.prepare("SELECT value FROM meta WHERE key = 'audit_id_floor'").pluck(),
      setFloor: db.prepare("INSERT INTO meta (key, value) VALUES ('audit_id_floor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      runs: db.prepare('SELECT run, level, first_event, last_event, merging_into, slices, done FROM audit_id_runs ORDER BY run'),
      newRun: db.prepare('INSERT INTO audit_id_runs (run, level, first_event, last_event, slices) VALUES (?, ?, ?, ?, ?)'),
      markInput: db.prepare('UPDATE audit_id_runs SET merging_into = ? WHERE run = ?'),
      oldest: db.prepare('SELECT min(id) FROM events').pluck(),
      copy: db.prepare(
        'INSERT OR IGNORE INTO audit_id_index (run, audit_id, event_id) SELECT ?, audit_id, event_id FROM audit_id_index WHERE run IN (SELECT run FROM audit_id_runs WHERE merging_into = ?) AND audit_id >= ? AND audit_id < ? AND event_id >= ? ORDER BY audit_id, event_id',
      ),
      sliceDone: db.prepare('UPDATE audit_id_runs SET done = done + 1 WHERE run = ?'),
      dropEntries: db.prepare('DELETE FROM audit_id_index WHERE run = ?'),
      dropRun: db.prepare('DELETE FROM audit_id_runs WHERE run = ?'),
      forget: db.prepare(
        'DELETE FROM audit_id_index WHERE run IN (SELECT run FROM audit_id_runs WHERE level = 0 AND last_event >= @first AND first_event <= @last) AND (audit_id, event_id) IN (SELECT audit_id, id FROM events WHERE id BETWEEN @first AND @last AND blob = @blob)',
      ),
    };
  }

  /** Adds the entries of a committed batch's new events (row ids first..last of its blob), then does merge work. */
  add(first: number, last: number, blob: number): void {
    // A bucket already merged takes no more entries (row ids can be used again after the newest batch is discarded):
    // they go to the first bucket not merged, which is listed.
    const floor = Number(this.s.floor.get() ?? 0);
    this.s.add.run(floor, first, last, blob);
    const size = 2 ** this.bits;
    for (let k = Math.max(Math.floor(first / size), floor); k <= Math.max(Math.floor(last / size), floor); k++) {
      this.s.bucket.run(k, Math.max(first, k * size), Math.min(last, (k + 1) * size - 1));
    }
    this.credit += this.pace * (last - first + 1);
    while (this.credit > 0) {
      // Credit is not banked while no merge is due: a merge that falls due later is still done slice by slice.
      if (!this.step(last)) this.credit = 0;
    }
  }

  /** Merges until no merge is due (tests, tools, a store left with work). */
  settle(): void {
    const newest = (this.db.prepare('SELECT max(id) FROM events').pluck().get() as number | null) ?? 0;
    this.credit = Infinity;
    while (this.step(newest)) {
      /* each step moves one slice */
    }
    this.credit = 0;
  }

  /**
   * Removes the entries of a blob's events that retention is about to delete from the buckets (level 0) they are
   * in: a bucket is a few dozen pages, and a store under a size limit gets their space back. Entries already merged
   * stay until their run is dropped or rewritten (see due): deleting them one by one would rewrite a large run's
   * pages for every retention pass.
   */
  forget(first: number, last: number, blob: number): void {
    this.s.forget.run({ first, last, blob });
  }

  /**
   * Drops the runs whose events retention has all deleted: the whole run goes, a range of the table. A merge in
   * progress goes on without an input dropped this way; an output dropped has only dropped inputs (its range covers
   * theirs).
   */
  dropExpired(): void {
    const oldest = this.s.oldest.get() as number | null;
    for (const r of this.s.runs.all() as Run[]) {
      if (oldest !== null && r.last_event >= oldest) continue;
      this.s.dropEntries.run(r.run);
      this.s.dropRun.run(r.run);
    }
  }

  /** One slice of the merge in progress, or the start of the next merge due; false when there is nothing to do. */
  private step(newest: number): boolean {
    const runs = this.s.runs.all() as Run[];
    const open = runs.find((r) => r.done < r.slices);
    if (open) {
      this.slice(open);
      return true;
    }
    const merged = runs.find((r) => r.merging_into !== null);
    if (merged) {
      this.dropInput(merged);
      return true;
    }
    const oldest = (this.s.oldest.get() as number | null) ?? 0;
    const merge = this.due(runs, newest, oldest);
    if (!merge) return false;
    const { inputs, level } = merge;
    const out = Math.max(MERGED_RUNS - 1, runs.at(-1)!.run) + 1;
    const first = Math.max(oldest, Math.min(...inputs.map((r) => r.first_event)));
    const last = Math.max(...inputs.map((r) => r.last_event));
    const slices = Math.min(65536, 2 ** Math.ceil(Math.log2(Math.max(1, (last - first + 1) / this.sliceEntries))));
    this.s.newRun.run(out, level, first, last, slices);
    for (const r of inputs) this.s.markInput.run(out, r.run);
    if (inputs[0]!.level === 0) this.s.setFloor.run(inputs.at(-1)!.run + 1);
    return true;
  }

  /**
   * The oldest `fanout` runs of the lowest level that has that many complete ones, merged into the next level; else
   * a merged run that retention has more than half emptied (its entries of deleted events are left out of merges
   * only), rewritten alone at its level: each such rewrite at least halves the run, so it costs its entries at most
   * once more over their life.
   */
  private due(runs: Run[], newest: number, oldest: number): { inputs: Run[]; level: number } | undefined {
    const byLevel = new Map<number, Run[]>();
    for (const r of runs) {
      if (r.merging_into !== null || r.level === MIGRATED_LEVEL) continue;
      // The bucket new events still go to is not complete.
      if (r.level === 0 && r.run >= Math.floor(newest / 2 ** this.bits)) continue;
      const l = byLevel.get(r.level) ?? [];
      l.push(r);
      byLevel.set(r.level, l);
    }
    for (const level of [...byLevel.keys()].sort((a, b) => a - b)) {
      const l = byLevel.get(level)!;
      if (l.length >= this.fanout) return { inputs: l.slice(0, this.fanout), level: level + 1 };
    }
    const emptied = runs.find((r) => r.merging_into === null && r.level > 0 && oldest - r.first_event > (r.last_event - r.first_event + 1) / 2);
    return emptied && { inputs: [emptied], level: emptied.level };
  }

  /** Copies one slice of the inputs' entries into the output run. */
  private slice(out: Run): void {
    const i = out.done;
    const width = 65536 / out.slices;
    const lo = i === 0 ? BELOW_ALL : prefix(i * width);
    const hi = i === out.slices - 1 ? ABOVE_ALL : prefix((i + 1) * width);
    const oldest = (this.s.oldest.get() as number | null) ?? 0;
    const copied = this.s.copy.run(out.run, out.run, lo, hi, oldest).changes;
    this.s.sliceDone.run(out.run);
    this.credit -= Math.max(copied, 1);
  }

  /** Drops one input of a merge whose output is complete: its entries, a range of the table, and its row at once. */
  private dropInput(input: Run): void {
    this.s.dropEntries.run(input.run);
    this.s.dropRun.run(input.run);
    this.credit -= Math.max(input.last_event - input.first_event + 1, 1) / 4;
  }
}
