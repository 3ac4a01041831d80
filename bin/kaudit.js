#!/usr/bin/env node
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
