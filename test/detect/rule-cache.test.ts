import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultRulesDir } from '../../src/detect/index.js';
import { libraryVersions, moduleClosure, validityKey } from '../../src/detect/rule-cache-key.js';
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
    // Another build's cache names other files' stamps, or none.
    writeFileSync(cachePath, JSON.stringify({ ...raw, parser: 'some other build', stamps: undefined }));
    expect(readRuleCache(cachePath)).toBeUndefined();
    const stamps = raw.stamps!.map((s, i) => (i === 0 ? { ...s, size: s.size + 1 } : s));
    writeFileSync(cachePath, JSON.stringify({ ...raw, parser: 'some other build', stamps }));
    expect(readRuleCache(cachePath)).toBeUndefined();
    // Stamps that hold stand for the key.
    writeFileSync(cachePath, JSON.stringify({ ...raw, parser: 'not computed' }));
    expect(readRuleCache(cachePath)).toBeDefined();
    writeFileSync(cachePath, '{not json');
    expect(readRuleCache(cachePath)).toBeUndefined();
  });

  it('the build writes a cache that the compiled detector uses', async () => {
    // The tests' global setup builds first (tsc, then dist/detect/build-rule-cache.js).
    const dist = (await import(new URL('../../dist/detect/rule.js', import.meta.url).href)) as typeof import('../../src/detect/rule.js');
    const cache = dist.bundledRuleCache();
    expect(cache).toBeDefined();
    const set = dist.loadRuleSet(defaultRulesDir());
    expect(set.issues).toEqual([]);
    // Every bundled file parses cleanly, so every one is in the cache.
    expect(Object.keys(cache!.files)).toHaveLength(readdirSync(defaultRulesDir()).filter((f) => f.endsWith('.yaml')).length);
  });
});

describe('rule cache validity key', () => {
  const dist = fileURLToPath(new URL('../../dist/', import.meta.url));
  const repo = fileURLToPath(new URL('../../', import.meta.url));

  /** A copy of the compiled package (dist, the bundled rules, node_modules linked) to change modules in. */
  function copyBuild(): string {
    const d = tmp();
    cpSync(dist, join(d, 'dist'), { recursive: true });
    cpSync(join(repo, 'detections'), join(d, 'detections'), { recursive: true });
    symlinkSync(join(repo, 'node_modules'), join(d, 'node_modules'), 'dir');
    return d;
  }
  const keyOf = (d: string, libs = libraryVersions()) =>
    validityKey(join(d, 'dist'), moduleClosure([join(d, 'dist/detect/rule.js'), join(d, 'dist/detect/engine.js')]), libs);
  const touch = (f: string) => appendFileSync(f, '\n// changed\n');

  it('changes with every module that shapes a compiled rule, and with the yaml and jsonata versions', () => {
    const d = copyBuild();
    let key = keyOf(d);
    for (const m of [
      'detect/rule.js',
      'detect/compiler.js',
      'detect/match.js',
      'detect/candidates.js',
      'detect/expression.js',
      'detect/facts.js',
      'detect/jsonata-sync.js',
      'detect/lists.js',
      'detect/patterns.js',
      'detect/key-fields.js',
      'events/types.js',
    ]) {
      touch(join(d, 'dist', m));
      const next = keyOf(d);
      expect(next, m).not.toBe(key);
      key = next;
    }
    // A module no rule depends on leaves it alone.
    touch(join(d, 'dist/cli/serve.js'));
    expect(keyOf(d)).toBe(key);
    const libs = libraryVersions();
    expect(libs.jsonata).toMatch(/^\d+\.\d+\.\d+/);
    expect(keyOf(d, { ...libs, jsonata: '2.0.0' })).not.toBe(key);
    expect(keyOf(d, { ...libs, yaml: '1.0.0' })).not.toBe(key);
  });

  it('a build whose compiler changed after the cache was written does not use that cache', () => {
    const d = copyBuild();
    const run = (script: string) => execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: d, encoding: 'utf8' }).trim();
    const usesCache = `import { bundledRuleCache } from ${JSON.stringify(pathToFileURL(join(d, 'dist/detect/rule.js')).href)}; process.stdout.write(String(bundledRuleCache() !== undefined));`;
    run(`await import(${JSON.stringify(pathToFileURL(join(d, 'dist/detect/build-rule-cache.js')).href)});`);
    expect(run(usesCache)).toBe('true');
    // The same text with another modification time: the stamps no longer hold, the key (of the text) still does.
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(d, 'dist/detect/compiler.js'), later, later);
    expect(run(usesCache)).toBe('true');
    touch(join(d, 'dist/detect/compiler.js'));
    expect(run(usesCache)).toBe('false');
  });
});
