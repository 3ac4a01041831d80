// Soak (issue #21): `kaudit serve`, run as a command with TLS and a bearer token, under a sustained open-loop webhook
// load (default 20,000 events/s in 400-event EventLists, as kube-apiservers send them) for --seconds (default 600).
// Prints, every --every seconds, the events acknowledged in that window, 503s, POST latency p50/p99, and the server
// process's resident memory (VmRSS) and peak (VmHWM): the memory curve, which must stay flat (target: under 200 MB).
// Usage: node benchmarks/serve-soak.mjs [--rate 20000] [--seconds 600] [--every 30] [--config FILE]   (needs `npm run build` first)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:https';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { apiserverBodies, client, makeTls } from './lib/webhook-client.mjs';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '20000' },
    seconds: { type: 'string', default: '600' },
    every: { type: 'string', default: '30' },
    config: { type: 'string' },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const EVERY = Number(values.every);
const BATCH = 400;
const TOKEN = 'soak-ingest-0123456789abcdef0123456789';
const READER = 'soak-read-0123456789abcdef01234567890';

const dir = mkdtempSync(join(tmpdir(), 'kaudit-soak-'));
const tls = makeTls(dir, [
  [TOKEN, 'ingest', 'soak'],
  [READER, 'read'],
]);
const ca = tls.ca;

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
// As a command, the way `npx kaudit serve` runs (bin/kaudit.js's own node flags included).
const child = spawn(
  fileURLToPath(new URL('../bin/kaudit.js', import.meta.url)),
  [
    'serve',
    '--db',
    join(dir, 'kaudit.db'),
    '--listen',
    `127.0.0.1:${port}`,
    '--tls-cert',
    tls.cert,
    '--tls-key',
    tls.key,
    '--tokens-file',
    tls.tokens,
    ...(values.config ? ['--config', values.config] : []),
  ],
  { stdio: ['ignore', 'ignore', 'inherit'] },
);
const base = `https://127.0.0.1:${port}`;
const agent = new Agent({ keepAlive: true, maxSockets: 64, ca });

const post = client({ base, agent, token: TOKEN });
// The server's own view, from /metrics: the main thread's V8 heap in use and the detection state's entries.
const scrape = client({ base, agent: new Agent({ keepAlive: true, maxSockets: 1, ca }), token: READER });
async function serverGauges() {
  const r = await scrape('/metrics');
  const g = (name) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(r.text ?? '')?.[1] ?? NaN);
  return { heap: g('nodejs_heap_size_used_bytes'), state: g('kaudit_detection_state_entries') };
}

for (let i = 0; ; i++) {
  const r = await post('/healthz');
  if (r.status === 200) break;
  if (i > 300) throw new Error('kaudit serve did not answer /healthz');
  await new Promise((res) => setTimeout(res, 100));
}

const bodies = apiserverBodies({ seed: 11, people: 0.04, batch: BATCH });
const nextBody = () => bodies.next();

function memOf(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}
const pct = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : NaN);
const mb = (b) => (b / 1e6).toFixed(0);

console.log(
  `kaudit serve (TLS, bearer token, the bundled rules) at ${base}; offering ${RATE.toLocaleString('en-US')} events/s in ${BATCH}-event POSTs for ${SECONDS} s; load average at start ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
// Open loop: a POST every BATCH/RATE seconds, whatever the answers; at most 64 in flight (see below).
let win = { acked: 0, busy: 0, failed: 0, shed: 0, lat: [] };
const total = { acked: 0, busy: 0, failed: 0, shed: 0, offered: 0 };
const curve = [];
const interval = (BATCH / RATE) * 1000;
const start = performance.now();
let sent = 0;
const inflight = new Set();
let nextReport = EVERY;
while (performance.now() - start < SECONDS * 1000) {
  const due = Math.floor((performance.now() - start) / interval);
  while (sent < due) {
    sent++;
    total.offered += BATCH;
    // 64 POSTs already waiting: this one is not sent (queued here it would only wait for a socket, and its latency
    // would be this process's queue, not the server's).
    if (inflight.size >= 64) {
      win.shed++;
      total.shed++;
      continue;
    }
    const p = post('/api/v1/audit/webhook', nextBody()).then((r) => {
      inflight.delete(p);
      if (r.status === 200) {
        win.acked += BATCH;
        total.acked += BATCH;
        win.lat.push(r.ms);
      } else if (r.status === 503) {
        win.busy++;
        total.busy++;
      } else {
        win.failed++;
        total.failed++;
        // Neither stored nor refused: say what it was (a status, or the client's error such as a reset connection).
        if (total.failed <= 5) console.log(`a POST failed: ${r.status || ''} ${r.error ?? JSON.stringify(r.body)}`);
      }
    });
    inflight.add(p);
  }
  const t = (performance.now() - start) / 1000;
  if (t >= nextReport) {
    const m = memOf(child.pid);
    const g = await serverGauges();
    curve.push({ t: Math.round(t), ...m, ...g });
    console.log(
      `t=${String(Math.round(t)).padStart(4)} s  acked ${Math.round(win.acked / EVERY)
        .toLocaleString('en-US')
        .padStart(
          7,
        )} events/s  503s ${win.busy}  failed ${win.failed}  not sent ${win.shed}  POST p50 ${pct(win.lat, 50).toFixed(0)} ms p99 ${pct(win.lat, 99).toFixed(0)} ms  RSS ${mb(m.rss)} MB (peak ${mb(m.hwm)} MB)  heap ${mb(g.heap)} MB  state ${g.state.toLocaleString('en-US')}  load ${loadavg()[0].toFixed(1)}`,
    );
    win = { acked: 0, busy: 0, failed: 0, shed: 0, lat: [] };
    nextReport += EVERY;
  }
  await new Promise((r) => setTimeout(r, Math.max(1, Math.min(interval, 20))));
}
await Promise.all(inflight);
const m = memOf(child.pid);
child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
const early = curve.slice(0, Math.max(1, Math.floor(curve.length / 5)));
const late = curve.slice(-Math.max(1, Math.floor(curve.length / 5)));
const avg = (xs, k = 'rss') => xs.reduce((a, x) => a + x[k], 0) / xs.length;
console.log(
  `offered ${total.offered.toLocaleString('en-US')} events, acknowledged ${total.acked.toLocaleString('en-US')} (${Math.round(total.acked / SECONDS).toLocaleString('en-US')} events/s), ${total.busy} POSTs answered 503, ${total.failed} failed, ${total.shed} not sent (64 already waiting: the server was behind)`,
);
console.log(
  `resident memory of kaudit serve: peak ${mb(m.hwm)} MB (target < 200 MB); first fifth of the run ${mb(avg(early))} MB on average, last fifth ${mb(avg(late))} MB (growth ${(((avg(late) - avg(early)) / avg(early)) * 100).toFixed(1)}%)`,
);
console.log(
  `main thread's V8 heap in use: first fifth ${mb(avg(early, 'heap'))} MB, last fifth ${mb(avg(late, 'heap'))} MB; detection state entries: first fifth ${Math.round(avg(early, 'state')).toLocaleString('en-US')}, last fifth ${Math.round(avg(late, 'state')).toLocaleString('en-US')} (bounded by detection.state)`,
);
rmSync(dir, { recursive: true, force: true });
