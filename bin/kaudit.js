#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=131072 node --max-semi-space-size=4 --max-old-space-size=1024
// The settings are for resident memory (issue #21: under 200 MB), and apply when run as a command (npx kaudit, an npm
// bin link, `npm start`'s script); `node bin/kaudit.js` runs with Node's and glibc's defaults.
// - --max-semi-space-size: the main thread's young generation capped at 3 x 4 MiB instead of 3 x 16. Its garbage (a
//   batch's parsed lines) is short-lived, and the larger young generation was ~30 MB of an import's peak for no speed
//   measured.
// - --max-old-space-size: the old generation's cap is what V8 sizes its growth by. With Node's default (a few GB on
//   this machine) it lets the old generation grow to four times what is live before a full collection, with 1 GB to
//   1.6 times. Measured on `kaudit serve` under webhook load: old space 55-80 MB (26 MB live) against 26-33 MB, peak
//   resident 236-247 MB against 178-187. 1 GB is several times any heap kaudit needs. `kaudit ingest` sets the growth
//   to 3 times at its start (src/cli/ingest.ts: its old generation is mostly garbage, collected half as often).
// - MALLOC_MMAP_THRESHOLD_: glibc serves every allocation of 128 KiB or more by its own mapping, returned to the system
//   when freed. By default glibc raises that threshold to the size of the first such block freed, so that the
//   import's 1 MiB buffers (file chunks, batches' raw JSON) then came from the heap, which kept the space they freed:
//   59 MB of heap at the peak of a 100k import, and 16 MB more peak resident memory at 1 M events (benchmarks/NOTES.md).
// Entry point: runs the compiled CLI, bundled into a few files (scripts/bundle.mjs: one module to load instead of
// some 280 at each start), both built by `npm install`'s prepare step or `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const main = fileURLToPath(new URL('../dist/bundle/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('kaudit: dist/ is missing; run `npm install` or `npm run build` in the kaudit checkout first\n');
  process.exit(2);
}
const { runCli } = await import(main);
process.exitCode = await runCli(process.argv.slice(2));
