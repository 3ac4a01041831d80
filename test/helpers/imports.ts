/**
 * The import graph of a TypeScript source tree, read from the files' text: `import ... from`, `export ... from`,
 * `import type`, side-effect imports and `import('...')` with a literal specifier. Only relative specifiers are edges
 * (packages and node: builtins are not part of the tree). Every relative specifier must resolve to a file of the
 * tree, so a specifier this reader misparses fails loudly instead of dropping an edge.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const STATIC = /^[ \t]*(?:import|export)\s+(?:type\s+)?[^;'"`]*?\bfrom\s*['"]([^'"]+)['"]/gm;
const SIDE_EFFECT = /^[ \t]*import\s*['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

const TYPE_ONLY = /^[ \t]*(?:import|export)\s+type\s/;

/** Specifiers named by a module's text, in order of appearance per kind; `types: false` leaves out `import type`. */
export function specifiers(text: string, opts: { types?: boolean } = {}): string[] {
  const out: string[] = [];
  for (const re of [STATIC, SIDE_EFFECT, DYNAMIC]) {
    for (const m of text.matchAll(re)) if (opts.types !== false || !TYPE_ONLY.test(m[0])) out.push(m[1]!);
  }
  return out;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : [];
  });
}

/**
 * Module (path relative to `root`, `/`-separated) -> the modules of the tree it imports; `types: false` leaves out
 * `import type` / `export type` edges (erased by the compiler: they never order module loading).
 */
export function importGraph(root: string, opts: { types?: boolean } = {}): Map<string, string[]> {
  const name = (p: string) => relative(root, p).split(sep).join('/');
  const files = tsFiles(root);
  const known = new Set(files.map(name));
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const deps = new Set<string>();
    for (const s of specifiers(readFileSync(f, 'utf8'), opts)) {
      if (!s.startsWith('.')) continue;
      // NodeNext: sources import './x.js' for ./x.ts.
      const target = name(resolve(dirname(f), s.replace(/\.js$/, '.ts')));
      if (!known.has(target)) throw new Error(`${name(f)}: import "${s}" names no .ts file of the tree (${target})`);
      deps.add(target);
    }
    graph.set(name(f), [...deps].sort());
  }
  return graph;
}

/** Every import cycle as one path that returns to its start (a → b → a), one per strongly connected component. */
export function importCycles(graph: Map<string, string[]>): string[][] {
  // Tarjan's strongly connected components; a component of two or more modules, or one importing itself, is a cycle.
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || graph.get(v)?.includes(v)) cycles.push(cyclePath(graph, new Set(scc), v));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return cycles;
}

/** A shortest path from `start` back to itself inside one component, for a readable message. */
function cyclePath(graph: Map<string, string[]>, scc: Set<string>, start: string): string[] {
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!scc.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u: string | undefined = v; u !== undefined && u !== start; u = prev.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}
