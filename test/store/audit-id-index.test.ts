import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { AuditIDRuns, auditIDTerm } from '../../src/store/audit-id-index.js';
import { encodeAuditID } from '../../src/store/audit-id.js';
import { queryEvents } from '../../src/store/queries.js';
import { toRecords } from '../../src/store/records.js';
import { Retention } from '../../src/store/retention.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev, tempDir } from '../helpers/events.js';
import { rng } from '../helpers/rng.js';

/** Buckets of 64 events merged 4 at a time, slices of ~50 entries: a few thousand events make every level. */
const SMALL = { bucketBits: 6, fanout: 4, sliceEntries: 50 };
const DAY_MS = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

function open(path: string, readonly = false): SqliteStore {
  const store = new SqliteStore(path, { readonly });
  if (!readonly) Object.assign(store, { auditIDs: new AuditIDRuns(store.db, SMALL) });
  return store;
}

function event(store: SqliteStore, auditID: string, ms: number, over: Record<string, unknown> = {}) {
  const t = new Date(ms).toISOString();
  return normalise(toAuditEvent(ev({ auditID, requestReceivedTimestamp: t, stageTimestamp: t, ...over })), 'c', { enabled: true, key: store.redactionKey });
}

/** Stores n events in commits of 1 to maxBatch events; event i is at T0 + i * stepMs. Returns their auditIDs. */
function fill(store: SqliteStore, n: number, o: { start?: number; stepMs?: number; maxBatch?: number; seed?: number } = {}): string[] {
  const next = rng(o.seed ?? 1);
  const ids: string[] = [];
  for (let i = 0; i < n;) {
    const size = Math.min(n - i, 1 + Math.floor(next() * (o.maxBatch ?? 300)));
    const events = [];
    for (let j = 0; j < size; j++, i++) {
      const id = randomUUID();
      ids.push(id);
      events.push(event(store, id, T0 + ((o.start ?? 0) + i) * (o.stepMs ?? 10)));
    }
    store.commitAll(events, { alerts: [], deadLetters: [] });
  }
  return ids;
}

const found = (store: SqliteStore, id: string) => queryEvents(store, { auditID: id }, { limit: 100 }).items.map((r) => r.auditID);

function plan(store: SqliteStore, id: string): string {
  const t = auditIDTerm(store.db);
  const rows = store.db.prepare(`EXPLAIN QUERY PLAN SELECT e.id FROM events e WHERE ${t.sql}`).all(...Array(t.binds).fill(encodeAuditID(id))) as {
    detail: string;
  }[];
  return rows.map((r) => r.detail).join('\n');
}

/**
 * The index's invariants on a committed state: every stored event has its entry in a listed run, no entry is in a
 * run that is not listed, none is there twice, and the file is sound.
 */
function checkIndex(path: string): { runs: number; merging: number; entries: number } {
  const store = new SqliteStore(path, { readonly: true });
  try {
    const one = (sql: string) => store.db.prepare(sql).pluck().get() as number;
    expect(store.db.prepare('PRAGMA integrity_check').pluck().all()).toEqual(['ok']);
    expect(one('SELECT count(*) FROM audit_id_index WHERE run NOT IN (SELECT run FROM audit_id_runs)')).toBe(0);
    expect(
      one(
        'SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM audit_id_index i WHERE i.run IN (SELECT run FROM audit_id_runs) AND i.audit_id = e.audit_id AND i.event_id = e.id)',
      ),
    ).toBe(0);
    // An entry is in two runs only while a merge has copied it and not yet dropped its input.
    expect(
      one(
        'SELECT count(*) FROM (SELECT 1 FROM audit_id_index i JOIN audit_id_runs r USING (run) WHERE r.merging_into IS NULL GROUP BY audit_id, event_id HAVING count(*) > 1)',
      ),
    ).toBe(0);
    return {
      runs: one('SELECT count(*) FROM audit_id_runs'),
      merging: one('SELECT count(*) FROM audit_id_runs WHERE done < slices OR merging_into IS NOT NULL'),
      entries: one('SELECT count(*) FROM audit_id_index'),
    };
  } finally {
    store.close();
  }
}

describe('lookup by auditID alone', () => {
  it('finds every request, in the bucket being filled and in merged runs of every level, seeking a few runs', () => {
    const path = join(tempDir(), 'k.db');
    const store = open(path);
    try {
      const ids = fill(store, 5000);
      // A second stage of an early request, stored much later (a watch's ResponseComplete).
      store.commitAll([event(store, ids[5]!, T0 + 50, { stage: 'ResponseStarted' })], { alerts: [], deadLetters: [] });
      // An auditID that is not a UUID is kept as text; it sorts below every blob, in the first slice of a merge.
      store.commitAll([event(store, 'not-a-uuid', T0 + 1)], { alerts: [], deadLetters: [] });
      fill(store, 1000, { start: 5000, seed: 2 });
      expect(plan(store, ids[0]!)).toMatch(/SEARCH audit_id_index USING PRIMARY KEY \(run=\? AND audit_id=\?\)/);
      const levels = store.db.prepare('SELECT DISTINCT level FROM audit_id_runs ORDER BY level').pluck().all();
      expect(levels).toEqual(expect.arrayContaining([0, 1, 2, 3]));
      // 6,002 events in buckets of 64 (94 of them): at most fanout - 1 complete runs a level, the bucket being filled,
      // and a merge in progress (its inputs and its output).
      const { runs, entries } = checkIndex(path);
      expect(runs).toBeLessThanOrEqual(4 * 3 + 1 + 2);
      expect(entries).toBe(6002);
      for (let i = 0; i < ids.length; i++) expect(found(store, ids[i]!)).toEqual(i === 5 ? [ids[5], ids[5]] : [ids[i]]);
      expect(found(store, 'not-a-uuid')).toEqual(['not-a-uuid']);
      expect(found(store, randomUUID())).toEqual([]);
      // With a time range and other filters, the same answers.
      expect(queryEvents(store, { auditID: ids[300], since: T0 * 1000, user: 'alice@example.com' }, {}).items).toHaveLength(1);
      expect(queryEvents(store, { auditID: ids[300], since: (T0 + DAY_MS) * 1000 }, {}).items).toHaveLength(0);
      // Merging everything due leaves the same answers.
      store.auditIDs!.settle();
      expect(checkIndex(path).merging).toBe(0);
      for (const i of [0, 5, 63, 64, 1000, 4095, 4096, 4999]) expect(found(store, ids[i]!)).toEqual(i === 5 ? [ids[5], ids[5]] : [ids[i]]);
    } finally {
      store.close();
    }
  });

  it('after retention and discarded batches: deleted events are never returned, emptied runs go, the rest is found', async () => {
    const path = join(tempDir(), 'k.db');
    const store = open(path);
    try {
      // 4,000 events a minute apart, then retention keeps the last day (1,440 minutes).
      const ids = fill(store, 4000, { stepMs: 60_000 });
      const runsBefore = store.db.prepare('SELECT count(*) FROM audit_id_runs').pluck().get() as number;
      const retention = new Retention(store, { maxAgeMs: DAY_MS, chunk: 3 });
      const now = T0 + 4000 * 60_000;
      expect(await retention.runOnce(now)).toBeGreaterThan(2000);
      const oldest = store.db.prepare('SELECT min(id) FROM events').pluck().get() as number;
      // No run is left whose events are all gone.
      expect(store.db.prepare('SELECT count(*) FROM audit_id_runs WHERE last_event < ?').pluck().get(oldest)).toBe(0);
      expect(store.db.prepare('SELECT count(*) FROM audit_id_runs').pluck().get()).toBeLessThan(runsBefore);
      const kept = new Set(store.db.prepare('SELECT id FROM events').pluck().all() as number[]);
      for (let i = 0; i < ids.length; i++) expect(found(store, ids[i]!)).toEqual(kept.has(i + 1) ? [ids[i]] : []);

      // A batch inserted and then discarded (its detection failed): the next batch takes the same row ids.
      const gone = Array.from({ length: 100 }, () => randomUUID());
      const { batch } = store.insert(toRecords(gone.map((id, i) => event(store, id, now + i))));
      store.discard(batch);
      const later = fill(store, 2000, { start: 4000, stepMs: 60_000, seed: 3 });
      for (const id of gone) expect(found(store, id)).toEqual([]);
      for (const id of later) expect(found(store, id)).toEqual([id]);
      // Entries of deleted events leave with their bucket, or as their run is merged or rewritten: few remain.
      store.auditIDs!.settle();
      const stale = store.db.prepare(
        'SELECT count(*) FROM audit_id_index i WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = i.event_id AND audit_id = i.audit_id)',
      );
      // (466 of 2,418: those of the merged runs that retention emptied less than half, which wait for their rewrite.)
      expect(stale.pluck().get()).toBeLessThan((ids.length - kept.size) / 4);
      // No merged run is left more than half emptied: such a run is rewritten without its deleted events' entries.
      const halfEmptied = 'SELECT count(*) FROM audit_id_runs WHERE level > 0 AND ? - first_event > (last_event - first_event + 1) / 2.0';
      expect(store.db.prepare(halfEmptied).pluck().get(oldest)).toBe(0);
      checkIndex(path);
    } finally {
      store.close();
    }
  });

  it('a writer killed mid-merge leaves every stored event found once, and its merge is finished by the next writer', async () => {
    const path = join(tempDir(), 'k.db');
    const dist = (f: string) => JSON.stringify(new URL(`../../dist/${f}`, import.meta.url).href);
    // A writer that commits batches of 1-300 events for ever, merging as it goes, until it is killed. Slices of ~50
    // entries and merge work of one entry per entry added: a merge spans many commits.
    const script = `
      import { randomUUID } from 'node:crypto';
      import { SqliteStore } from ${dist('store/sqlite-store.js')};
      import { AuditIDRuns } from ${dist('store/audit-id-index.js')};
      import { normalise } from ${dist('events/normalise.js')};
      import { toAuditEvent } from ${dist('events/decode.js')};
      const store = new SqliteStore(${JSON.stringify(path)});
      Object.assign(store, { auditIDs: new AuditIDRuns(store.db, ${JSON.stringify({ ...SMALL, pace: 1 })}) });
      const base = ${JSON.stringify(ev())};
      let n = store.db.prepare('SELECT count(*) FROM events').pluck().get();
      process.stdout.write('ready\\n');
      for (;;) {
        const events = [];
        for (let i = Math.floor(Math.random() * 300); i >= 0; i--, n++) {
          const t = new Date(${T0} + n).toISOString();
          events.push(normalise(toAuditEvent({ ...base, auditID: randomUUID(), requestReceivedTimestamp: t, stageTimestamp: t }), 'c', { enabled: true, key: store.redactionKey }));
        }
        store.commitAll(events, { alerts: [], deadLetters: [] });
      }`;
    let midMerge = 0;
    let last = 0;
    for (let kill = 0; kill < 6; kill++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise((r) => child.once('exit', r));
      await new Promise<void>((resolve) => child.stdout!.on('data', (d) => String(d).includes('ready') && resolve()));
      await new Promise((r) => setTimeout(r, 400 + kill * 150));
      child.kill('SIGKILL');
      await exited;
      const state = checkIndex(path);
      if (state.merging > 0) midMerge++;
      expect(state.entries).toBeGreaterThan(last);
      last = state.entries;
    }
    // The kills fell inside merges (a merge spans many commits: most moments are inside one).
    expect(midMerge).toBeGreaterThan(0);
    const store = open(path);
    try {
      store.auditIDs!.settle();
      expect(checkIndex(path).merging).toBe(0);
      const sample = store.db.prepare('SELECT audit_id FROM events ORDER BY random() LIMIT 200').pluck().all() as Buffer[];
      for (const a of sample)
        expect(queryEvents(store, { auditID: a.toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-') }, {}).items).toHaveLength(1);
    } finally {
      store.close();
    }
    // Six writer processes and the merge they leave: 32-62 s in CI runs on the 2-core machine, past the default 60 s
    // once (the time is the machine's; what the test checks does not depend on it).
  }, 180_000);

  it('migrates a store written with the bucket index (schema 5): one sorted run; a reader of the old store uses the buckets until then', () => {
    const path = join(tempDir(), 'k.db');
    let store = new SqliteStore(path);
    const ids = fill(store, 3000);
    // Make it the store kaudit wrote before the runs: schema version 5, the bucket index, no runs.
    store.db.exec(`DROP TABLE audit_id_index; DROP TABLE audit_id_runs; DELETE FROM meta WHERE key = 'audit_id_floor';
      CREATE INDEX events_audit_id ON events ((id >> 14), audit_id); PRAGMA user_version = 5;`);
    store.close();
    const reader = new SqliteStore(path, { readonly: true });
    try {
      expect(plan(reader, ids[0]!)).toMatch(/events_audit_id/);
      expect(found(reader, ids[1500]!)).toEqual([ids[1500]]);
      store = open(path);
      expect(store.db.pragma('user_version', { simple: true })).toBe(6);
      expect(store.db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'events_audit_id'").pluck().get()).toBe(0);
      expect(store.db.prepare('SELECT level, first_event, last_event FROM audit_id_runs').all()).toEqual([{ level: 64, first_event: 1, last_event: 3000 }]);
      expect(plan(store, ids[0]!)).toMatch(/audit_id_index/);
      // New events go to buckets beside the migrated run, which is never merged.
      const more = fill(store, 1000, { start: 3000, seed: 5 });
      store.auditIDs!.settle();
      expect(checkIndex(path).entries).toBe(4000);
      for (const id of [ids[0]!, ids[2999]!, more[0]!, more[999]!]) expect(found(store, id)).toEqual([id]);
      // The reader opened before the migration uses the runs once they exist.
      expect(plan(reader, ids[0]!)).toMatch(/audit_id_index/);
      expect(found(reader, ids[10]!)).toEqual([ids[10]]);
      store.close();
    } finally {
      reader.close();
    }
  });

  it('migrates a store older than both (schema 4): straight to the runs, never building the bucket index', () => {
    const path = join(tempDir(), 'k.db');
    let store = new SqliteStore(path);
    const ids = fill(store, 500);
    store.db.exec(`DROP TABLE audit_id_index; DROP TABLE audit_id_runs; PRAGMA user_version = 4;`);
    store.close();
    const reader = new SqliteStore(path, { readonly: true });
    expect(plan(reader, ids[0]!)).not.toMatch(/audit_id_index|events_audit_id/);
    expect(found(reader, ids[7]!)).toEqual([ids[7]]);
    reader.close();
    store = open(path);
    try {
      expect(store.db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'events_audit_id'").pluck().get()).toBe(0);
      expect(found(store, ids[7]!)).toEqual([ids[7]]);
    } finally {
      store.close();
    }
  });
});
