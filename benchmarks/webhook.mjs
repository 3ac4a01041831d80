// Webhook load benchmark (issue 4). Starts the server (benchmarks/webhook-server.mjs: writer thread, real detection
// rules, the API with TLS and tokens) in its own process, then in this one plays several kube-apiservers:
//  1. throughput: --clients concurrent clients POST 400-event EventLists back to back for --seconds; prints sustained
//     events/s (events committed and acknowledged), POST latency p50/p99, and 503s (each retried after 100 ms);
//  2. open loop at each of --rates events/s (default 50,000 then 5,000) for --seconds, with a WebSocket feed client
//     connected; each batch carries two exec events that raise alerts; prints the rate achieved, POST latency and
//     POST-to-alert-on-the-socket latency p50/p99.
// Events come from benchmarks/lib/generate.mjs, shaped as the apiserver sends them (items without kind/apiVersion),
// each request with fresh audit ids so nothing is a duplicate.
// Usage: node benchmarks/webhook.mjs [--clients 16] [--seconds 15] [--rates 50000,5000] [--people 0.04] [--plain] [--profile DIR]
//        [--skip-throughput]; env BENCH_NO_DETECT=1 (no rules), BENCH_RULES=DIR, BENCH_COALESCE=off|MAX_EVENTS[,IN_FLIGHT]
//        (needs `npx tsc -p tsconfig.json` first)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { apiserverBodies, client, makeTls } from './lib/webhook-client.mjs';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '15' },
    rates: { type: 'string', default: '50000,5000' },
    plain: { type: 'boolean' },
    profile: { type: 'string' },
    'skip-throughput': { type: 'boolean' },
    // Share of requests made by people with kubectl; the rest is machinery. 0.04 is the production-like mix of the
    // import benchmark; the generator's default 0.24 is a human-heavy mix (about one alert in eight events).
    people: { type: 'string', default: '0.04' },
  },
});
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const RATES = values.rates ? values.rates.split(',').map(Number) : []; // --rates '': the throughput phase alone
const BATCH = 400;
const TLS = !values.plain;
const TOKEN = 'bench-ingest-0123456789abcdef0123456789';
const READ_TOKEN = 'bench-read-0123456789abcdef0123456789';

const dir = mkdtempSync(join(tmpdir(), 'kaudit-webhook-bench-'));
let ca;
const serverArgs = [dir];
if (TLS) {
  const tls = makeTls(dir, [
    [TOKEN, 'ingest', 'bench'],
    [READ_TOKEN, 'read'],
  ]);
  ca = tls.ca;
  serverArgs.push('--tls', tls.cert, tls.key, tls.tokens);
}

const nodeArgs = values.profile ? ['--cpu-prof', '--cpu-prof-dir', values.profile] : [];
const child = spawn(process.execPath, [...nodeArgs, new URL('./webhook-server.mjs', import.meta.url).pathname, ...serverArgs], {
  stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
});
const info = await new Promise((resolve, reject) => {
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl >= 0) resolve(JSON.parse(buf.slice(0, nl)));
  });
  child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
});
const scheme = TLS ? 'https' : 'http';
const base = `${scheme}://127.0.0.1:${info.port}`;
const agent = TLS ? new HttpsAgent({ keepAlive: true, maxSockets: CLIENTS + 4, ca }) : new HttpAgent({ keepAlive: true, maxSockets: CLIENTS + 4 });

const PEOPLE = Number(values.people);
const bodies = apiserverBodies({ seed: 7, people: PEOPLE, batch: BATCH });
const avgBytes = bodies.avgBytes;
const nextBody = () => bodies.next();
let plant = 0; // planted exec events, numbered across phases (alerts are unique per rule, cluster and audit id)

// Open-loop phases send like many apiservers at once: up to 64 requests in flight (the server's own limit).
const openAgent = TLS ? new HttpsAgent({ keepAlive: true, maxSockets: 64, ca }) : new HttpAgent({ keepAlive: true, maxSockets: 64 });

const send = client({ base, agent, token: TLS ? TOKEN : undefined });
const post = (body, via = agent) => send('/api/v1/audit/webhook', body, via);

/** Events the server has committed from the webhook (its kaudit_events_ingested_total). */
async function serverStored() {
  child.send('stats');
  const m = await new Promise((r) => child.once('message', r));
  return Number(/kaudit_events_ingested_total\{source="webhook"\} (\d+)/.exec(m.metrics)?.[1] ?? 0);
}

/** The server process's CPU time (all its threads), microseconds. */
async function serverCpu() {
  child.send('cpu');
  const m = await new Promise((r) => child.once('message', r));
  return m.cpu;
}

function pct(xs, p) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const f0 = (n) => Math.round(n).toLocaleString('en-US');
const f1 = (n) => n.toFixed(1);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

console.log(
  `server: ${base} (${TLS ? 'TLS + bearer token' : 'plain HTTP'}), detection: ${info.detector}; batches of ${BATCH} events, ~${f0(avgBytes / BATCH)} bytes/event, ${f0(avgBytes / 1024)} KiB/batch; ${PEOPLE * 100}% of requests by people`,
);

async function throughput() {
  // Warm up (JIT, SQLite pages) for 2 s, then measure.
  const stats = { acked: 0, lat: [], busy: 0, errors: 0 };
  let measuring = false;
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const r = await post(nextBody());
      if (r.status === 200) {
        if (measuring) {
          // This request's own events (stored/duplicates in the reply are its whole commit group's).
          stats.acked += r.body.events;
          stats.lat.push(r.ms);
        }
      } else if (r.status === 503) {
        if (measuring) stats.busy++;
        await sleep(100);
      } else {
        stats.errors++;
        if (stats.errors < 5) console.error(`POST: ${r.status} ${r.error ?? JSON.stringify(r.body)}`);
        await sleep(100);
      }
    }
  };
  const workers = Array.from({ length: CLIENTS }, worker);
  await sleep(2000);
  measuring = true;
  const stored0 = await serverStored();
  const cpu0 = await serverCpu();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const secs = (performance.now() - t0) / 1000;
  measuring = false;
  const own = process.cpuUsage(own0);
  const cpu1 = await serverCpu();
  const stored = (await serverStored()) - stored0;
  const userSecs = (cpu1.user - cpu0.user) / 1e6;
  const sysSecs = (cpu1.system - cpu0.system) / 1e6;
  const cpuSecs = userSecs + sysSecs;
  stop = true;
  await Promise.all(workers);
  console.log(
    `throughput: ${CLIENTS} clients for ${f1(secs)} s: ${f0(stats.acked / secs)} events/s acknowledged (${f0(stored / secs)} events/s committed by the server's count), ` +
      `POST p50 ${f1(pct(stats.lat, 50))} ms, p99 ${f1(pct(stats.lat, 99))} ms, max ${f1(Math.max(...stats.lat))} ms; 503s ${stats.busy}, errors ${stats.errors}; ` +
      `server CPU ${f1(cpuSecs)} s (user ${f1(userSecs)}, system ${f1(sysSecs)}; ${f0(stored / cpuSecs)} events per CPU-second); the clients (this process, on the same 2 cores) used ${f1((own.user + own.system) / 1e6)} s of CPU; load average ${loadavg()[0].toFixed(1)}`,
  );
}

async function delivery(RATE) {
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(`${TLS ? 'wss' : 'ws'}://127.0.0.1:${info.port}/api/v1/alerts/stream`, {
    ca,
    headers: TLS ? { authorization: `Bearer ${READ_TOKEN}` } : {},
    perMessageDeflate: false,
  });
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  const sentAt = new Map(); // auditID of a planted exec event -> POST start
  const delivery = [];
  let alerts = 0;
  let measureFrom = Infinity;
  ws.on('message', (d) => {
    const now = performance.now();
    alerts++;
    const a = JSON.parse(d.toString());
    const t0 = sentAt.get(a.auditID);
    if (t0 !== undefined) {
      if (t0 >= measureFrom) delivery.push(now - t0);
      sentAt.delete(a.auditID);
    }
  });
  // Each batch: template events plus two exec events on pods named after the request, so each raises a new alert.
  function bodyWithExec() {
    const b = nextBody();
    if (process.env.BENCH_NO_PLANT) return { ids: [], body: b };
    const text = b.toString('utf8');
    const extra = [0, 1].map(() => {
      const k = plant++;
      const id = `eeeeeeee-0000-4000-8000-${k.toString(16).padStart(12, '0')}`;
      const t = new Date().toISOString().replace('Z', '000Z');
      return {
        id,
        json: JSON.stringify({
          level: 'Metadata',
          auditID: id,
          stage: 'ResponseStarted',
          requestURI: `/api/v1/namespaces/payments/pods/bench-${k}/exec?command=sh&container=web&stdin=true&stdout=true&tty=true`,
          verb: 'create',
          user: { username: 'alice@example.com', groups: ['system:authenticated'] },
          sourceIPs: ['203.0.113.10'],
          userAgent: 'kubectl/v1.30.2',
          objectRef: { resource: 'pods', namespace: 'payments', name: `bench-${k}`, apiVersion: 'v1', subresource: 'exec' },
          responseStatus: { metadata: {}, code: 101 },
          requestReceivedTimestamp: t,
          stageTimestamp: t,
          annotations: { 'authorization.k8s.io/decision': 'allow' },
        }),
      };
    });
    return { ids: extra.map((e) => e.id), body: Buffer.from(text.slice(0, -2) + ',' + extra.map((e) => e.json).join(',') + ']}') };
  }
  const lat = [];
  let sent = 0;
  let busy = 0;
  let acked = 0;
  let lastAck = 0;
  const interval = (BATCH / RATE) * 1000;
  // The first 2 s warm up (JIT, caches) and are not measured.
  const t0 = performance.now();
  measureFrom = t0 + 2000;
  const inflight = [];
  while (performance.now() - t0 < SECONDS * 1000 + 2000) {
    const due = t0 + sent * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const { ids, body } = bodyWithExec();
    const start = performance.now();
    for (const id of ids) sentAt.set(id, start);
    sent++;
    inflight.push(
      post(body, openAgent).then((r) => {
        if (r.status !== 200) busy++;
        else {
          acked += BATCH + 2;
          lastAck = performance.now();
          if (start >= measureFrom) lat.push(r.ms);
        }
      }),
    );
  }
  const secs = (performance.now() - t0) / 1000;
  await Promise.all(inflight);
  const ackSecs = (lastAck - t0) / 1000;
  await sleep(500);
  ws.close();
  console.log(
    `open loop at ${f0(RATE)} events/s offered (${f0((sent * BATCH) / secs)} sent, ${f0(acked / ackSecs)} acknowledged) for ${f1(secs - 2)} s after 2 s of warm-up: POST p50 ${f1(pct(lat, 50))} ms, p99 ${f1(pct(lat, 99))} ms; ` +
      `alert POST-to-WebSocket p50 ${f1(pct(delivery, 50))} ms, p99 ${f1(pct(delivery, 99))} ms, max ${f1(Math.max(...delivery))} ms ` +
      `(${delivery.length} planted alerts timed, ${sentAt.size} not delivered, ${alerts} alerts received in all; load average ${loadavg()[0].toFixed(1)}); non-200 ${busy}`,
  );
}

try {
  if (!values['skip-throughput']) await throughput();
  for (const r of RATES) await delivery(r);
  child.send('stats');
  const stats = await new Promise((r) => child.once('message', r));
  const m = /kaudit_ingest_overloaded_total\{source="webhook"\} (\d+)/.exec(stats.metrics);
  console.log(`server RSS at the end: ${f0(stats.rss / 1048576)} MiB; batches refused as overloaded: ${m ? m[1] : 0}`);
} finally {
  child.send('stop');
  await new Promise((r) => child.once('exit', r));
  agent.destroy();
  openAgent.destroy();
  rmSync(dir, { recursive: true, force: true });
}
