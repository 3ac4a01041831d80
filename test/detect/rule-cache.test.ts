import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultRulesDir } from '../../src/detect/index.js';
import { loadRuleSet, readRuleCache, writeRuleCache, type RuleCache } from '../../src/detect/rule.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'kaudit-rulecache-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A copy of the bundled rules in a temp dir, and a cache of it written beside. */
function copyWithCache(): { rules: string; cachePath: string; cache: RuleCache } {
  const d = tmp();
  const rules = join(d, 'rules');
  cpSync(defaultRulesDir(), rules, { recursive: true });
  const cachePath = join(d, 'cache.json');
  const cache = writeRuleCache(rules, cachePath);
  return { rules, cachePath, cache };
}

describe('rule cache', () => {
  it('loads the bundled rules from the cache exactly as parsing them does', () => {
    const { rules, cachePath } = copyWithCache();
    const cache = readRuleCache(cachePath);
    expect(cache).toBeDefined();
    expect(Object.keys(cache!.files).length).toBeGreaterThanOrEqual(8);
    const parsed = loadRuleSet(rules, undefined);
    const cached = loadRuleSet(rules, cache);
    expect(parsed.issues).toEqual([]);
    expect(parsed.rules.length).toBeGreaterThan(40);
    expect(cached).toEqual(parsed);
    // Rules and lists point at the files they were loaded from, not at the files the cache was written from.
    expect(new Set(cached.rules.map((r) => r.file))).toEqual(new Set(parsed.rules.map((r) => r.file)));
  });

  it('takes a file from the cache only when its text is the text that was parsed', () => {
    const { rules, cachePath } = copyWithCache();
    // Mark the cached copy of exec.yaml's rules: a load that uses the cache shows the mark.
    const raw = JSON.parse(readFileSync(cachePath, 'utf8')) as RuleCache;
    for (const f of Object.values(raw.files)) for (const r of f.rules) r.title = `cached: ${r.title}`;
    writeFileSync(cachePath, JSON.stringify(raw));
    const cache = readRuleCache(cachePath);
    const before = loadRuleSet(rules, cache);
    expect(before.rules.every((r) => r.title.startsWith('cached: '))).toBe(true);
    // Edit one file: its rules are parsed again (no mark), the others still come from the cache.
    const exec = join(rules, 'exec.yaml');
    writeFileSync(exec, readFileSync(exec, 'utf8') + '\n# edited\n');
    const after = loadRuleSet(rules, cache);
    const fromExec = after.rules.filter((r) => r.file === exec);
    expect(fromExec.length).toBeGreaterThan(0);
    expect(fromExec.some((r) => r.title.startsWith('cached: '))).toBe(false);
    expect(after.rules.filter((r) => r.file !== exec).every((r) => r.title.startsWith('cached: '))).toBe(true);
  });

  it('keeps no file with an issue, so its problems are reported on every load', () => {
    const d = tmp();
    writeFileSync(join(d, 'bad.yaml'), 'rules:\n  - id: Not-Kebab\n    title: x\n    severity: high\n    match: { verbs: [get] }\n');
    writeFileSync(join(d, 'good.yaml'), 'lists:\n  my-list: [a, b]\n');
    const cache = writeRuleCache(d, join(d, 'cache.json'));
    expect(Object.keys(cache.files)).toHaveLength(1);
    const set = loadRuleSet(d, readRuleCache(join(d, 'cache.json')));
    expect(set.issues.some((i) => i.file === join(d, 'bad.yaml') && i.level === 'error')).toBe(true);
    expect(set.lists.get('my-list')?.items).toEqual(['a', 'b']);
    expect(set.lists.get('my-list')?.file).toBe(join(d, 'good.yaml'));
  });

  it('reports a list that a cached file defines again', () => {
    const d = tmp();
    writeFileSync(join(d, 'a.yaml'), 'lists:\n  same: [a]\n');
    writeFileSync(join(d, 'b.yaml'), 'lists:\n  same: [b]\n');
    const cache = writeRuleCache(d, join(d, 'cache.json'));
    expect(Object.keys(cache.files)).toHaveLength(2);
    const cached = loadRuleSet(d, cache);
    expect(cached.issues.map((i) => i.message)).toEqual([`list same is already defined at ${join(d, 'a.yaml')}:2`]);
    expect(cached.issues).toEqual(loadRuleSet(d, undefined).issues);
  });

  it('ignores a cache written by another parser, or one that is not JSON', () => {
    const { cachePath } = copyWithCache();
    const raw = JSON.parse(readFileSync(cachePath, 'utf8')) as RuleCache;
    writeFileSync(cachePath, JSON.stringify({ ...raw, parser: 'some other build' }));
    expect(readRuleCache(cachePath)).toBeUndefined();
    writeFileSync(cachePath, '{not json');
    expect(readRuleCache(cachePath)).toBeUndefined();
  });

  it('the build writes a cache that the compiled detector uses', async () => {
    // npm test builds first (tsc, then dist/detect/build-rule-cache.js).
    const dist = (await import(new URL('../../dist/detect/rule.js', import.meta.url).href)) as typeof import('../../src/detect/rule.js');
    const cache = dist.bundledRuleCache();
    expect(cache).toBeDefined();
    const set = dist.loadRuleSet(defaultRulesDir());
    expect(set.issues).toEqual([]);
    // Every bundled file parses cleanly, so every one is in the cache.
    expect(Object.keys(cache!.files)).toHaveLength(readdirSync(defaultRulesDir()).filter((f) => f.endsWith('.yaml')).length);
  });
});
