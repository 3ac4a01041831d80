/**
 * The rule cache's validity key (see the rule cache in rule.ts): a cache is used only when the code and libraries
 * that produced it are the ones running. The key covers the rule reader and the engine with everything they import
 * from this package (the compiler, the match checks, the candidate index, the expression helpers, the synchronous
 * JSONata evaluator, the shared lists' compilation, ...), found by following their imports rather than listed by hand,
 * so that a module added later is covered too; and the versions of the libraries that parse and evaluate rules.
 * Each rule file is keyed by its own text besides (the shared lists are a rule file like the others).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where following the imports starts: the rule reader and the engine (in dist/ or, under the test runner, src/). */
const ENTRY_MODULES = ['rule', 'engine', 'rule-cache-facts'];
/** Libraries whose version shapes a parsed or compiled rule. */
const LIBRARIES = ['yaml', 'jsonata'];

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;

/** The entry modules and every module of this package they import, directly or not: absolute paths, sorted. */
export function moduleClosure(entries: readonly string[]): string[] {
  const seen = new Set<string>();
  const todo = [...entries];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      let target = resolve(dirname(file), m[1]!);
      // TypeScript sources import each other by their compiled names (./x.js is ./x.ts).
      if (!existsSync(target) && target.endsWith('.js')) target = target.slice(0, -3) + '.ts';
      if (existsSync(target) && !seen.has(target)) todo.push(target);
    }
  }
  return [...seen].sort();
}

/** The key of a set of modules (by their path under `root` and their text) and library versions. */
export function validityKey(root: string, modules: readonly string[], libraries: Readonly<Record<string, string>>): string {
  const h = createHash('sha256');
  for (const f of modules) h.update(`${relative(root, f)}\0${readFileSync(f, 'utf8')}\0`);
  for (const name of Object.keys(libraries).sort()) h.update(`${name}@${libraries[name]}\0`);
  return h.digest('hex');
}

/** The installed versions of the libraries that shape rules. */
export function libraryVersions(): Record<string, string> {
  const req = createRequire(import.meta.url);
  return Object.fromEntries(LIBRARIES.map((n) => [n, (req(`${n}/package.json`) as { version: string }).version]));
}

/**
 * A file's size and modification time, by its path relative to the build's root. The build records the key's modules'
 * (and the libraries' package.json) beside the key: a start whose files all still have them takes the cache without
 * reading and hashing some forty modules (~20-50 ms of every start); any difference, and the key decides.
 */
export interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

export function stampsOf(root: string, files: readonly string[]): FileStamp[] {
  return files.map((f) => {
    const st = statSync(f);
    return { path: relative(root, f), size: st.size, mtimeMs: st.mtimeMs };
  });
}

/** True when every stamped file is there with the same size and modification time. */
export function stampsHold(root: string, stamps: readonly FileStamp[]): boolean {
  if (!Array.isArray(stamps) || stamps.length === 0) return false;
  try {
    return stamps.every((s) => {
      const st = statSync(resolve(root, s.path));
      return st.size === s.size && st.mtimeMs === s.mtimeMs;
    });
  } catch {
    return false;
  }
}

const here = fileURLToPath(import.meta.url);
/** The build's root (dist/, or src/ under the test runner). */
export const buildRoot = dirname(dirname(here));

let closure: string[] | undefined;
function keyModules(): string[] {
  const ext = here.endsWith('.ts') ? '.ts' : '.js';
  // From the build's root, not from this module: in the CLI's bundle (dist/bundle/) this code is not in detect/, but
  // the key stays that of the modules the bundle was made from, as the build computed it.
  return (closure ??= moduleClosure(ENTRY_MODULES.map((m) => resolve(buildRoot, 'detect', m + ext))));
}

let key: string | undefined;
/** This build's rule-cache validity key (computed once per process). */
export function ruleCacheKey(): string {
  return (key ??= validityKey(buildRoot, keyModules(), libraryVersions()));
}

/** The stamps of what the key covers: its modules and the libraries' package.json. */
export function ruleCacheStamps(): FileStamp[] {
  const req = createRequire(import.meta.url);
  return stampsOf(buildRoot, [...keyModules(), ...LIBRARIES.map((n) => req.resolve(`${n}/package.json`))]);
}
