// The fleet store's benchmark (issue #20). Starts a real OpenSearch node (scripts/opensearch/opensearch.sh, one node,
// 0 replicas) and a real Kafka broker (scripts/kafka/kafka.sh) on this machine, then measures:
//   1. events/s that Kafka detectors (KafkaSource -> detection with the bundled rules -> store) write: one detector on
//      SQLite (the baseline), one detector on OpenSearch, two detectors of one consumer group on one OpenSearch;
//      with the CPU seconds per event of the detectors and of the OpenSearch node (the figure to size data nodes by).
//   2. each analyst query's latency on a store of --query-events events, OpenSearch against SQLite holding the same
//      events; the store is built through each kind's own insert path (no detection), and its build rate printed.
//   3. disk per event: the events indices' store size after a flush and a force-merge to one segment, against the
//      SQLite file after a WAL checkpoint.
// Ratios are against SQLite measured in the same run, on the same machine.
//
// Usage: node benchmarks/opensearch.mjs [--events 60000] [--query-events 200000] [--skip-detectors] [--skip-queries]
// (needs `npm run build` first, Java 17 and Maven or the jar caches). The size, 10 M events, takes
// `node benchmarks/opensearch.mjs --skip-detectors --query-events 10000000` (about 10 M / the printed build rate).
// KAUDIT_OPENSEARCH_HEAP sets the node's heap (default 512m). `--keep DIR` keeps the node and the SQLite file of the
// query stores in DIR: a later run with the same DIR and --query-events skips the build and times the queries again
// (on a quieter machine, say).
import { execFileSync, fork, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '60000' },
    'query-events': { type: 'string', default: '200000' },
    'skip-detectors': { type: 'boolean' },
    'skip-queries': { type: 'boolean' },
    keep: { type: 'string' },
  },
});
const N = Number(values.events);
const Q = Number(values['query-events']);
const root = fileURLToPath(new URL('..', import.meta.url));
const dist = new URL('../dist/', import.meta.url);
const osScript = join(root, 'scripts', 'opensearch', 'opensearch.sh');
const kafkaScript = join(root, 'scripts', 'kafka', 'kafka.sh');
const fmt = (n) => Math.round(n).toLocaleString('en-US');

for (const [script, what] of [
  [osScript, 'OpenSearch'],
  [kafkaScript, 'Kafka'],
]) {
  const check = spawnSync('bash', [script, 'check'], { encoding: 'utf8' });
  if (check.status !== 0) {
    console.log(`opensearch benchmark skipped: no ${what} here: ${check.stderr.trim()}`);
    process.exit(0);
  }
}

const started = (script, args = []) =>
  Object.fromEntries(
    execFileSync('bash', [script, 'start', '--watch-pid', String(process.pid), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
const keep = values.keep;
if (keep) mkdirSync(keep, { recursive: true });
const os = started(osScript, keep ? ['--dir', join(keep, 'node')] : []);
const kafkaEnv = values['skip-detectors'] ? undefined : started(kafkaScript);
const dir = keep ?? mkdtempSync(join(tmpdir(), 'kaudit-bench-os-'));
/** Written once a kept store holds all of its events: a run that stopped half-way builds again. */
const builtMark = join(dir, `q-built-${Q}`);

/** CPU seconds the OpenSearch JVM has used (user + system, from /proc). */
function nodeCpu() {
  try {
    const f = readFileSync(`/proc/${os.OPENSEARCH_PID}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

async function osRequest(method, path, body) {
  const r = await fetch(`${os.OPENSEARCH_URL}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const settings = (indexPrefix) => ({ url: os.OPENSEARCH_URL, indexPrefix, replicas: 0, shards: 1 });
const lines = [];
const out = (s) => {
  lines.push(s);
  console.log(s);
};

try {
  if (!values['skip-detectors']) await detectors();
  if (!values['skip-queries']) await queries();
  console.log(
    `\nsummary (OpenSearch ${os.OPENSEARCH_VERSION}, one node, heap ${process.env.KAUDIT_OPENSEARCH_HEAP ?? '512m'}, this machine's 2 cores shared):`,
  );
  for (const l of lines) console.log(l);
} finally {
  execFileSync('bash', [osScript, 'stop', '--dir', os.OPENSEARCH_DIR, ...(keep ? ['--keep'] : [])], { stdio: 'inherit' });
  if (kafkaEnv) execFileSync('bash', [kafkaScript, 'stop', '--dir', kafkaEnv.KAFKA_DIR], { stdio: 'inherit' });
  if (!keep) rmSync(dir, { recursive: true, force: true });
}

/** Part 1: N events on a 4-partition topic, consumed and stored by detector processes. */
async function detectors() {
  const { defaultKafkaConfig } = await import(new URL('config/kafka.js', dist));
  const { KafkaEventsProducer } = await import(new URL('sinks/kafka.js', dist));
  const { default: kafkajs } = await import('kafkajs');
  const brokers = [kafkaEnv.KAFKA_BROKERS];
  const topic = 'bench-events';
  const kafka = new kafkajs.Kafka({ clientId: 'bench', brokers, logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
  await admin.disconnect();
  const next = eventStream({ seed: 1, rate: 12 });
  const producer = new KafkaEventsProducer({ config: { ...defaultKafkaConfig(), brokers, topics: { events: [topic], alerts: '', deadLetter: '' } }, kafka });
  await producer.start();
  let bytes = 0;
  for (let i = 0; i < N; i += 500) {
    const records = [];
    for (let k = i; k < Math.min(N, i + 500); k++) {
      const text = JSON.stringify(next());
      bytes += text.length;
      records.push({ text, where: `event ${k}` });
    }
    await producer.submit({ source: 'webhook', cluster: 'bench', records });
  }
  await producer.stop();
  console.log(`detectors: ${fmt(N)} events (${(bytes / N).toFixed(0)} B each) on a 4-partition topic`);

  const runs = [
    { name: '1 detector, SQLite (its own file)', consumers: 1, store: 'sqlite' },
    { name: '1 detector, OpenSearch', consumers: 1, store: 'os' },
    { name: '2 detectors, one OpenSearch', consumers: 2, store: 'os' },
  ];
  let baseline;
  for (const [k, run] of runs.entries()) {
    const nodes = [];
    const stats = [];
    const cpus = [];
    const start = performance.now();
    let firstStored = 0;
    let cpuAtFirst = 0;
    for (let i = 0; i < run.consumers; i++) {
      const s = {
        dist: fileURLToPath(dist),
        detect: true,
        rulesDir: join(root, 'detections'),
        ...(run.store === 'os' ? { opensearch: settings(`det${k}`) } : { db: join(dir, `det${k}-${i}.db`) }),
        kafka: { brokers, groupId: `bench-${k}`, topics: { events: [topic], alerts: '', deadLetter: '' }, sessionTimeoutMs: 10000, heartbeatIntervalMs: 1000 },
      };
      const child = fork(join(root, 'benchmarks', 'kafka-node.js'), [], {
        env: { ...process.env, KAUDIT_BENCH_NODE: JSON.stringify(s), KAUDIT_LOG_LEVEL: 'error' },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      child.on('message', (m) => {
        if (m.type !== 'stats') return;
        stats[i] = m.stats;
        cpus[i] = m.cpu;
        if (!firstStored && m.stats.stored > 0) {
          firstStored = performance.now();
          cpuAtFirst = nodeCpu();
        }
      });
      nodes.push(child);
    }
    const done = () => stats.filter(Boolean).reduce((s, x) => s + x.stored + x.duplicates, 0);
    let shown = performance.now();
    while (done() < N) {
      if (performance.now() - start > 1_800_000) throw new Error(`timed out: ${done()} of ${N} events stored`);
      if (performance.now() - shown > 10_000) {
        shown = performance.now();
        process.stderr.write(`  ${run.name}: ${fmt(done())} of ${fmt(N)} stored\n`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const end = performance.now();
    const nodeCpuPerEvent = run.store === 'os' ? ((nodeCpu() - cpuAtFirst) * 1e6) / N : NaN;
    for (const c of nodes) c.send('stop');
    await Promise.all(nodes.map((c) => new Promise((r) => c.once('exit', r))));
    const steady = (end - firstStored) / 1000;
    const rate = N / steady;
    const detCpu = cpus.reduce((s, c) => s + c.user + c.system, 0) / N;
    baseline ??= rate;
    const os = Number.isNaN(nodeCpuPerEvent)
      ? ''
      : `; OpenSearch node ${nodeCpuPerEvent.toFixed(0)} µs CPU/event (${fmt(1e6 / nodeCpuPerEvent)} events/s per node core)`;
    out(
      `  ${run.name.padEnd(36)} ${fmt(rate).padStart(8)} events/s  ${(rate / baseline).toFixed(2)}x SQLite   detectors ${detCpu.toFixed(0)} µs CPU/event${os}`,
    );
  }
}

/** Parts 2 and 3: one store of Q events of each kind, the analyst queries on both, and disk per event. */
async function queries() {
  const sqlitePath = join(dir, 'q.db');
  if (existsSync(builtMark)) out(`queries: the kept store of ${fmt(Q)} events in ${dir} (build and disk figures are in its first run)`);
  else await build(sqlitePath);
  await timeQueries(sqlitePath);
}

async function build(sqlitePath) {
  const { SqliteStore } = await import(new URL('store/sqlite-store.js', dist));
  const { OpenSearchStore } = await import(new URL('store/opensearch/store.js', dist));
  const { normalise } = await import(new URL('events/normalise.js', dist));
  const { toAuditEvent } = await import(new URL('events/decode.js', dist));
  const { toRecords } = await import(new URL('store/records.js', dist));
  rmSync(sqlitePath, { force: true });
  rmSync(`${sqlitePath}-wal`, { force: true });
  await fetch(`${os.OPENSEARCH_URL}/q-*`, { method: 'DELETE' });
  const sqlite = new SqliteStore(sqlitePath);
  const osw = await OpenSearchStore.open(settings('q'));
  const redaction = { enabled: true, key: sqlite.redactionKey };
  const next = eventStream({ seed: 3, rate: 200, people: 0.04 });
  let tSqlite = 0;
  let tOs = 0;
  const cpu0 = nodeCpu();
  const inflight = new Set();
  for (let done = 0; done < Q;) {
    const batch = [];
    for (let i = 0; i < 5000 && done < Q; i++, done++) {
      const line = JSON.stringify(next());
      batch.push(normalise(toAuditEvent(JSON.parse(line)), 'bench', redaction, line));
    }
    let t = performance.now();
    const { batch: b } = sqlite.insert(toRecords(batch));
    sqlite.finish(b, { alerts: [], deadLetters: [] });
    tSqlite += performance.now() - t;
    // Two batches in flight, as the pipeline keeps them.
    t = performance.now();
    const p = osw
      .insert(toRecords(batch))
      .then((r) => osw.finish(r.batch, { alerts: [], deadLetters: [] }))
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 2) await Promise.race(inflight);
    tOs += performance.now() - t;
    if (done % 100_000 === 0) process.stderr.write(`  built ${fmt(done)} of ${fmt(Q)}\r`);
  }
  let t = performance.now();
  await Promise.all(inflight);
  tOs += performance.now() - t;
  const buildCpu = ((nodeCpu() - cpu0) * 1e6) / Q;
  out(
    `queries: a store of ${fmt(Q)} events built at ${fmt(Q / (tOs / 1000))} events/s on OpenSearch (${buildCpu.toFixed(0)} µs node CPU/event) and ${fmt(Q / (tSqlite / 1000))} events/s on SQLite (insert path, no detection)`,
  );
  await osw.refresh();
  await osRequest('POST', '/q-events-*/_flush');
  t = performance.now();
  await osRequest('POST', '/q-events-*/_forcemerge?max_num_segments=1');
  const mergeSecs = (performance.now() - t) / 1000;
  sqlite.db.pragma('wal_checkpoint(TRUNCATE)');
  const sqliteBytes = statSync(sqlitePath).size;
  const indices = await osRequest('GET', '/_cat/indices/q-events-*?format=json&bytes=b&h=index,docs.count,store.size');
  const osBytes = indices.reduce((s, i) => s + Number(i['store.size']), 0);
  const osDocs = indices.reduce((s, i) => s + Number(i['docs.count']), 0);
  out(
    `disk: OpenSearch ${(osBytes / osDocs).toFixed(0)} B/event (${indices.length} day indices, force-merged in ${mergeSecs.toFixed(0)} s), SQLite ${(sqliteBytes / Q).toFixed(0)} B/event: ${(osBytes / osDocs / (sqliteBytes / Q)).toFixed(2)}x`,
  );
  await osw.close();
  sqlite.close();
  writeFileSync(builtMark, `${new Date().toISOString()}\n${lines.join('\n')}\n`);
}

async function timeQueries(sqlitePath) {
  const { SqliteStore } = await import(new URL('store/sqlite-store.js', dist));
  const { OpenSearchStore } = await import(new URL('store/opensearch/store.js', dist));
  const a = new SqliteStore(sqlitePath, { readonly: true });
  const b = await OpenSearchStore.open(settings('q'), { readonly: true });
  const o = await a.overview();
  const span = { since: o.oldestEvent, until: o.newestEvent + 1 };
  const mid = Math.floor((o.oldestEvent + o.newestEvent) / 2);
  const person = (await a.top('user', { limit: 50 })).map((e) => e.value).find((u) => u.includes('@')) ?? (await a.top('user', {})).at(-1).value;
  const ns = (await a.top('namespace', { limit: 3 })).at(-1).value;
  const someEvent = (await a.queryEvents({ namespace: ns }, { limit: 1 })).items[0];
  const cases = [
    ['exec sessions, first page', (s) => s.execSessions({}, { limit: 100 })],
    ['exec sessions of a namespace, one hour', (s) => s.execSessions({ namespace: ns, since: mid, until: mid + 3_600_000_000 }, { limit: 100 })],
    ['Secret reads, first page', (s) => s.secretReads({}, { limit: 100 })],
    ['RBAC changes, first page', (s) => s.rbacChanges({}, { limit: 100 })],
    ['one person’s activity, first page', (s) => s.userActivity({ user: person }, { limit: 100 })],
    ['events of a namespace and verb, first page', (s) => s.queryEvents({ namespace: ns, verb: 'get' }, { limit: 100 })],
    [
      'events of a namespace, second page',
      async (s) => s.queryEvents({ namespace: ns }, { limit: 100, cursor: (await s.queryEvents({ namespace: ns }, { limit: 100 })).next }),
    ],
    ['an event by its auditID', (s) => s.queryEvents({ auditID: someEvent.auditID }, { limit: 10 })],
    ['count of Secret events', (s) => s.countEvents({ resource: 'secrets' })],
    ['top 10 users, whole span', (s) => s.top('user', { ...span, limit: 10 })],
    ['timeline by verb, whole span', (s) => s.eventTimeline('verb', span)],
    ['alerts, first page', (s) => s.queryAlerts({}, { limit: 100 })],
  ];
  const time = async (fn) => {
    for (let i = 0; i < 2; i++) await fn();
    const ms = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      await fn();
      ms.push(performance.now() - t0);
    }
    return ms.sort((x, y) => x - y)[3];
  };
  out(`  ${'query (median of 7)'.padEnd(44)} ${'SQLite'.padStart(9)} ${'OpenSearch'.padStart(11)}   ratio`);
  for (const [name, fn] of cases) {
    const [x, y] = [await time(() => fn(a)), await time(() => fn(b))];
    out(`  ${name.padEnd(44)} ${x.toFixed(1).padStart(6)} ms ${y.toFixed(1).padStart(8)} ms   ${(y / x).toFixed(1)}x`);
  }
  a.close();
  await b.close();
}
