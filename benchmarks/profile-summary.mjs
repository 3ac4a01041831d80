// Summarises V8 CPU profiles (`node --cpu-prof`, e.g. `node benchmarks/webhook.mjs --profile DIR`): self time by
// stage of the webhook path (TLS and HTTP, body framing, decode, normalise, detection, packing, SQLite, compression,
// GC, ...) and the functions that take the most, one table per profile (each thread writes its own).
// Usage: node benchmarks/profile-summary.mjs FILE.cpuprofile... [--events N] (N: events handled while profiled, to
// print microseconds per event)
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { events: { type: 'string' }, top: { type: 'string', default: '15' } }, allowPositionals: true });
const EVENTS = values.events ? Number(values.events) : undefined;

// First match wins: [stage, test on (url, function name)].
const STAGES = [
  ['idle', (u, f) => f === '(idle)'],
  ['GC', (u, f) => f === '(garbage collector)'],
  ['native, outside JS (TLS decrypt and encrypt, socket I/O, libuv)', (u, f) => f === '(program)'],
  ['JSON.parse', (u, f) => u === '' && f === 'parse'],
  ['SQLite (better-sqlite3 statements)', (u, f) => /better-sqlite3/.test(u) || (u === '' && /^(run|get|all|iterate|exec|prepare|transaction)$/.test(f))],
  ['compression (brotli)', (u, f) => /zlib/.test(u) || /brotli|zlib/i.test(f)],
  [
    'store: writer thread (sqlite-store, records, audit-id index)',
    (u) => /dist\/store\/(sqlite-store|writer-thread|audit-id|admission-write|owners|records)/.test(u),
  ],
  ['store: hand-off to the writer thread', (u) => /dist\/store\/writer\.js/.test(u)],
  [
    'body read and framing (json-splitter, webhook-body)',
    (u) => /dist\/sources\/(json-splitter|json-document|webhook-body|body-buffers|webhook-coalescer)/.test(u),
  ],
  ['decode (events/decode, envelopes, lazy bodies)', (u) => /dist\/events\/(decode|envelopes|lazy-bodies|record)/.test(u) || /dist\/pipeline\/decode/.test(u)],
  ['normalise and redact', (u) => /dist\/events\//.test(u)],
  ['detection (rules, JSONata, state)', (u) => /dist\/detect\/|jsonata/.test(u)],
  ['pipeline', (u) => /dist\/pipeline\//.test(u)],
  ['webhook route, auth, metrics', (u) => /dist\/(api|metrics|log)/.test(u)],
  ['fastify', (u) => /node_modules\/(fastify|find-my-way|avvio|light-my-request|@fastify|fast-json-stringify|secure-json-parse|toad-cache|pino)/.test(u)],
  ['TLS (node:tls JS side)', (u) => /node:_tls|node:tls|internal\/tls/.test(u)],
  ['HTTP, streams, sockets (node: JS side)', (u) => /^node:/.test(u)],
  ['worker messages (postMessage, structured clone)', (u, f) => u === '' && /postMessage|receiveMessage|structuredClone/i.test(f)],
  ['Buffer and string conversion', (u, f) => u === '' && /toString|utf8|latin1|write|copy|slice|from|indexOf|compare/i.test(f)],
  ['other native', (u) => u === ''],
  ['other JS', () => true],
];

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  // Sample i lasted timeDeltas[i + 1] (the next delta); the last one is dropped.
  for (let i = 0; i < p.samples.length - 1; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + p.timeDeltas[i + 1]);
  const stages = new Map();
  const fns = new Map();
  let total = 0;
  let busy = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    const u = n.callFrame.url;
    const f = n.callFrame.functionName || '(anonymous)';
    const stage = STAGES.find(([, t]) => t(u, f))[0];
    stages.set(stage, (stages.get(stage) ?? 0) + us);
    total += us;
    if (stage !== 'idle') busy += us;
    const key = `${f} ${u.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
    if (stage !== 'idle') fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const per = (us) => (EVENTS ? `${(us / EVENTS).toFixed(2).padStart(7)} µs/event` : '');
  console.log(
    `\n${file}: ${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy${EVENTS ? ` (${EVENTS.toLocaleString('en-US')} events)` : ''}`,
  );
  for (const [s, us] of [...stages].sort((a, b) => b[1] - a[1])) {
    if (s === 'idle') continue;
    console.log(`  ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${(us / 1e6).toFixed(2).padStart(7)} s ${per(us)}  ${s}`);
  }
  console.log('  top functions (self time):');
  for (const [k, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
    console.log(`  ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${k}`);
  }
}
