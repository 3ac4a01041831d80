// Tail under rotation (issue #16): the fastest rotation rate at which `kaudit serve`'s tail stores every event.
//
// Method: kube-apiserver's own rotating writer (lumberjack.v2, test/sources/lumberjack-writer, built by
// scripts/lumberjack-writer.sh) writes --events numbered audit events (~1.8 KB each) with --audit-log-maxsize=1 (MB),
// --audit-log-compress and --audit-log-maxbackup=--maxbackup (10, as CIS 1.2.x recommends), at a rising rate (--rates:
// 1,500 events/s, doubled each round, then as fast as it can), stopping at the first round that fails. The tail follows it as serve runs it: the writer thread, the pipeline with the bundled
// detection rules, a store of its own per round, the tail started before the first write. A round passes when every
// event is stored (each once) and no file was deleted before it was read. Printed per round: the writer's rotations/s
// and events/s, the tail's events/s while the writer ran, how long it took to catch up afterwards, and the files the
// writer's maxbackup deleted before the tail read them. The figure is the fastest passing round.
// The tail itself is rarely the limit: the pipeline behind it (detection, the store) is; what the tail must do is
// never skip a file while it is behind and say which files maxbackup deleted before it got to them.
// Usage: node benchmarks/tail-rotation.mjs [--events 40000] [--maxbackup 10] [--rates 1500,3000,...,0]
//   (needs `npm run build` first)
import { execFileSync } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '40000' },
    maxbackup: { type: 'string', default: '10' },
    rates: { type: 'string', default: '1500,3000,6000,12000,24000,48000,0' },
  },
});
const N = Number(values.events);
const dist = new URL('../dist/', import.meta.url);
const { WriterThread } = await import(new URL('store/writer.js', dist));
const { Pipeline } = await import(new URL('pipeline/pipeline.js', dist));
const { FileTail } = await import(new URL('sources/file-tail.js', dist));
const { createDetector } = await import(new URL('detect/index.js', dist));
const { Metrics } = await import(new URL('metrics.js', dist));
const { setLogSink } = await import(new URL('log.js', dist));
const Database = (await import('better-sqlite3')).default;

const writerBin = execFileSync('bash', [fileURLToPath(new URL('../scripts/lumberjack-writer.sh', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] })
  .toString()
  .trim();
const warnings = [];
setLogSink((l) => {
  if (/ warn /.test(l)) warnings.push(l);
});

function metric(m, name) {
  let sum = 0;
  for (const l of m.render().split('\n')) {
    const r = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(l);
    if (r) sum += Number(r[2]);
  }
  return sum;
}

async function round(rate) {
  const dir = mkdtempSync(join(tmpdir(), 'kaudit-bench-tail-'));
  const log = join(dir, 'audit.log');
  const db = join(dir, 'k.db');
  const writer = await WriterThread.open(db);
  const reader = new Database(db, { readonly: true });
  const count = () => reader.prepare('SELECT count(*) FROM events').pluck().get();
  const metrics = new Metrics();
  const pipeline = new Pipeline({ writer, detector: await createDetector(), metrics });
  const { SqliteStore } = await import(new URL('store/sqlite-store.js', dist));
  const store = new SqliteStore(db, { readonly: true });
  const tail = new FileTail({ path: log, cluster: 'bench', sink: pipeline, store, metrics });
  tail.start();
  const t0 = performance.now();
  const child = spawn(
    writerBin,
    ['-path', log, '-n', String(N), '-rate', String(rate), '-maxsize', '1', '-compress', '-maxbackups', values.maxbackup, '-pad', '900'],
    { stdio: 'ignore' },
  );
  await new Promise((r) => child.on('exit', r));
  const writeSecs = (performance.now() - t0) / 1000;
  const atWriterEnd = count();
  const files = new Set(
    readdirSync(dir)
      .filter((f) => /^audit-/.test(f))
      .map((f) => f.replace(/\.gz$/, '')),
  ).size;
  // Rotations: one per MB written; maxbackup may have deleted some backups already.
  const rotations = Math.max(files, Math.floor((N * 1850) / (1 << 20)));
  // Caught up: everything stored, or nothing new for 15 s (a loaded machine stalls the pipeline for seconds).
  let last = -1;
  let still = performance.now();
  for (;;) {
    const c = count();
    if (c >= N) break;
    if (c !== last) {
      last = c;
      still = performance.now();
    } else if (performance.now() - still > 15_000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const catchUp = (performance.now() - t0) / 1000 - writeSecs;
  await tail.stop();
  await pipeline.idle();
  const stored = count();
  const distinct = reader.prepare('SELECT count(DISTINCT audit_id) FROM events').pluck().get();
  const lost = metric(metrics, 'kaudit_tail_files_lost_total');
  reader.close();
  store.close();
  await writer.close();
  rmSync(dir, { recursive: true, force: true });
  return { rate, writeSecs, rotations, stored, distinct, lost, atWriterEnd, catchUp, ok: stored === N && distinct === N && lost === 0 };
}

console.log(`tail under lumberjack rotation: ${N} events of ~1.8 KB, maxsize 1 MB, compress, maxbackup ${values.maxbackup}`);
let best;
for (const rate of values.rates.split(',').map(Number)) {
  const r = await round(rate);
  const rotPerSec = r.rotations / r.writeSecs;
  console.log(
    `  writer ${rate ? `${rate} ev/s target` : 'unpaced'}: ${(N / r.writeSecs).toFixed(0)} events/s, ${rotPerSec.toFixed(1)} rotations/s; ` +
      `tail stored ${r.atWriterEnd} while writing (${(r.atWriterEnd / r.writeSecs).toFixed(0)} events/s), caught up ${r.catchUp.toFixed(1)} s later; ` +
      `stored ${r.stored}/${N} (${r.distinct} distinct), files lost ${r.lost}: ${r.ok ? 'PASS' : 'FAIL'}`,
  );
  if (!r.ok) break;
  best = { rotPerSec, eventsPerSec: N / r.writeSecs };
}
console.log(
  best
    ? `fastest rotation rate kept up with: ${best.rotPerSec.toFixed(1)} rotations/s (${best.eventsPerSec.toFixed(0)} events/s)`
    : 'the tail kept up with none of the rates',
);
if (warnings.length) console.log(`warnings (first 3):\n  ${warnings.slice(0, 3).join('\n  ')}`);
