// The auditID index's layouts side by side (issue #21), on the index alone: a table of (row id, auditID, batch) as
// the events table holds them, filled in commits of 4,000 random UUIDs, with one of
//  - none: no auditID index (the floor every layout adds to);
//  - btree: an index on the auditID itself, each commit's rows inserted in auditID order;
//  - buckets: schema 5's `((id >> 14), audit_id)` index (one seek per bucket of 16,384 rows);
//  - runs: schema 6's tiered runs (store/audit-id-index.ts, the writer's own code).
// Prints the bytes the process wrote to disk per row (the kernel's count: WAL and checkpoints, as the store runs
// them) and the lookup time of ids spread over the table. The events table here is 3 columns, where the store's is
// ~25 and a log line ~1,500 bytes: compare the differences between layouts, not the totals.
// Usage: node benchmarks/audit-id-layouts.mjs [--rows 2000000] [--only none,btree,buckets,runs] [--fanout 16]   (needs `npm run build` first)
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '2000000' }, only: { type: 'string' }, fanout: { type: 'string' }, 'temp-memory': { type: 'boolean' } },
});
const N = Number(values.rows);
const COMMIT = 4000;
const { AuditIDRuns, AUDIT_ID_RUNS_SQL } = await import(new URL('../dist/store/audit-id-index.js', import.meta.url));

// Bytes sent towards the disk less those of files deleted before they got there (SQLite's temporary files).
const io = (k) => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(readFileSync('/proc/self/io', 'utf8'))[1]);
const written = () => io('write_bytes') - io('cancelled_write_bytes');
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;

function open(path) {
  const db = new Database(path);
  db.pragma('page_size = 8192');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('wal_autocheckpoint = 8000');
  db.pragma('cache_size = -8192');
  db.exec(
    'CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID; CREATE TABLE events (id INTEGER PRIMARY KEY, audit_id BLOB NOT NULL, blob INTEGER NOT NULL)',
  );
  return db;
}

const layouts = {
  none: { setup() {}, add() {}, lookup: 'SELECT id FROM events NOT INDEXED WHERE audit_id = ?' },
  btree: { setup: (db) => db.exec('CREATE INDEX events_audit_id ON events (audit_id)'), add() {}, lookup: 'SELECT id FROM events WHERE audit_id = ?' },
  buckets: {
    setup: (db) => db.exec('CREATE INDEX events_audit_id ON events ((id >> 14), audit_id)'),
    add() {},
    lookup:
      'SELECT id FROM events e WHERE (e.id >> 14) IN (WITH RECURSIVE bucket(x) AS (SELECT (SELECT min(id) FROM events) >> 14 UNION ALL SELECT x + 1 FROM bucket WHERE x < (SELECT max(id) FROM events) >> 14) SELECT x FROM bucket) AND e.audit_id = ?',
  },
  runs: {
    setup(db) {
      db.exec(AUDIT_ID_RUNS_SQL);
      this.runs = new AuditIDRuns(db, values.fanout ? { fanout: Number(values.fanout) } : {});
    },
    add(first, last, blob) {
      this.runs.add(first, last, blob);
    },
    lookup:
      'SELECT e.id FROM events e WHERE e.id IN (SELECT event_id FROM audit_id_index WHERE run IN (SELECT run FROM audit_id_runs) AND audit_id = ?) AND e.audit_id = ?',
  },
};

console.log(
  `${N.toLocaleString('en-US')} rows in commits of ${COMMIT}; load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
for (const [name, l] of Object.entries(layouts)) {
  if (values.only && !values.only.split(',').includes(name)) continue;
  const dir = mkdtempSync(join(tmpdir(), 'kaudit-aidl-'));
  const db = open(join(dir, 'k.db'));
  if (values['temp-memory']) db.pragma('temp_store = MEMORY');
  l.setup(db);
  const c0 = io('wchar');
  const insert = db.prepare('INSERT INTO events (audit_id, blob) VALUES (?, ?)');
  const w0 = written();
  const t0 = process.hrtime.bigint();
  const ids = [];
  for (let blob = 1, done = 0; done < N; blob++) {
    const batch = Array.from({ length: Math.min(COMMIT, N - done) }, () => randomBytes(16));
    if (name === 'btree') batch.sort(Buffer.compare);
    db.exec('BEGIN IMMEDIATE');
    let first = 0;
    let last = 0;
    for (const a of batch) {
      last = Number(insert.run(a, blob).lastInsertRowid);
      first ||= last;
    }
    l.add(first, last, blob);
    db.exec('COMMIT');
    if (blob % 50 === 1) ids.push(batch[0]);
    done += batch.length;
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  const perRow = (written() - w0) / N;
  const calls = (io('wchar') - c0) / N;
  const fill = ms(t0) / 1000;
  const q = db.prepare(l.lookup).pluck();
  const args = (id) => (name === 'runs' ? [id, id] : [id]);
  // No index: a scan stops at its first match, so its time says nothing (audit-id.mjs times a full scan).
  const sample = name === 'none' ? [] : ids.slice(0, 40);
  for (const id of sample.slice(0, 3)) q.get(...args(id)); // warm the upper pages
  const times = sample.map((id) => {
    const t = process.hrtime.bigint();
    if (q.get(...args(id)) === undefined) throw new Error(`${name}: id not found`);
    return ms(t);
  });
  times.sort((a, b) => a - b);
  const runs = name === 'runs' ? `, ${db.prepare('SELECT count(*) FROM audit_id_runs').pluck().get()} runs` : '';
  console.log(
    `${name.padEnd(8)} ${perRow.toFixed(0).padStart(5)} bytes written per row (${calls.toFixed(0)} passed to write calls), filled in ${fill.toFixed(1)} s${times.length ? `; lookup median ${times[times.length >> 1].toFixed(3)} ms` : ''}${runs}`,
  );
  db.close();
  rmSync(dir, { recursive: true, force: true });
}
