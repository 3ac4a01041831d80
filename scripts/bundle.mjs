// Bundles the compiled CLI (dist/cli/main.js) and the store's writer thread (dist/store/writer-thread.js) into a few
// files in dist/bundle/, run by bin/kaudit.js. Why: a start of `kaudit ingest` loaded ~280 ES modules one by one
// (resolve, read, compile, link each), a large part of its start-up (issue #21, benchmarks/NOTES.md). Each command
// stays a chunk of its own, loaded only when run, and the packages in node_modules stay outside (loaded as before).
// The modules in dist/ stay too: the tests import them, and the rule cache's key is computed over them.
//
// The bundle's files sit one directory below dist/, as the modules they come from do, so that the paths the code
// finds from its own location (`../rule-cache.json`, `../console/`, `../../detections/`) hold unchanged; the writer
// thread's entry keeps its name beside the chunk that starts it (`./writer-thread.js`).
import { rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const out = `${dist}bundle`;
const builtins = new Set(builtinModules);

rmSync(out, { recursive: true, force: true });
await build({
  input: { main: `${dist}cli/main.js`, 'writer-thread': `${dist}store/writer-thread.js` },
  platform: 'node',
  // Anything not a relative path is a package or a Node built-in: left to Node's own resolution at run time.
  external: (id) => id.startsWith('node:') || builtins.has(id) || !(id.startsWith('.') || id.startsWith('/')),
  logLevel: 'warn',
  output: { dir: out, format: 'esm', entryFileNames: '[name].js', chunkFileNames: '[name]-[hash].js', sourcemap: false },
});
