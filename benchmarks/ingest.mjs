// Import benchmark (issues: core, #21). Generates an audit log (by default the mixed log of lib/mixed.mjs: Metadata
// reads, RequestResponse writes with both bodies, exec, large list responses; `--log classic` the older all-small
// mix of lib/generate.mjs), then measures in one run:
//  - a bare loop that reads the file and JSON.parses each line (one core, in this process): the baseline;
//  - `kaudit ingest` as a user runs it, a whole process of its own, start-up included, with the detection rules;
// and prints events/s for both, their ratio, start-up to the first event stored (a one-event log, against `node -e
// 0`), bytes written to disk per byte of log (the kernel's count for the whole process: WAL, checkpoints, all),
// store size against the log size, peak RSS, the time of each analyst query and of an auditID lookup on the store.
// Usage: node benchmarks/ingest.mjs [--events N] [--rounds 3] [--log mixed|classic] [--no-detect] [--keep DIR]
// (--keep DIR: the log and store stay in DIR, and a later run with the same --events and --log reuses the log)
// (needs `npm run build` first)
import { spawn } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, createWriteStream, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';
import { mixedStream } from './lib/mixed.mjs';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '300000' },
    rounds: { type: 'string', default: '3' },
    log: { type: 'string', default: 'mixed' },
    'no-detect': { type: 'boolean' },
    keep: { type: 'string' },
    'queries-only': { type: 'boolean' },
  },
});
const N = Number(values.events);
const dist = new URL('../dist/', import.meta.url);
const { SqliteStore } = await import(new URL('store/sqlite-store.js', dist));
const q = await import(new URL('store/queries.js', dist));

const dir = values.keep ?? mkdtempSync(join(tmpdir(), 'kaudit-bench-'));
mkdirSync(dir, { recursive: true });
const log = join(dir, 'audit.log');

async function generate() {
  // 4% of requests by people, the rest machinery: a production-like mix.
  const next = values.log === 'classic' ? eventStream({ seed: 1, rate: 12, people: 0.04 }) : mixedStream({ seed: 1, rate: 12, people: 0.04 });
  const out = createWriteStream(log);
  let buf = '';
  for (let i = 0; i < N; i++) {
    buf += JSON.stringify(next()) + '\n';
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await new Promise((r) => out.once('drain', r));
      buf = '';
    }
  }
  out.end(buf);
  await new Promise((r) => out.on('finish', r));
}

async function bareParse() {
  const t0 = process.hrtime.bigint();
  let n = 0;
  let carry = '';
  for await (const chunk of createReadStream(log, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const s = carry + chunk;
    let start = 0;
    for (;;) {
      const nl = s.indexOf('\n', start);
      if (nl < 0) break;
      JSON.parse(s.slice(start, nl));
      n++;
      start = nl + 1;
    }
    carry = s.slice(start);
  }
  return { n, secs: Number(process.hrtime.bigint() - t0) / 1e9 };
}

function fmt(n) {
  return Math.round(n).toLocaleString('en-US');
}

// With --keep, a log this benchmark generated there before for the same --events and --log is used again: a 1 M log
// takes a minute to generate, and reruns compare builds on the same bytes.
const made = join(dir, 'audit.log.json');
const want = JSON.stringify({ events: N, log: values.log });
const reuses = () => {
  try {
    return !!values.keep && readFileSync(made, 'utf8') === want && statSync(log).size > 0;
  } catch {
    return false;
  }
};
const reused = reuses();
if (!reused) {
  await generate();
  writeFileSync(made, want);
}
const logBytes = statSync(log).size;
console.log(
  `log (${values.log}): ${fmt(N)} events, ${(logBytes / 1e6).toFixed(1)} MB (${Math.round(logBytes / N)} bytes/event) in ${dir}${reused ? ' (kept from an earlier run)' : ''}; load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);

// The machine's speed drifts (shared cores: the bare loop alone has measured from 180k to 310k events/s within
// minutes), so the bare loop and the import alternate: bare, import, bare, import, ..., bare. Each import is set
// against the mean of the bare runs just before and after it, and the ratio reported is the median over the rounds.
// The page cache is warm for all of them.
const dbPath = join(dir, 'kaudit.db');
// The import runs as users run it, `kaudit ingest` in a process of its own (start-up included), so its peak resident
// memory (VmHWM) and the bytes it writes are the importer's alone: lib/io-at-exit.mjs reads them from /proc/self as
// the process ends.
const ioFile = join(dir, 'io.json');
async function importOnce(file = log) {
  for (const f of readdirSync(dir)) if (f.startsWith('kaudit.db')) rmSync(join(dir, f), { force: true });
  const preload = new URL('./lib/io-at-exit.mjs', import.meta.url).href;
  const args = ['ingest', '--db', dbPath, file];
  if (values['no-detect']) args.push('--no-detect');
  rmSync(ioFile, { force: true });
  const t0 = process.hrtime.bigint();
  // Run as a command, the way `npx kaudit` runs it (bin/kaudit.js's own node flags included).
  const child = spawn(fileURLToPath(new URL('../bin/kaudit.js', import.meta.url)), args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, KAUDIT_BENCH_IO: ioFile, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${preload}` },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((r) => child.on('exit', r));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (code !== 0) throw new Error(`kaudit ingest failed (${code}): ${stderr}`);
  const io = JSON.parse(readFileSync(ioFile, 'utf8'));
  const summary = /stored (\d+) events, skipped (\d+) duplicates, (\d+) bad records.*?, (\d+) alerts/.exec(stderr);
  const events = Number(summary[1]);
  return {
    events,
    secs,
    bad: Number(summary[3]),
    alerts: Number(summary[4]),
    rate: events / secs,
    peakRss: io.peakRss,
    writeBytes: io.write_bytes,
    wchar: io.wchar,
  };
}

// Start-up to the first event stored: the whole `kaudit ingest` process on a one-event log (load, open the store,
// read, detect, commit, close), against a bare `node -e 0` on the same machine at the same moment.
async function startup() {
  const one = join(dir, 'one.log');
  const fd = createReadStream(log, { encoding: 'utf8', start: 0, end: 1 << 20 });
  let head = '';
  for await (const c of fd) {
    head += c;
    if (head.includes('\n')) break;
  }
  fd.destroy();
  writeFileSync(one, head.slice(0, head.indexOf('\n') + 1));
  const node0 = [];
  const ingest = [];
  for (let i = 0; i < 7; i++) {
    const t = process.hrtime.bigint();
    await new Promise((r) => spawn(process.execPath, ['-e', '0']).on('exit', r));
    node0.push(Number(process.hrtime.bigint() - t) / 1e9);
    ingest.push((await importOnce(one)).secs);
  }
  return { node: median(node0), ingest: median(ingest) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const st = await startup();
console.log(
  `start-up to the first event stored (whole kaudit ingest process, one-event log, median of 7): ${(st.ingest * 1000).toFixed(0)} ms; node -e 0 alone ${(st.node * 1000).toFixed(0)} ms (target < 300 ms)`,
);
const rounds = Math.max(1, Number(values.rounds));
const bares = [await bareParse()];
const imports = [];
const ratios = [];
for (let r = 0; r < rounds; r++) {
  const imp = await importOnce();
  bares.push(await bareParse());
  const before = bares[r].n / bares[r].secs;
  const after = bares[r + 1].n / bares[r + 1].secs;
  const ratio = imp.rate / ((before + after) / 2);
  imports.push(imp);
  ratios.push(ratio);
  console.log(
    `round ${r + 1}: bare read + JSON.parse ${fmt(before)} before, ${fmt(after)} after; kaudit ingest ${fmt(imp.rate)} events/s (${imp.secs.toFixed(2)} s); ratio ${ratio.toFixed(3)}; peak RSS ${(imp.peakRss / 1e6).toFixed(0)} MB`,
  );
}
const res = imports.at(-1);
const baseRate = median(bares.map((b) => b.n / b.secs));
const rate = median(imports.map((i) => i.rate));
const peakRss = Math.max(...imports.map((i) => i.peakRss));
console.log(`bare read + JSON.parse: ${fmt(baseRate)} events/s (median of ${bares.length} runs)`);
console.log(
  `kaudit ingest (${values['no-detect'] ? 'no detection' : 'detection on'}): ${fmt(rate)} events/s (median of ${rounds}), ${fmt(res.events)} stored, ${res.alerts} alerts, ${res.bad} bad`,
);
console.log(`ratio to bare parse: ${median(ratios).toFixed(2)} (median of the rounds' ratios: ${ratios.map((x) => x.toFixed(3)).join(', ')}; target >= 0.50)`);
const amp = imports.map((i) => i.writeBytes / logBytes);
console.log(
  `written to disk per byte of log (write_bytes of the whole process / log size): ${amp.map((x) => x.toFixed(2)).join(', ')} (target < 1.5); bytes passed to write calls: ${imports.map((i) => (i.wchar / logBytes).toFixed(2)).join(', ')}`,
);
const store = new SqliteStore(dbPath);
store.db.pragma('wal_checkpoint(TRUNCATE)');
let dbBytes = 0;
for (const f of readdirSync(dir)) if (f.startsWith('kaudit.db')) dbBytes += statSync(join(dir, f)).size;
console.log(
  `store on disk: ${(dbBytes / 1e6).toFixed(1)} MB = ${Math.round(dbBytes / res.events)} bytes/event = ${((dbBytes / logBytes) * 100).toFixed(1)}% of the log (target <= 40%)`,
);
console.log(
  `peak resident memory of kaudit ingest: ${(peakRss / 1e6).toFixed(0)} MB (highest of the rounds: ${imports.map((i) => (i.peakRss / 1e6).toFixed(0)).join(', ')}) for a ${(logBytes / 1e9).toFixed(2)} GB log (target < 200 MB)`,
);

// Analyst queries over the whole store: median of 5 runs each.
const first = store.db.prepare('SELECT min(time) FROM events').pluck().get();
const last = store.db.prepare('SELECT max(time) FROM events').pluck().get();
const mid = Math.floor((first + last) / 2);
const queries = {
  'exec sessions (page of 100)': () => q.execSessions(store, {}, { limit: 100 }),
  'secret reads (page of 100)': () => q.secretReads(store, {}, { limit: 100 }),
  'rbac changes (page of 100)': () => q.rbacChanges(store, {}, { limit: 100 }),
  'user activity, alice, half the window': () => q.userActivity(store, { user: 'alice@example.com', since: first, until: mid }, { limit: 100 }),
  'events by user+verb+resource': () => q.queryEvents(store, { user: 'bob@example.com', verb: 'get', resource: 'secrets' }, { limit: 100 }),
  'top users, whole window (unaligned)': () => q.top(store, 'user', { since: first + 1234567, until: last - 7654321 }),
  'top resources, last 6h': () => q.top(store, 'resource', { since: last - 6 * 3600e6, until: last }),
  'alerts, high and above': () => q.queryAlerts(store, { minSeverity: 'high' }, { limit: 100 }),
};
for (const [name, fn] of Object.entries(queries)) {
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(`query ${name}: ${times[2].toFixed(1)} ms (median of 5)`);
}
// The lookup every alert's "show me the request" makes: one auditID, no time range, the way the API's
// /api/v1/events?auditID= and `kaudit query events --audit-id` ask it. The first lookup after opening, then the
// median of 5 of other auditIDs spread over the store.
{
  const maxId = store.db.prepare('SELECT max(id) FROM events').pluck().get();
  const idAt = store.db.prepare('SELECT audit_id FROM events WHERE id >= ? LIMIT 1').pluck();
  const { decodeAuditID } = await import(new URL('store/audit-id.js', dist));
  const ids = [0.5, 0.1, 0.3, 0.7, 0.9, 0.99].map((f) => decodeAuditID(idAt.get(Math.floor(maxId * f))));
  const times = [];
  for (const id of ids) {
    const t = process.hrtime.bigint();
    const page = q.queryEvents(store, { auditID: id }, { limit: 100 });
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (page.items.length === 0) throw new Error(`auditID ${id} not found`);
  }
  const first = times.shift();
  times.sort((a, b) => a - b);
  console.log(
    `query by auditID alone (no time range) on ${fmt(maxId)} events: first ${first.toFixed(1)} ms, then ${times[2].toFixed(1)} ms (median of 5; target < 5 ms)`,
  );
}
store.close();
console.log(
  `load average at the end: ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
if (!values.keep) rmSync(dir, { recursive: true, force: true });
