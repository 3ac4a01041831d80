// Kafka scale-out benchmark (issue 6). Starts a real single-node Kafka broker (scripts/kafka/kafka.sh), writes N
// generated audit events to a 4-partition events topic through the ingest-only producer (acks=all), then measures
// events/s from the topic through decoding, detection (the bundled rules) and the SQLite store with one consumer
// process and with two (each with its own store, as separate detector nodes would have). For comparison it also times
// `kaudit ingest` (file import) of the same events on the same machine.
//
// Usage: node benchmarks/kafka.mjs [--events N] [--no-detect] [--no-import]   (needs `npm run build` first, Java 17, Maven)
// KAUDIT_DIST=dir uses another build of src/ than dist/.
import { execFileSync, fork, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const { values } = parseArgs({
  options: { events: { type: 'string', default: '100000' }, 'no-detect': { type: 'boolean' }, 'no-import': { type: 'boolean' } },
});
const N = Number(values.events);
const root = fileURLToPath(new URL('..', import.meta.url));
const distDir = resolve(process.env.KAUDIT_DIST ?? join(root, 'dist'));
const dist = pathToFileURL(distDir + '/');
const script = join(root, 'scripts', 'kafka', 'kafka.sh');
const fmt = (n) => Math.round(n).toLocaleString('en-US');

// Where the cores go while detectors consume: CPU seconds of the whole machine (/proc/stat) and of one process with
// all its threads (/proc/PID/stat), in clock ticks of USER_HZ.
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
function processCpu(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state): utime is field 14, stime 15
    return (Number(f[11]) + Number(f[12])) / HZ;
  } catch {
    return NaN;
  }
}
function machineCpu() {
  const t = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return (t.reduce((a, b) => a + b, 0) - t[3] - t[4]) / HZ; // all but idle and iowait
}

const check = spawnSync('bash', [script, 'check'], { encoding: 'utf8' });
if (check.status !== 0) {
  console.log(`kafka benchmark skipped: ${check.stderr.trim()}`);
  process.exit(0);
}
const { defaultKafkaConfig } = await import(new URL('config/kafka.js', dist));
const { KafkaEventsProducer } = await import(new URL('sinks/kafka.js', dist));
const { default: kafkajs } = await import('kafkajs');

const env = Object.fromEntries(
  execFileSync('bash', [script, 'start', '--watch-pid', String(process.pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    .trim()
    .split('\n')
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
);
const brokerPid = Number(readFileSync(join(env.KAFKA_DIR, 'broker.pid'), 'utf8'));
const dir = mkdtempSync(join(tmpdir(), 'kaudit-bench-kafka-'));
const brokers = [env.KAFKA_BROKERS];
const topic = 'bench-events';
const kafka = new kafkajs.Kafka({ clientId: 'bench', brokers, logLevel: kafkajs.logLevel.NOTHING });

try {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
  await admin.disconnect();

  // Events, as the apiserver's webhook would send them: batches of 500 of one cluster. Also a log file for `kaudit ingest`.
  const next = eventStream({ seed: 1, rate: 12 });
  const batches = [];
  const logPath = join(dir, 'audit.log');
  const log = createWriteStream(logPath);
  let bytes = 0;
  for (let i = 0; i < N; i += 500) {
    const records = [];
    for (let k = i; k < Math.min(N, i + 500); k++) {
      const text = JSON.stringify(next());
      bytes += text.length;
      records.push({ text, where: `event ${k}` });
      log.write(text + '\n');
    }
    batches.push({ source: 'webhook', cluster: 'bench', records });
  }
  await new Promise((r) => log.end(r));

  const config = { ...defaultKafkaConfig(), brokers, topics: { events: [topic], alerts: '', deadLetter: '' } };
  const producer = new KafkaEventsProducer({ config, kafka });
  await producer.start();
  let t0 = performance.now();
  // Four webhook requests in flight, as a busy apiserver would have.
  const inflight = new Set();
  for (const b of batches) {
    const p = producer.submit(b).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 4) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const produceSecs = (performance.now() - t0) / 1000;
  await producer.stop();

  const rows = [];
  rows.push([
    `ingest-only produce to the topic (acks=all, 500 events/request, 4 in flight)`,
    N / produceSecs,
    `${producer.stats.messages} messages, ${(bytes / N).toFixed(0)} B/event`,
  ]);

  let importCpuUs = NaN;
  if (!values['no-import']) {
    const db = join(dir, 'import.db');
    // `kaudit ingest` from the same build (bin/kaudit.js runs dist/cli/main.js).
    const main = join(dir, 'kaudit-cli.mjs');
    writeFileSync(
      main,
      // The import's CPU time (all threads) is written on exit: a figure that the machine's load moves less than wall time.
      `const { runCli } = await import(${JSON.stringify(new URL('cli/main.js', dist).href)});\nprocess.exitCode = await runCli(process.argv.slice(2));\n` +
        `const c = process.cpuUsage(); (await import('node:fs')).writeFileSync(${JSON.stringify(join(dir, 'import-cpu.json'))}, JSON.stringify(c));\n`,
    );
    const args = [main, 'ingest', '--db', db, '--rules', join(root, 'detections'), logPath];
    if (values['no-detect']) args.push('--no-detect');
    t0 = performance.now();
    const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
    const secs = (performance.now() - t0) / 1000;
    let cpu = '';
    if (r.status === 0) {
      const c = JSON.parse(readFileSync(join(dir, 'import-cpu.json'), 'utf8'));
      importCpuUs = (c.user + c.system) / N;
      cpu = `; ${importCpuUs.toFixed(1)} µs CPU/event`;
    }
    rows.push([
      `file import of the same events (kaudit ingest, one process)`,
      r.status === 0 ? N / secs : NaN,
      r.status === 0 ? `${secs.toFixed(1)} s incl. start-up${cpu}` : `failed: ${r.stderr.trim().split('\n').pop()}`,
    ]);
  }

  let rules = 0;
  for (const consumers of [1, 2]) {
    const nodes = [];
    const stats = [];
    const cpus = [];
    const rss = [];
    const start = performance.now();
    let firstStored = 0;
    let cpuAtFirst;
    let failed = '';
    let stopping = false;
    const cpuNow = () => ({ machine: machineCpu(), broker: processCpu(brokerPid), detectors: nodes.map((c) => processCpu(c.pid)) });
    for (let i = 0; i < consumers; i++) {
      const settings = {
        dist: distDir + '/',
        db: join(dir, `consumers-${consumers}-${i}.db`),
        detect: !values['no-detect'],
        rulesDir: join(root, 'detections'),
        kafka: {
          brokers,
          groupId: `bench-${consumers}`,
          topics: { events: [topic], alerts: '', deadLetter: '' },
          sessionTimeoutMs: 10000,
          heartbeatIntervalMs: 1000,
          // Settings to try against the defaults, e.g. KAUDIT_BENCH_KAFKA='{"partitionsConsumedConcurrently":4}'.
          ...JSON.parse(process.env.KAUDIT_BENCH_KAFKA ?? '{}'),
        },
      };
      const child = fork(join(root, 'benchmarks', 'kafka-node.js'), [], {
        execArgv: process.env.KAUDIT_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KAUDIT_BENCH_PROF}`] : [],
        env: { ...process.env, KAUDIT_BENCH_NODE: JSON.stringify(settings), KAUDIT_LOG_LEVEL: 'error' },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      child.on('message', (m) => {
        if (m.type !== 'stats') return;
        stats[i] = m.stats;
        cpus[i] = m.cpu;
        rss[i] = m.maxRss;
        rules = m.rules;
        if (!firstStored && m.stats.stored > 0) {
          firstStored = performance.now();
          cpuAtFirst = cpuNow();
        }
      });
      child.on('exit', (code) => {
        if (code !== 0 && !stopping) failed = `consumer process ${i} exited with code ${code}`;
      });
      nodes.push(child);
    }
    const done = () => stats.filter(Boolean).reduce((s, x) => s + x.stored + x.duplicates, 0);
    while (done() < N) {
      if (failed) throw new Error(failed);
      if (performance.now() - start > 600_000) throw new Error(`timed out: ${done()} of ${N} events consumed`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const end = performance.now();
    const cpuAtEnd = cpuNow();
    stopping = true;
    for (const c of nodes) c.send('stop');
    await Promise.all(nodes.map((c) => new Promise((r) => c.once('exit', r))));
    const total = (end - start) / 1000;
    const steady = (end - firstStored) / 1000;
    const cores = (a, b) => (b - a) / steady;
    const detectorCores = cpuAtEnd.detectors.reduce((s, c, i) => s + cores(cpuAtFirst.detectors[i], c), 0);
    const brokerCores = cores(cpuAtFirst.broker, cpuAtEnd.broker);
    const machineCores = cores(cpuAtFirst.machine, cpuAtEnd.machine);
    // CPU of the consumer processes (start-up and group join included, as the import's includes its start-up).
    const cpuUs = cpus.reduce((s, c) => s + c.user + c.system, 0) / N;
    const vsImport = Number.isNaN(importCpuUs) ? '' : ` (${(importCpuUs / cpuUs).toFixed(2)}x the import's speed per CPU-second)`;
    rows.push([
      `topic -> detection -> store, ${consumers} consumer process${consumers > 1 ? 'es' : ''}`,
      N / steady,
      `${steady.toFixed(1)} s from the first stored batch; ${fmt(N / total)} events/s counting start-up and group join (${total.toFixed(1)} s); ${cpuUs.toFixed(1)} µs CPU/event${vsImport}; peak RSS ${rss.map((k) => Math.round(k / 1024)).join(', ')} MB; cores busy from the first stored batch: ${machineCores.toFixed(2)} of ${availableParallelism()} (detectors ${detectorCores.toFixed(2)}, broker ${brokerCores.toFixed(2)}, the rest ${(machineCores - detectorCores - brokerCores).toFixed(2)})`,
    ]);
  }

  console.log(
    `kafka: ${fmt(N)} events, one local Kafka ${env.KAFKA_VERSION} broker (KRaft, -Xmx512m) on the same 2 cores, 4 partitions, detection: ${values['no-detect'] ? 'off' : `${rules} rules`}`,
  );
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [name, rate, note] of rows) console.log(`  ${name.padEnd(w)}  ${Number.isNaN(rate) ? '-' : fmt(rate).padStart(9)} events/s   ${note}`);
} finally {
  execFileSync('bash', [script, 'stop', '--dir', env.KAFKA_DIR], { stdio: 'inherit' });
  rmSync(dir, { recursive: true, force: true });
}
