#!/usr/bin/env -S node --max-semi-space-size=4
// The flag: the main thread's young generation capped at 3 x 4 MiB instead of 3 x 16. Its garbage (a batch's parsed
// lines) is short-lived, and the larger young generation was ~30 MB of an import's peak resident memory (issue #21:
// under 200 MB) for no speed measured. Applies when run as a command (npx kaudit, an npm bin link); `node
// bin/kaudit.js` runs with Node's defaults.
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
