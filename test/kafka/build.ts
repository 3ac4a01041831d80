/**
 * Compiles src/ and this folder's process scripts to JavaScript for child processes (consumers that a test kills with
 * SIGKILL must be real processes, and Node 20 cannot run TypeScript). Transpile only, no type check: ~1 s. The output
 * lives under .cache/ in the checkout so that `kafkajs` and the other packages resolve from node_modules.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts') && !name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

let built: string | undefined;

/** Builds once per test process; returns the output root (mirrors the checkout: <out>/src, <out>/test/kafka). */
export function buildForChildren(): string {
  if (built) return built;
  const out = join(ROOT, '.cache', `kafka-test-build-${process.pid}`);
  const files = [...tsFiles(join(ROOT, 'src')), ...tsFiles(join(ROOT, 'test', 'kafka')), join(ROOT, 'test', 'helpers', 'events.ts')];
  for (const f of files) {
    const js = ts.transpileModule(readFileSync(f, 'utf8'), {
      fileName: f,
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    const dest = join(out, relative(ROOT, f)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  // Node decides ESM vs CommonJS from the nearest package.json.
  writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module' }));
  built = out;
  return out;
}

/** Removes this process's build (call from afterAll). */
export function removeBuild(): void {
  if (built) rmSync(built, { recursive: true, force: true });
  built = undefined;
}
