// Framing + decoding benchmark (issue #22, one ingest front): reads generated audit logs through the file framing and
// the one decoder (no normalising, no store, no detection) and prints events/s for each shape of file:
//   NDJSON (the apiserver's log: the hot path), a pretty-printed EventList with items as the webhook sends them
//   (no kind/apiVersion), and a pretty-printed JSON array.
// With --against DIST (another build's dist/, e.g. of main), both builds run in this process, rounds interleaved, so a
// busy machine slows both alike (the order alternates from round to round); the figures are medians.
// Usage: node benchmarks/decode.mjs [--events N] [--rounds 5] [--against DIR] [--only ndjson]   (needs `npm run build` first)
import { mkdtempSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const { values } = parseArgs({
  options: { events: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '5' }, against: { type: 'string' }, only: { type: 'string' } },
});
const N = Number(values.events);
const ROUNDS = Number(values.rounds);

/** A build's reader and decoder: this layout (sources/file-read, events/decode) or the one before it (events/read). */
async function load(dist) {
  const base = pathToFileURL(resolve(dist) + '/');
  if (existsSync(new URL('sources/file-read.js', base))) {
    const { readFileRecords } = await import(new URL('sources/file-read.js', base));
    const { decodeRecord } = await import(new URL('events/decode.js', base));
    return { readFileRecords, decodeRecord };
  }
  const { readFileRecords, decodeRecord } = await import(new URL('events/read.js', base));
  return { readFileRecords, decodeRecord };
}

const builds = [['this build', await load(new URL('../dist/', import.meta.url).pathname)]];
if (values.against) builds.push([`--against ${values.against}`, await load(values.against)]);

const dir = mkdtempSync(join(tmpdir(), 'kaudit-decode-'));
const events = [];
const next = eventStream({ seed: 7, rate: 12, people: 0.04 });
for (let i = 0; i < N; i++) events.push(next());

async function writeLines(path) {
  const out = createWriteStream(path);
  let buf = '';
  for (const e of events) {
    buf += JSON.stringify(e) + '\n';
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await new Promise((r) => out.once('drain', r));
      buf = '';
    }
  }
  out.end(buf);
  await new Promise((r) => out.on('finish', r));
}

const files = {
  ndjson: join(dir, 'audit.log'),
  'pretty EventList': join(dir, 'list.json'),
  'pretty array': join(dir, 'array.json'),
};
await writeLines(files.ndjson);
writeFileSync(
  files['pretty EventList'],
  JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items: events.map(({ kind, apiVersion, ...rest }) => rest) }, null, 2),
);
writeFileSync(files['pretty array'], JSON.stringify(events, null, 2));
events.length = 0;

async function run(b, path) {
  const t0 = performance.now();
  let ok = 0;
  let bad = 0;
  for await (const recs of b.readFileRecords(path)) {
    for (const r of recs) {
      for (const d of b.decodeRecord(r)) {
        if (d.error === undefined) ok++;
        else bad++;
      }
    }
  }
  return { ms: performance.now() - t0, ok, bad };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  for (const [shape, path] of Object.entries(files)) {
    if (values.only && !shape.includes(values.only)) continue;
    const times = builds.map(() => []);
    let counts = builds.map(() => undefined);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [...builds.keys()] : [...builds.keys()].reverse();
      for (const i of order) {
        const r = await run(builds[i][1], path);
        times[i].push(r.ms);
        counts[i] = r;
      }
    }
    for (const [i, [name]] of builds.entries()) {
      const ms = median(times[i]);
      const c = counts[i];
      console.log(
        `${shape.padEnd(17)} ${name.padEnd(28)} ${Math.round((N / ms) * 1000)
          .toLocaleString('en-US')
          .padStart(9)} events/s read+decoded (median of ${ROUNDS}; ${c.ok} events, ${c.bad} bad)`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
