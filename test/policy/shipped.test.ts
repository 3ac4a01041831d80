// The files in audit-policies/ are what the code produces today (rebuild them with audit-policies/regenerate.sh).
import { readFileSync, readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runPolicy } from '../../src/cli/policy.js';
import { loadDetectionRequirements } from '../../src/policy/requirements.js';

// The recorded outputs name files relative to the repository root, which is where vitest runs.
const root = new URL('../../', import.meta.url).pathname;

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runPolicy(argv, { stdin: Readable.from(['']), stdout: { write: (s: string) => (out += s) }, stderr: { write: () => true } });
  return { code, out };
}

const read = (p: string) => readFileSync(root + p, 'utf8');
const catalogLoads = await loadDetectionRequirements({ rulesDir: root + 'detections' }).then(
  () => true,
  () => false,
);

describe('audit-policies/', () => {
  for (const profile of ['minimal', 'recommended', 'strict']) {
    it.skipIf(!catalogLoads)(`profiles/${profile}.yaml is what generate writes with the bundled detection catalog`, async () => {
      const g = await run(['generate', '--profile', profile, '--rules', 'detections']);
      expect(g.out).toBe(read(`audit-policies/profiles/${profile}.yaml`));
    });
    it(`profiles/${profile}.yaml: its check finds nothing`, async () => {
      const c = await run(['check', `audit-policies/profiles/${profile}.yaml`, '--no-detections']);
      expect(c.code).toBe(0);
      expect(c.out).toBe(read(`audit-policies/profiles/${profile}.check.txt`));
      // The minimal profile keeps workloads at Metadata by design: the posture checks' warning is the one it earns
      // (recommended and strict log pod and workload writes at Request).
      if (profile === 'minimal') {
        expect(c.out).toMatch(/^0 failed, 1 warning, 0 notes/m);
        expect(c.out).toMatch(/WARN workload-bodies/);
      } else expect(c.out).toMatch(/^0 failed, 0 warnings, 0 notes/m);
    });
  }

  const examples = readdirSync(root + 'audit-policies/examples').filter((f) => f.endsWith('.yaml'));
  it('has examples', () => expect(examples.length).toBeGreaterThanOrEqual(5));
  for (const f of examples) {
    it(`examples/${f}: the recorded check result is current`, async () => {
      const c = await run(['check', `audit-policies/examples/${f}`, '--no-detections']);
      expect(c.out).toBe(read(`audit-policies/examples/${f.replace(/\.yaml$/, '.check.txt')}`));
    });
  }

  it('the README states the right verdicts', () => {
    const readme = read('audit-policies/README.md');
    for (const f of examples) {
      const name = f.replace(/\.yaml$/, '');
      const failed = /^(\d+) failed/m.exec(read(`audit-policies/examples/${name}.check.txt`))![1] !== '0';
      const row = readme.split('\n').find((l) => l.startsWith(`| [${name}]`));
      expect(row, name).toBeDefined();
      expect(/\*\*fails\*\*/.test(row!), name).toBe(failed);
    }
  });
});
