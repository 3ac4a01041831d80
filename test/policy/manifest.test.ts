import { describe, expect, it } from 'vitest';
import { benchmarkFor, checkApiserverFlags, loadApiserverManifest, parseApiserverManifest } from '../../src/policy/manifest.js';

const dir = new URL('../../fixtures/apiserver/', import.meta.url).pathname;

async function run(file: string, override?: string) {
  const m = await loadApiserverManifest(dir + file);
  return { m, ...checkApiserverFlags(m, file, override) };
}

describe('apiserver audit flags (kube-bench checks)', () => {
  it('a good kubeadm manifest passes, with the ids of the benchmark for its version (1.30 -> cis-1.11)', async () => {
    const r = await run('kube-apiserver-v1.30-good.yaml');
    expect(r.m.version).toBe('1.30');
    expect(r.benchmark).toBe('cis-1.11');
    expect(r.findings).toEqual([]);
    expect(r.passed).toEqual(['cis-3.2.1', 'cis-1.2.16', 'cis-1.2.17', 'cis-1.2.18', 'cis-1.2.19']);
  });

  it('weak retention fails with the 1.26 (cis-1.8) ids and the flag lines; `--flag value` form is read', async () => {
    const r = await run('kube-apiserver-v1.26-weak.yaml');
    expect(r.benchmark).toBe('cis-1.8');
    expect(r.m.flags.get('audit-log-path')).toBe('/var/log/kube-audit.log');
    expect(r.findings.map((f) => f.id)).toEqual(['cis-1.2.18', 'cis-1.2.19', 'cis-1.2.20']);
    expect(r.findings[0]!.message).toMatch(/--audit-log-maxage is not set/);
    expect(r.findings[1]).toMatchObject({ line: 18, file: 'kube-apiserver-v1.26-weak.yaml' });
    expect(r.findings[1]!.message).toMatch(/--audit-log-maxbackup=5 is below 10/);
    expect(r.passed).toEqual(['cis-3.2.1', 'cis-1.2.17']);
  });

  it('a webhook backend replaces the log path and its retention flags', async () => {
    const r = await run('kube-apiserver-v1.29-webhook.yaml');
    expect(r.findings).toEqual([]);
    expect(r.passed).toContain('cis-1.2.16');
  });

  it('no auditing at all fails every check; an unknown version uses the newest benchmark', async () => {
    const r = await run('kube-apiserver-no-audit.yaml');
    expect(r.m.version).toBeUndefined();
    expect(r.benchmark).toBe('cis-1.12');
    expect(r.findings.map((f) => f.id)).toEqual(['cis-3.2.1', 'cis-1.2.16', 'cis-1.2.17', 'cis-1.2.18', 'cis-1.2.19']);
  });

  it('the benchmark can be forced', async () => {
    const r = await run('kube-apiserver-no-audit.yaml', 'cis-1.6');
    expect(r.findings.map((f) => f.id)).toEqual(['cis-3.2.1', 'cis-1.2.22', 'cis-1.2.23', 'cis-1.2.24', 'cis-1.2.25']);
    expect(() => benchmarkFor(undefined, 'cis-9.9')).toThrow(/unknown CIS benchmark/);
  });

  it('version mapping follows kube-bench', () => {
    expect(['1.15', '1.18', '1.21', '1.23', '1.24', '1.25', '1.26', '1.27', '1.28', '1.31', '1.34'].map((v) => benchmarkFor(v).name)).toEqual([
      'cis-1.5',
      'cis-1.6',
      'cis-1.20',
      'cis-1.23',
      'cis-1.24',
      'cis-1.7',
      'cis-1.8',
      'cis-1.9',
      'cis-1.10',
      'cis-1.11',
      'cis-1.12',
    ]);
  });

  it('refuses a file without a kube-apiserver container', () => {
    expect(() => parseApiserverManifest('apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: x, command: [sleep]}]\n', 'x.yaml')).toThrow(
      /no kube-apiserver container/,
    );
  });
});
