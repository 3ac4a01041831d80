// Lookup by auditID alone (issue #21: under 5 ms on 10 M events, no time range). Builds a store of N events (the
// generator's production-like mix, written through the store's own insert path, no detection), then looks up
// auditIDs spread over it as the API's /api/v1/events?auditID= and `kaudit query events --audit-id` do, against the
// same lookup forced to scan (NOT INDEXED, as every lookup did before the index) in the same run.
// Usage: node benchmarks/audit-id.mjs [--events 1000000] [--keep DIR] [--replay-index]   (needs `npm run build` first;
// a store kept with --keep is reused, and measured as it is, when it already holds N events or more; one an older
// kaudit wrote is migrated as it is opened, timed)
// --replay-index: empties the auditID index of a kept store and adds its batches again, oldest first, through the
// writer's own index code (AuditIDRuns.add: the batch's entries, then the merges they pay for), committing every
// ~4,000 events as an import's commit groups do: the index as the insert path builds it, without parsing 10 M events
// again (the build is ~6 min on a quiet machine, over an hour on a loaded one). Prints the time it took per event.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const { values } = parseArgs({
  options: { events: { type: 'string', default: '1000000' }, keep: { type: 'string' }, 'replay-index': { type: 'boolean' } },
});
const N = Number(values.events);
const dist = new URL('../dist/', import.meta.url);
const { SqliteStore } = await import(new URL('store/sqlite-store.js', dist));
const { normalise } = await import(new URL('events/normalise.js', dist));
const { toAuditEvent } = await import(new URL('events/decode.js', dist));
const { decodeAuditID } = await import(new URL('store/audit-id.js', dist));
const q = await import(new URL('store/queries.js', dist));

const dir = values.keep ?? mkdtempSync(join(tmpdir(), 'kaudit-aid-'));
mkdirSync(dir, { recursive: true });
const path = join(dir, 'kaudit.db');
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;

// Opening as a writer migrates a store an older kaudit wrote (schema 6: its auditID index becomes one sorted run).
const tOpen = process.hrtime.bigint();
let store = new SqliteStore(path);
console.log(`opened as a writer in ${(ms(tOpen) / 1000).toFixed(1)} s`);
let have = store.db.prepare('SELECT count(*) FROM events').pluck().get();
if (have < N) {
  if (have > 0) throw new Error(`${path} holds ${have} events, fewer than ${N}: remove it first`);
  const t0 = process.hrtime.bigint();
  const next = eventStream({ seed: 3, rate: 200, people: 0.04 });
  const redaction = { enabled: true, key: store.redactionKey };
  for (let done = 0; done < N;) {
    const batch = [];
    for (let i = 0; i < 5000 && done < N; i++, done++) {
      const line = JSON.stringify(next());
      batch.push(normalise(toAuditEvent(JSON.parse(line)), 'bench', redaction, line));
    }
    store.commitAll(batch, { alerts: [], deadLetters: [] });
    if (done % 1_000_000 === 0) console.log(`stored ${fmt(done)} events (${(ms(t0) / 1000).toFixed(0)} s)`);
  }
  have = N;
}
if (values['replay-index']) {
  const { AuditIDRuns } = await import(new URL('store/audit-id-index.js', dist));
  const db = store.db;
  db.exec("DELETE FROM audit_id_index; DELETE FROM audit_id_runs; DELETE FROM meta WHERE key = 'audit_id_floor'");
  db.pragma('wal_checkpoint(TRUNCATE)');
  const runs = new AuditIDRuns(db);
  const t = process.hrtime.bigint();
  let events = 0;
  db.exec('BEGIN IMMEDIATE');
  for (const b of db.prepare('SELECT id, first_event, last_event FROM blobs ORDER BY id').all()) {
    runs.add(b.first_event, b.last_event, b.id);
    events += b.last_event - b.first_event + 1;
    if (events >= 4000) {
      db.exec('COMMIT; BEGIN IMMEDIATE');
      events = 0;
    }
  }
  db.exec('COMMIT');
  console.log(`index replayed in ${(ms(t) / 1000).toFixed(1)} s, ${((ms(t) * 1000) / have).toFixed(2)} µs per event`);
}
const layout = store.db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'audit_id_runs'").pluck().get()
  ? store.db.prepare('SELECT level, count(*) AS n FROM audit_id_runs GROUP BY level ORDER BY level').all()
  : undefined;
if (layout) console.log(`auditID runs: ${layout.map((l) => `${l.n} of level ${l.level}`).join(', ')}`);
store.close();
// A fresh connection, as a reader opening the store would have.
store = new SqliteStore(path, { readonly: true });
const maxId = store.db.prepare('SELECT max(id) FROM events').pluck().get();
const idAt = store.db.prepare('SELECT audit_id FROM events WHERE id >= ? LIMIT 1').pluck();
const ids = Array.from({ length: 21 }, (_, i) => decodeAuditID(idAt.get(Math.max(1, Math.floor((maxId * ((i * 37) % 21)) / 21)))));
const lookup = (id) => {
  const t = process.hrtime.bigint();
  const n = q.queryEvents(store, { auditID: id }, { limit: 100 }).items.length;
  if (n === 0) throw new Error(`auditID ${id} not found`);
  return ms(t);
};
const first = lookup(ids[0]);
const times = ids
  .slice(1)
  .map(lookup)
  .sort((a, b) => a - b);
const scan = store.db.prepare('SELECT count(*) FROM events e NOT INDEXED WHERE e.audit_id = ?').pluck();
const { encodeAuditID } = await import(new URL('store/audit-id.js', dist));
const scans = [];
for (const id of ids.slice(1, 4)) {
  const t = process.hrtime.bigint();
  scan.get(encodeAuditID(id));
  scans.push(ms(t));
}
scans.sort((a, b) => a - b);
console.log(
  `auditID lookup, no time range, ${fmt(have)} events: first after opening ${first.toFixed(2)} ms; median of 20 ${times[9].toFixed(2)} ms, p90 ${times[17].toFixed(2)} ms (target < 5 ms); a scan of the same store ${scans[1].toFixed(0)} ms (median of 3), ${(scans[1] / times[9]).toFixed(0)}x slower`,
);
store.close();
if (!values.keep) rmSync(dir, { recursive: true, force: true });
else if (!existsSync(path)) throw new Error('store missing');
