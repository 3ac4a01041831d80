// What carrying detection state across rebalances costs a Kafka detector (issue 20): before each offset commit of a
// partition whose state changed, the detector takes that partition's share of the state (saveState(origin)),
// serialises and gzips it. Measured on the bundled rules after the generated mix of benchmarks/lib/generate.mjs has
// filled the state, spread over `--partitions` partitions by cluster/user as the events topic's key spreads it:
//   - detection of one batch of `--batch` new events with a partition origin (the baseline: one fetched batch, which
//     a commit follows);
//   - one partition's snapshot: saveState(origin) + JSON.stringify + gzip, and its size;
//   - the ratio snapshot / batch: the share of a detector's time snapshots take when every batch changes the state.
// Times are CPU time of this process (medians of the rounds), which holds still when other processes share the cores.
// Also detection with and without origins (the tagging's cost on the hot path).
//
// Usage: npm run build && node benchmarks/kafka-state.mjs [--events N] [--partitions P] [--batch B] [--rounds R]
import { gzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    partitions: { type: 'string', default: '8' },
    batch: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '41' },
  },
});
const N = Number(values.events);
const P = Number(values.partitions);
const BATCH = Number(values.batch);
const ROUNDS = Number(values.rounds);
const dist = new URL('../dist/', import.meta.url);
const { DetectionEngine } = await import(new URL('detect/engine.js', dist));
const { defaultRulesDir, loadRules } = await import(new URL('detect/index.js', dist));
const { normalise } = await import(new URL('events/normalise.js', dist));
const { toAuditEvent } = await import(new URL('events/decode.js', dist));
const { newRedactionKey } = await import(new URL('events/redact.js', dist));
const { stateEntries } = await import(new URL('detect/saved-state.js', dist));

const redaction = { enabled: true, key: newRedactionKey() };
const set = loadRules(defaultRulesDir());
const next = eventStream({ seed: 7, rate: 12 });
const lines = Array.from({ length: N + ROUNDS * BATCH }, () => JSON.stringify(next()));

function partitionOf(e) {
  // Any stable hash of cluster/user: which partition does not matter here, only that one identity has one.
  let h = 0;
  const k = `${e.cluster}/${e.user}`;
  for (let i = 0; i < k.length; i++) h = (h * 31 + k.charCodeAt(i)) | 0;
  return `kaudit-events/${Math.abs(h) % P}`;
}

function events(from, to) {
  const out = [];
  for (let i = from; i < to; i++) out.push(normalise(toAuditEvent(JSON.parse(lines[i])), 'prod', redaction));
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** CPU time of this process in ms: holds still when other processes share the cores (wall time does not). */
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const engine = new DetectionEngine({ rules: set.rules, lists: set.lists, onWarning: () => {} });
const plain = new DetectionEngine({ rules: set.rules, lists: set.lists, onWarning: () => {} });
let tagged = 0;
let untagged = 0;
// Fill the state: all events, batch by batch, each batch split by partition as a detector receives them.
for (let i = 0; i < N; i += BATCH) {
  const batch = events(i, Math.min(N, i + BATCH));
  const byPartition = new Map();
  for (const e of batch) {
    const p = partitionOf(e);
    if (!byPartition.has(p)) byPartition.set(p, []);
    byPartition.get(p).push(e);
  }
  let t = cpuMs();
  for (const [p, es] of byPartition) await engine.detect(es, p);
  tagged += cpuMs() - t;
  const copy = new Map();
  for (const e of events(i, Math.min(N, i + BATCH))) {
    const p = partitionOf(e);
    if (!copy.has(p)) copy.set(p, []);
    copy.get(p).push(e);
  }
  t = cpuMs();
  for (const es of copy.values()) await plain.detect(es);
  untagged += cpuMs() - t;
}
const whole = engine.saveState();
console.log(`state after ${N} events over ${P} partitions: ${stateEntries(whole)} entries in ${whole.cores.length} rule parts`);
console.log(
  `detection of the ${N} events: ${tagged.toFixed(0)} ms CPU with partition origins, ${untagged.toFixed(0)} ms without (ratio ${(tagged / untagged).toFixed(2)})`,
);

// Each round: a batch of new events of one partition (as one fetched batch is), detected with its origin (the state
// changes), then that partition's snapshot, as the commit after it takes it.
const batchMs = [];
const snapMs = [];
const parts = { take: [], json: [], gzip: [] };
let jsonBytes = 0;
let bytes = 0;
let entries = 0;
for (let r = 0; r < ROUNDS; r++) {
  const p = `kaudit-events/${r % P}`;
  const batch = events(N + r * BATCH, N + (r + 1) * BATCH).map((e) => ({ ...e }));
  let t = cpuMs();
  await engine.detect(batch, p);
  batchMs.push(cpuMs() - t);
  t = cpuMs();
  const share = engine.saveState(p);
  const t1 = cpuMs();
  const json = JSON.stringify({ format: 'kaudit-partition-state', offset: '1', state: share });
  const t2 = cpuMs();
  const gz = gzipSync(json, { level: 1 });
  const t3 = cpuMs();
  snapMs.push(t3 - t);
  parts.take.push(t1 - t);
  parts.json.push(t2 - t1);
  parts.gzip.push(t3 - t2);
  jsonBytes = json.length;
  bytes = gz.length;
  entries = stateEntries(share);
}
const b = median(batchMs);
const s = median(snapMs);
console.log(`detection of one batch of ${BATCH} events: ${b.toFixed(2)} ms CPU (median of ${ROUNDS})`);
console.log(
  `one partition's snapshot (${entries} entries of it, ${jsonBytes} bytes of JSON, ${bytes} gzip'd): ${s.toFixed(2)} ms CPU (median of ${ROUNDS}; ` +
    `taking the share ${median(parts.take).toFixed(2)}, JSON ${median(parts.json).toFixed(2)}, gzip ${median(parts.gzip).toFixed(2)})`,
);
console.log(
  `snapshot / batch: ${(s / b).toFixed(2)} (the snapshot's share of a detector's time when every batch changes the state: ${((100 * s) / (s + b)).toFixed(0)}%)`,
);
