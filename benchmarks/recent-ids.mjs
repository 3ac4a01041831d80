// The detection state's request-id sets (src/detect/recent-ids.ts): nanoseconds per "has, then add" of a new UUID (the
// engine's pattern for a matched request) at the two bounds the rules use (10,000 and 100,000 ids), against a baseline
// measured in the same run: a plain `Set` of the same id strings kept to the same bound (oldest deleted first, from an
// array of them in order). Also prints the bytes each holds at its bound: the table's typed arrays (`reservedBytes`),
// and the V8 heap the Set, its order array and the id strings take (measured with forced GCs: run with --expose-gc).
// Usage: npm run build && node --expose-gc benchmarks/recent-ids.mjs [--ids 300000] [--rounds 3]
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { ids: { type: 'string', default: '300000' }, rounds: { type: 'string', default: '3' } } });
const N = Number(values.ids);
const ROUNDS = Number(values.rounds);
const { RecentIds } = await import(new URL('../dist/detect/recent-ids.js', import.meta.url).href);

// Ids as the engine gets them: strings parsed out of JSON, not literals.
const ids = JSON.parse(JSON.stringify(Array.from({ length: N }, () => randomUUID())));

class BoundedSet {
  constructor(max) {
    this.max = max;
    this.set = new Set();
    this.order = new Array(max);
    this.next = 0;
  }
  has(id) {
    return this.set.has(id);
  }
  add(id) {
    if (this.set.has(id)) return false;
    const old = this.order[this.next];
    if (old !== undefined) this.set.delete(old);
    this.order[this.next] = id;
    this.next = (this.next + 1) % this.max;
    this.set.add(id);
    return true;
  }
}

function time(make) {
  const r = make();
  const t0 = process.hrtime.bigint();
  let held = 0;
  for (let i = 0; i < ids.length; i++) {
    if (r.has(ids[i])) held++;
    r.add(ids[i], i * 1000);
  }
  return { ns: Number(process.hrtime.bigint() - t0) / ids.length, held };
}

function heapOf(make, max) {
  if (!globalThis.gc) return undefined;
  globalThis.gc();
  const before = process.memoryUsage();
  const r = make();
  for (let i = 0; i < max; i++) r.add(ids[i].slice(0, 35) + ids[i][35], i * 1000); // fresh strings, as from JSON
  globalThis.gc();
  const after = process.memoryUsage();
  return { bytes: r.reservedBytes ?? after.heapUsed - before.heapUsed, keep: r };
}

console.log(`request-id sets, ${N.toLocaleString('en-US')} new UUIDs, ${ROUNDS} rounds (best), node ${process.version}`);
for (const max of [10_000, 100_000]) {
  const best = { table: Infinity, set: Infinity };
  for (let round = 0; round < ROUNDS; round++) {
    best.table = Math.min(best.table, time(() => new RecentIds(max, 3600e6)).ns);
    best.set = Math.min(best.set, time(() => new BoundedSet(max)).ns);
  }
  const t = heapOf(() => new RecentIds(max, 3600e6), max);
  const s = heapOf(() => new BoundedSet(max), max);
  const bytes = (x) => (x ? `${(x.bytes / max).toFixed(0)} bytes/id at the bound` : 'bytes: run with --expose-gc');
  console.log(
    `  max ${max.toLocaleString('en-US').padStart(7)}: RecentIds ${best.table.toFixed(0)} ns per has+add, ${bytes(t)}; ` +
      `Set of strings ${best.set.toFixed(0)} ns, ${bytes(s)}; ratio ${(best.table / best.set).toFixed(2)}x the Set's time`,
  );
}
