import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { INSTALLED_JSONATA_VERSION, MIRRORED_JSONATA_VERSION } from '../../src/detect/jsonata-sync.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const json = (path: string) => JSON.parse(readFileSync(join(repo, path), 'utf8'));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Whether the compiled synchronous evaluator covers an expression, and the expression's value, in the build at `root`. */
function evaluate(root: string): { notCovered?: string; value: boolean } {
  const at = (m: string) => JSON.stringify(pathToFileURL(join(root, 'dist', m)).href);
  const script = `
    import { RuleExpression } from ${at('detect/expression.js')};
    import { DetectionLists } from ${at('detect/lists.js')};
    const x = new RuleExpression('verb = "create" and $count(objectRef.name) = 1', DetectionLists.build(new Map()), { timeoutMs: 1000 });
    const value = await x.test({ verb: 'create', objectRef: { name: 'n' } });
    process.stdout.write(JSON.stringify({ notCovered: x.notCovered, value }));`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' }));
}

describe('jsonata version', () => {
  // The synchronous evaluator follows one jsonata release step for step: another release may evaluate differently.
  it('is installed, declared and locked at exactly the release the synchronous evaluator follows', () => {
    expect(INSTALLED_JSONATA_VERSION).toBe(MIRRORED_JSONATA_VERSION);
    expect(json('package.json').dependencies.jsonata).toBe(MIRRORED_JSONATA_VERSION);
    const lock = json('package-lock.json');
    expect(lock.packages[''].dependencies.jsonata).toBe(MIRRORED_JSONATA_VERSION);
    expect(lock.packages['node_modules/jsonata'].version).toBe(MIRRORED_JSONATA_VERSION);
  });

  it('with another release installed, every expression goes to jsonata itself, and its answers stand', () => {
    expect(evaluate(repo)).toEqual({ value: true });
    // The compiled build beside a node_modules whose jsonata says it is another release.
    const d = mkdtempSync(join(tmpdir(), 'kaudit-jsonata-'));
    dirs.push(d);
    cpSync(join(repo, 'dist'), join(d, 'dist'), { recursive: true });
    mkdirSync(join(d, 'node_modules'));
    for (const m of readdirSync(join(repo, 'node_modules'))) {
      if (m !== 'jsonata') symlinkSync(join(repo, 'node_modules', m), join(d, 'node_modules', m), 'dir');
    }
    cpSync(join(repo, 'node_modules', 'jsonata'), join(d, 'node_modules', 'jsonata'), { recursive: true });
    const pkg = join(d, 'node_modules', 'jsonata', 'package.json');
    writeFileSync(pkg, JSON.stringify({ ...JSON.parse(readFileSync(pkg, 'utf8')), version: '9.9.9' }));
    const other = evaluate(d);
    expect(other.notCovered).toContain('jsonata 9.9.9 is installed');
    expect(other.value).toBe(true);
  });
});
