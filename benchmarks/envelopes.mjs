// Envelope decoding benchmark (issue #18): how much slower the managed clusters' envelopes are than native events.
// One realistic mix of events (lib/generate.mjs) is written in each provider's per-record form: EKS CloudWatch log
// events (as the CloudWatch source hands them over), GKE LogEntries (a log sink's lines), AKS diagnostic records (a
// storage blob's lines), and Vector forwarder records. Measures in one process, formats taking turns round by round:
//  - decode: the pipeline's decode step (parse, unwrap, validate, redact, normalise, pack for the store), CPU per event;
//  - ingest: `kaudit ingest --no-detect` of each file into a fresh store (separate processes), events/s.
// Prints each format's figures and its ratio to native (goal: ingest within 25% of native, ratio >= 0.75).
// Usage: node benchmarks/envelopes.mjs [--events N] [--rounds R]   (needs `npm run build` first)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const { values } = parseArgs({ options: { events: { type: 'string', default: '60000' }, rounds: { type: 'string', default: '3' } } });
const N = Number(values.events);
const ROUNDS = Number(values.rounds);
const dist = new URL('../dist/', import.meta.url);
const { decodeBatch } = await import(new URL('pipeline/decode.js', dist));
const BIN = new URL('../bin/kaudit.js', import.meta.url).pathname;

const next = eventStream({ seed: 7, rate: 12, people: 0.04 });
const events = Array.from({ length: N }, () => next());

const GROUP = '/aws/eks/bench/cluster';
const RESOURCE = '/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/BENCH';
const GRPC = { 401: 16, 403: 7, 404: 5, 409: 6, 422: 3, 500: 13 };
function logEntry(e) {
  const r = e.objectRef ?? {};
  const rn = r.resource
    ? `${r.apiGroup || 'core'}/${r.apiVersion || 'v1'}${r.namespace ? '/namespaces/' + r.namespace : ''}/${r.resource}${r.name ? '/' + r.name : ''}${r.subresource ? '/' + r.subresource : ''}`
    : e.requestURI.slice(1);
  const method = `io.k8s.${r.apiGroup || 'core'}.${r.apiVersion || 'v1'}.${r.resource ?? 'nonresource'}${r.subresource ? '.' + r.subresource : ''}.${e.verb}`;
  const code = e.responseStatus?.code ?? 200;
  return {
    insertId: e.auditID.slice(0, 18),
    labels: e.annotations ?? {},
    logName: 'projects/bench/logs/cloudaudit.googleapis.com%2Factivity',
    operation: { first: true, id: e.auditID, last: true, producer: 'k8s.io' },
    protoPayload: {
      '@type': 'type.googleapis.com/google.cloud.audit.AuditLog',
      authenticationInfo: { principalEmail: e.user.username },
      authorizationInfo: [{ granted: code !== 403, permission: method, resource: rn }],
      methodName: method,
      ...(e.requestObject ? { request: { '@type': `core.k8s.io/v1.${e.requestObject.kind ?? 'Unknown'}`, ...e.requestObject } } : {}),
      requestMetadata: { callerIp: e.sourceIPs?.[0] ?? '', callerSuppliedUserAgent: e.userAgent ?? '' },
      resourceName: rn,
      serviceName: 'k8s.io',
      status: GRPC[code] ? { code: GRPC[code] } : {},
    },
    receiveTimestamp: e.stageTimestamp,
    resource: { labels: { cluster_name: 'bench', location: 'europe-west1', project_id: 'bench' }, type: 'k8s_cluster' },
    severity: 'INFO',
    timestamp: e.requestReceivedTimestamp,
  };
}

const lines = events.map((e) => JSON.stringify(e));
const formats = {
  native: lines,
  eks: lines.map((m, i) => JSON.stringify({ logGroupName: GROUP, logStreamName: 'kube-apiserver-audit-1', timestamp: 1793613600000 + i, message: m })),
  gke: events.map((e) => JSON.stringify(logEntry(e))),
  aks: lines.map((m, i) =>
    JSON.stringify({
      operationName: 'Microsoft.ContainerService/managedClusters/diagnosticLogs/Read',
      category: 'kube-audit',
      resourceId: RESOURCE,
      properties: { log: m, stream: 'stdout', pod: 'kube-apiserver-1' },
      time: events[i].stageTimestamp,
    }),
  ),
  forwarder: lines.map((m, i) =>
    JSON.stringify({ file: '/var/log/kubernetes/audit/audit.log', host: 'cp-1', message: m, source_type: 'file', timestamp: events[i].stageTimestamp }),
  ),
};

const redaction = { enabled: true, key: Buffer.alloc(32, 7) };
function decodeOnce(ls) {
  const t0 = process.cpuUsage();
  let n = 0;
  for (let i = 0; i < ls.length; i += 2000) {
    const recs = ls.slice(i, i + 2000).map((text, j) => ({ text, line: true, where: `b:${i + j}` }));
    const d = decodeBatch('bench', 'bench', recs, { redaction, pack: true, keep: 'none', warn: () => {} });
    n += d.count;
    if (d.deadLetters.length) throw new Error(`bad input in the benchmark: ${d.deadLetters[0].reason}`);
  }
  const c = process.cpuUsage(t0);
  return { n, us: (c.user + c.system) / n };
}

const dir = mkdtempSync(join(tmpdir(), 'kaudit-envbench-'));
for (const [f, ls] of Object.entries(formats)) writeFileSync(join(dir, `${f}.log`), ls.join('\n') + '\n');
function ingestOnce(f) {
  const db = join(dir, `${f}.db`);
  rmSync(db, { force: true });
  rmSync(db + '-wal', { force: true });
  rmSync(db + '-shm', { force: true });
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN, 'ingest', '--quiet', '--no-detect', '--db', db, join(dir, `${f}.log`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ingest ${f}: ${r.stderr}`);
  return N / ((performance.now() - t0) / 1000);
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const dec = Object.fromEntries(Object.keys(formats).map((f) => [f, []]));
const ing = Object.fromEntries(Object.keys(formats).map((f) => [f, []]));
for (const ls of Object.values(formats)) decodeOnce(ls.slice(0, 5000)); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  for (const [f, ls] of Object.entries(formats)) dec[f].push(decodeOnce(ls).us);
  for (const f of Object.keys(formats)) ing[f].push(ingestOnce(f));
}
rmSync(dir, { recursive: true, force: true });
console.log(`${N} events, ${ROUNDS} rounds, medians; decode = the pipeline's decode step, CPU per event; ingest = kaudit ingest --no-detect, wall clock`);
console.log('format      decode µs/event  vs native   ingest events/s  vs native');
for (const f of Object.keys(formats)) {
  const d = median(dec[f]);
  const i = median(ing[f]);
  console.log(
    `${f.padEnd(10)}  ${d.toFixed(2).padStart(15)}  ${(median(dec.native) / d).toFixed(2).padStart(9)}   ${Math.round(i).toLocaleString('en-US').padStart(15)}  ${(i / median(ing.native)).toFixed(2).padStart(9)}`,
  );
}
