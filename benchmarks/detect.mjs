// Detection benchmark (issue 3). Measures events/s of detection alone (engine.detect on already normalised events;
// generating, parsing and normalising are done between timed calls and not counted) on the realistic generated mix of
// benchmarks/lib/generate.mjs, for:
//   x1           the catalog as shipped;
//   x10          the catalog loaded ten times over (copies with new ids), the default engine (identical rules share
//                one matcher: one evaluation per event, alerts and counts per rule);
//   x10-unshared the same ten copies with sharing off: every copy evaluated on its own;
//   x1-noindex   the catalog with the candidate index off (every event to every rule): what the index saves.
// Prints events/s for each, the x10/x1 ratios (target >= 0.8), and per-rule evaluation counts of the x1 run.
// Each round runs every configuration on a fresh engine, batch by batch, the configurations taking turns within each
// batch; events/s is the best round's, given both per second of CPU time of this process (the ratios use it: it holds
// still when other processes share the cores) and per second of wall time; a ratio is the median of the rounds' own.
//
// Usage: npx tsc -p tsconfig.json && node benchmarks/detect.mjs [--events N] [--rounds R] [--json]
// (runs against dist/, like the other benchmarks).
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean' },
    batch: { type: 'string', default: '1000' },
  },
});
const N = Number(values.events);
const ROUNDS = Number(values.rounds);
const BATCH = Number(values.batch);
const dist = new URL('../dist/', import.meta.url);
const { DetectionEngine } = await import(new URL('detect/engine.js', dist));
const { defaultRulesDir, loadRules } = await import(new URL('detect/index.js', dist));
const { normalise } = await import(new URL('events/normalise.js', dist));
const { toAuditEvent } = await import(new URL('events/decode.js', dist));
const { newRedactionKey } = await import(new URL('events/redact.js', dist));

const redaction = { enabled: true, key: newRedactionKey() };
const set = loadRules(defaultRulesDir());

// The log as JSON lines, made once; each run parses and normalises its own copy (the engine memoises facts on
// event objects, so runs must not share them).
const next = eventStream({ seed: 1, rate: 12 });
const lines = Array.from({ length: N }, () => JSON.stringify(next()));

function copies(k) {
  const out = [];
  for (let c = 0; c < k; c++) for (const r of set.rules) out.push(c === 0 ? r : { ...r, id: `${r.id}-copy${c}` });
  return out;
}

function makeEngine(rules, opts = {}) {
  return new DetectionEngine({ rules, lists: set.lists, onWarning: () => {}, ...opts });
}

/**
 * One round: every configuration on a fresh engine, fed the same events batch by batch, the configurations taking
 * turns within each batch (their order rotating from batch to batch). The machine's speed drifts over seconds; taking
 * turns every few milliseconds gives each configuration the same machine, so their ratios hold still. (They share one
 * heap: a young-generation collection is charged to whichever configuration fills the space, so each pays in
 * proportion to what it allocates.)
 */
async function round(n) {
  const runs = [];
  for (const [label, make] of configs) {
    const engine = make();
    // As createDetector ships it: conditions that read only the bodies are skipped for events without them.
    await engine.prepare();
    runs.push({ label, engine, secs: 0, cpuUs: 0, alerts: 0 });
  }
  for (let i = 0, b = 0; i < n; i += BATCH, b++) {
    for (let k = 0; k < runs.length; k++) {
      const r = runs[(k + b) % runs.length];
      // Each engine its own copy (the engine memoises facts on event objects); parsing is not timed.
      const batch = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(normalise(toAuditEvent(JSON.parse(lines[j])), 'bench', redaction, lines[j]));
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      r.alerts += (await r.engine.detect(batch)).length;
      r.secs += Number(process.hrtime.bigint() - t0) / 1e9;
      const c = process.cpuUsage(c0);
      r.cpuUs += c.user + c.system;
    }
  }
  return runs.map((r) => ({
    label: r.label,
    rules: r.engine.counts.rules,
    matchers: r.engine.counts.matchers,
    eventsPerSec: Math.round(n / r.secs),
    eventsPerCpuSec: Math.round(n / (r.cpuUs / 1e6)),
    secs: r.secs,
    cpuSecs: r.cpuUs / 1e6,
    alerts: r.alerts,
    engine: r.engine,
  }));
}

const configs = [
  ['x1', () => makeEngine(copies(1))],
  ['x10', () => makeEngine(copies(10))],
  ['x10-unshared', () => makeEngine(copies(10), { shareIdentical: false })],
  ['x1-noindex', () => makeEngine(copies(1), { useIndex: false })],
];
// Warm-up (JIT) on a tenth of the events, then the rounds; events/s is each configuration's best round.
await round(Math.min(N, Math.max(BATCH, Math.floor(N / 10))));
const best = new Map();
// A ratio is the median of the rounds' own ratios.
const perRound = [];
for (let r = 0; r < ROUNDS; r++) {
  const figures = {};
  for (const x of await round(N)) {
    figures[x.label] = x.eventsPerCpuSec;
    const prev = best.get(x.label);
    if (!prev || x.eventsPerCpuSec > prev.eventsPerCpuSec) best.set(x.label, x);
  }
  perRound.push(figures);
}
const results = configs.map(([label]) => best.get(label));
const by = Object.fromEntries(results.map((r) => [r.label, r]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const roundRatios = (a, b) => perRound.map((f) => f[a] / f[b]);
const ratio = (a, b) => median(roundRatios(a, b));
const perRule = by.x1.engine.stats().map((s) => ({
  rule: s.rule,
  candidates: s.candidates,
  checked: s.checked,
  conditionEvaluations: s.conditionEvaluations,
  matched: s.matched,
  alerts: s.alerts,
}));

if (values.json) {
  process.stdout.write(
    JSON.stringify({
      events: N,
      runs: results.map(({ engine: _e, ...r }) => r),
      ratios: { x10: ratio('x10', 'x1'), x10Unshared: ratio('x10-unshared', 'x1'), noIndex: ratio('x1-noindex', 'x1') },
      perRule,
    }) + '\n',
  );
} else {
  const out = [];
  out.push(
    `detection alone, ${N} generated events (seed 1), batches of ${BATCH}, ${ROUNDS} rounds (events/s: the best round; ratios: the median of the rounds' own), node ${process.version}`,
  );
  for (const r of results)
    out.push(
      `  ${r.label.padEnd(13)} ${String(r.rules).padStart(4)} rules ${String(r.matchers).padStart(4)} matchers  ${String(r.eventsPerCpuSec).padStart(8)} events/CPU-s ${String(r.eventsPerSec).padStart(8)} events/s (wall)  ${r.alerts} alerts`,
    );
  out.push(
    `  ratio x10/x1           ${ratio('x10', 'x1').toFixed(2)}  (target >= 0.8; median of the rounds' ratios: ${roundRatios('x10', 'x1')
      .map((r) => r.toFixed(2))
      .join(', ')})`,
  );
  out.push(`  ratio x10-unshared/x1  ${ratio('x10-unshared', 'x1').toFixed(2)}`);
  out.push(`  ratio no-index/x1      ${ratio('x1-noindex', 'x1').toFixed(2)}`);
  const total = perRule.reduce((n, s) => n + s.candidates, 0);
  out.push(
    `  per-rule evaluation counts (x1): ${total} candidate hand-offs for ${N} events (${(total / N).toFixed(2)} per event; without the index: ${by['x1-noindex'].engine.stats().reduce((n, s) => n + s.candidates, 0) / N} per event)`,
  );
  out.push(
    `  ${'rule'.padEnd(44)} ${'candidates'.padStart(10)} ${'checked'.padStart(8)} ${'jsonata'.padStart(8)} ${'matched'.padStart(8)} ${'alerts'.padStart(7)}`,
  );
  for (const s of perRule.sort((a, b) => b.candidates - a.candidates)) {
    out.push(
      `  ${s.rule.padEnd(44)} ${String(s.candidates).padStart(10)} ${String(s.checked).padStart(8)} ${String(s.conditionEvaluations).padStart(8)} ${String(s.matched).padStart(8)} ${String(s.alerts).padStart(7)}`,
    );
  }
  process.stdout.write(out.join('\n') + '\n');
}
