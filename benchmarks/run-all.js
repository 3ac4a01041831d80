// `npm run bench`: builds nothing (run `npm run build` first if you changed src/), then runs every benchmark in
// this folder one after another, so they do not compete for the two cores, and prints their figures.
// `npm run bench -- ingest webhook` runs only those whose file names contain one of the words.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.mjs') && (only.length === 0 || only.some((w) => f.includes(w))))
  .sort();
let failed = 0;
for (const f of files) {
  console.log(`\n=== ${f}`);
  const r = spawnSync(process.execPath, [dir + f], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.log(`${f} exited with ${r.status}`);
  }
}
process.exitCode = failed ? 1 : 0;
