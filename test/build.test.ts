import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : [],
  );
}

describe('the build the tests run', () => {
  // Tests that run compiled code (the writer thread, child processes) would otherwise test whatever was built last.
  it('is the current sources compiled: every module in dist/ is at least as new as its source, the rule cache newer still', () => {
    const stale: string[] = [];
    let newest = 0;
    for (const src of sources(join(root, 'src'))) {
      const out = join(root, 'dist', relative(join(root, 'src'), src).replace(/\.ts$/, '.js'));
      let built: number;
      try {
        built = statSync(out).mtimeMs;
      } catch {
        stale.push(`${relative(root, src)} (not built)`);
        continue;
      }
      if (built < statSync(src).mtimeMs) stale.push(relative(root, src));
      newest = Math.max(newest, built);
    }
    expect(stale).toEqual([]);
    expect(statSync(join(root, 'dist', 'rule-cache.json')).mtimeMs).toBeGreaterThanOrEqual(statSync(join(root, 'dist', 'detect', 'rule.js')).mtimeMs);
    expect(newest).toBeGreaterThan(0);
    // bin/kaudit.js runs the bundle made from these modules (scripts/bundle.mjs): it must not be older than them.
    expect(statSync(join(root, 'dist', 'bundle', 'main.js')).mtimeMs).toBeGreaterThanOrEqual(newest);
    expect(statSync(join(root, 'dist', 'bundle', 'writer-thread.js')).mtimeMs).toBeGreaterThanOrEqual(newest);
  });
});
