#!/usr/bin/env -S node --max-semi-space-size=4 --max-old-space-size=1024
// The flags (issue #21: resident memory under 200 MB). The main thread's young generation is capped at 3 x 4 MiB
// instead of 3 x 16: its garbage (a batch's parsed lines) is short-lived, and the larger young generation was ~30 MB of
// an import's peak for no speed measured. The old generation's cap is what V8 sizes its growth by: with Node's
// default (a few GB on this machine) it lets the old generation grow to four times what is live before a full
// collection, with 1 GB to 1.6 times. Measured on `kaudit serve` under webhook load: old space 55-80 MB (26 MB live)
// against 26-33 MB, peak resident 236-247 MB against 178-187. 1 GB is several times any heap kaudit needs. Applies when
// run as a command (npx kaudit, an npm bin link); `node bin/kaudit.js` runs with Node's defaults.
// Entry point: runs the compiled CLI (built by `npm install`'s prepare step or `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('kaudit: dist/ is missing; run `npm install` or `npm run build` in the kaudit checkout first\n');
  process.exit(2);
}
const { runCli } = await import(main);
process.exitCode = await runCli(process.argv.slice(2));
