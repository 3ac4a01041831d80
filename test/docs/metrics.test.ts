import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// Every metric kaudit can export is documented in docs/metrics.md: an operator who sees a name on /metrics can look it up.
const repo = resolve(import.meta.dirname, '../..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Metric names as the code writes them: a quoted name, or the name after `# HELP ` in a hand-rendered block. */
export function metricNames(text: string): string[] {
  const names = new Set<string>();
  for (const m of text.matchAll(/['"`](kaudit_[a-z0-9_]+)['"`]/g)) names.add(m[1]!);
  for (const m of text.matchAll(/# HELP (kaudit_[a-z0-9_]+)/g)) names.add(m[1]!);
  return [...names];
}

describe('metrics reference', () => {
  it('finds names written either way', () => {
    expect(metricNames("m.counter('kaudit_a_total', 'x'); `# HELP kaudit_b gauge`").sort()).toEqual(['kaudit_a_total', 'kaudit_b']);
  });

  it('documents every metric the code exports', () => {
    const readme = readFileSync(join(repo, 'docs/metrics.md'), 'utf8');
    const names = new Set<string>();
    for (const f of sources(join(repo, 'src'))) for (const n of metricNames(readFileSync(f, 'utf8'))) names.add(n);
    expect(names.size).toBeGreaterThan(30);
    const missing = [...names].filter((n) => !new RegExp('`' + n + '[`{,]').test(readme)).sort();
    expect(missing, 'metrics missing from docs/metrics.md (document each, with its labels)').toEqual([]);
  });
});
