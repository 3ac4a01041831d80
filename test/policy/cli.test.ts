import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runPolicy } from '../../src/cli/policy.js';
import { parsePolicy } from '../../src/policy/load.js';

const fixtures = new URL('../../fixtures/', import.meta.url).pathname;
const REQS = `${fixtures}policies/detection-requirements.yaml`;
const LOG = `${fixtures}policies/traffic/audit-requestresponse.jsonl`;
const dir = mkdtempSync(join(tmpdir(), 'kaudit-policy-'));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

async function run(argv: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runPolicy(argv, {
    stdin: Readable.from([stdin]),
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
  });
  return { code, out, err };
}

const POLICY = file(
  'p.yaml',
  `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
    resources: [{group: "", resources: [endpoints]}]
  - level: Request
    resources: [{group: "", resources: ["pods/*"]}]
    omitStages: [ResponseStarted]
    omitManagedFields: false
  - level: Metadata
`,
);

describe('kaudit policy eval', () => {
  it('prints one decision a line in the documented format', async () => {
    const lines = [
      {
        user: { name: 'alice', groups: ['dev'] },
        verb: 'get',
        resourceRequest: true,
        apiGroup: '',
        apiVersion: 'v1',
        namespace: 'default',
        resource: 'pods',
        subresource: 'log',
        name: 'busybox',
        path: '/api/v1/namespaces/default/pods/busybox/log',
      },
      { user: { name: 'system:kube-proxy', groups: [] }, verb: 'watch', resourceRequest: true, resource: 'endpoints', path: '/api/v1/endpoints' },
      { user: null, verb: 'get', resourceRequest: false, path: '/healthz' },
    ];
    const r = await run(['eval', '--policy', POLICY], lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    expect(r.code).toBe(0);
    expect(
      r.out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([
      { level: 'Request', omitStages: ['RequestReceived', 'ResponseStarted'], omitManagedFields: false, rule: 1 },
      { level: 'None', omitStages: ['RequestReceived'], omitManagedFields: true, rule: 0 },
      { level: 'Metadata', omitStages: ['RequestReceived'], omitManagedFields: true, rule: 2 },
    ]);
  });

  it('keeps lines aligned on bad input and exits 1', async () => {
    const r = await run(['eval', '--policy', POLICY], '{"verb":"get"}\nnot json\n{"verb": 5}\n');
    const out = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(out).toHaveLength(3);
    expect(out[0]).toMatchObject({ level: 'Metadata', rule: 2 });
    expect(out[1].error).toMatch(/stdin:2: not JSON/);
    expect(out[2].error).toMatch(/verb must be a string/);
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n')).toHaveLength(2);
  });

  it('refuses a policy kube-apiserver would refuse, in one line', async () => {
    const bad = file('bad.yaml', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Everything\n');
    const r = await run(['eval', '--policy', bad], '');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^kaudit policy eval: .*bad\.yaml:4: kube-apiserver would refuse this policy: rules\[0\]\.level/);
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });
});

// The common mistake: secrets logged with their bodies.
const LEAKY = file(
  'leaky.yaml',
  `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
    resources: [{group: "", resources: [secrets]}]
  - level: Metadata
`,
);

describe('kaudit policy check', () => {
  it('text: failures, passes and exit code 1', async () => {
    const r = await run(['check', LEAKY, '--no-detections']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAIL cis-3\.2\.2-secrets-metadata-only/);
    expect(r.out).toMatch(/ok {3}cis-3\.2\.2-exec-proxy/);
    expect(r.out).toMatch(/skip detection-blind-spot: skipped \(--no-detections\)/);
  });

  it('--detect-config: tuning from a kaudit config file; a disabled rule needs nothing, a bad key is named', async () => {
    const blind = (out: string) =>
      (JSON.parse(out) as { findings: { id: string; detection?: string }[] }).findings.filter((f) => f.id === 'detection-blind-spot').map((f) => f.detection);
    const before = blind((await run(['check', LEAKY, '--format', 'json'])).out);
    expect(before).toContain('pod-privileged');
    const tuned = await run(['check', LEAKY, '--format', 'json', '--detect-config', file('tuned.yaml', 'detection:\n  disabled: [pod-privileged]\n')]);
    expect(blind(tuned.out)).not.toContain('pod-privileged');
    expect(blind(tuned.out).length).toBeGreaterThan(0);
    const badFile = file('bad-tuning.yaml', 'detection:\n  disable: [pod-privileged]\n');
    const bad = await run(['check', LEAKY, '--format', 'json', '--detect-config', badFile]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain(`${badFile}: detection: unknown key "disable"`);
  });

  it('json: findings only, each with id, severity, message and rule', async () => {
    const r = await run(['check', LEAKY, '--format', 'json', '--requirements', REQS]);
    const j = JSON.parse(r.out);
    expect(j.findings.length).toBeGreaterThan(0);
    for (const f of j.findings) {
      expect(typeof f.id).toBe('string');
      expect(['error', 'warning', 'note']).toContain(f.severity);
      expect(typeof f.message).toBe('string');
    }
    const secrets = j.findings.find((f: { id: string }) => f.id === 'cis-3.2.2-secrets-metadata-only');
    expect(secrets).toMatchObject({ rule: 0, severity: 'error', line: 5 });
    expect(j.findings.find((f: { id: string }) => f.id === 'detection-blind-spot').detection).toBe('pod-privileged');
    expect(r.code).toBe(1);
  });

  it('sarif: a valid-looking 2.1.0 log with one result per finding', async () => {
    const r = await run(['check', POLICY, '--format', 'sarif', '--no-detections']);
    const s = JSON.parse(r.out);
    expect(s.version).toBe('2.1.0');
    const results = s.runs[0].results;
    const j = JSON.parse((await run(['check', POLICY, '--format', 'json', '--no-detections'])).out);
    expect(results).toHaveLength(j.findings.length);
    expect(results[0].locations[0].physicalLocation.artifactLocation.uri).toBe(POLICY);
    expect(s.runs[0].tool.driver.rules.map((x: { id: string }) => x.id)).toContain('cis-3.2.1');
  });

  it('with --apiserver-manifest adds the kube-bench flag checks', async () => {
    const good = (
      await run(['check', POLICY, '--no-detections', '--format', 'json', '--apiserver-manifest', `${fixtures}apiserver/kube-apiserver-v1.26-weak.yaml`])
    ).out;
    const j = JSON.parse(good);
    expect(j.manifest.benchmark).toBe('cis-1.8');
    expect(j.findings.filter((f: { id: string }) => f.id.startsWith('cis-1.2.')).map((f: { id: string }) => f.id)).toEqual([
      'cis-1.2.18',
      'cis-1.2.19',
      'cis-1.2.20',
    ]);
  });

  it('without FILE, checks the policy the manifest names', async () => {
    const m = file(
      'm.yaml',
      `apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.30.0\n    command: [kube-apiserver, --audit-policy-file=${LEAKY}, --audit-log-path=/var/log/a.log, --audit-log-maxage=30, --audit-log-maxbackup=10, --audit-log-maxsize=100]\n`,
    );
    const r = await run(['check', '--apiserver-manifest', m, '--no-detections', '--format', 'json']);
    const j = JSON.parse(r.out);
    expect(j.policy).toBe(LEAKY);
    expect(j.findings.map((f: { id: string }) => f.id)).toEqual([
      'cis-3.2.2-secrets-metadata-only',
      'workload-bodies',
      'noisy-reads',
      'noisy-reads',
      'noisy-reads',
      'noisy-reads',
    ]);
    const missing = await run(['check', '--apiserver-manifest', `${fixtures}apiserver/kube-apiserver-v1.30-good.yaml`, '--no-detections']);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/cannot read \/etc\/kubernetes\/audit\/audit-policy.yaml: ENOENT/);
  });

  it('a generated policy passes: exit 0; --fail-on warning makes warnings fail', async () => {
    const gen = await run(['generate', '--profile', 'recommended', '--requirements', REQS]);
    expect(gen.code).toBe(0);
    const p = file('gen.yaml', gen.out);
    expect((await run(['check', p, '--requirements', REQS])).code).toBe(0);
    // configmap-with-credentials stays blind (CIS forbids its level): a warning
    expect((await run(['check', p, '--requirements', REQS, '--fail-on', 'warning'])).code).toBe(1);
  });

  it('usage and I/O errors: one line, exit 2', async () => {
    for (const argv of [
      ['check'],
      ['check', join(dir, 'missing.yaml'), '--no-detections'],
      ['check', POLICY, '--format', 'xml'],
      ['frobnicate'],
      ['check', POLICY, '--bogus'],
    ]) {
      const r = await run(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err.trim().split('\n'), argv.join(' ')).toHaveLength(1);
    }
  });
});

describe('kaudit policy matrix, simulate, generate', () => {
  it('matrix prints the level per resource and verb', async () => {
    const r = await run(['matrix', POLICY]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^pods\/exec\s+Req \[1\]/m);
    expect(r.out).toMatch(/^secrets\s+Meta \[2\]/m);
    expect(r.out).toMatch(/kube-proxy:\n\s+watch endpoints\s+- \[0\]/);
    const j = JSON.parse((await run(['matrix', POLICY, '--format', 'json', '--user', 'system:kube-proxy'])).out);
    expect(j.rows.find((x: { resource: string }) => x.resource === 'endpoints').cells.watch).toEqual({
      level: 'None',
      rule: 0,
      omitStages: ['RequestReceived'],
    });
  });

  it('simulate reads log files and reports volume and blind detections', async () => {
    const r = await run(['simulate', '--policy', POLICY, '--requirements', REQS, '--format', 'json', LOG]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.input.events).toBe(270);
    // the deployment create and its three patches fall to the Metadata catch-all
    expect(j.detections.find((d: { rule: string }) => d.rule === 'pod-privileged')).toMatchObject({ requests: 5, lost: 4 });
    const missing = await run(['simulate', '--policy', POLICY, '--no-detections', join(dir, 'nope.log')]);
    expect(missing.code).toBe(2);
  });

  it('generate writes a policy for each profile; --from-log prints the volume on stderr', async () => {
    for (const profile of ['minimal', 'recommended', 'strict']) {
      const r = await run(['generate', '--profile', profile, '--no-detections']);
      expect(r.code).toBe(0);
      expect(parsePolicy(r.out).policy).not.toBeNull();
    }
    const t = await run(['generate', '--from-log', LOG, '--requirements', REQS]);
    expect(t.code).toBe(0);
    expect(t.err).toMatch(/expected volume \d+ bytes .* -\d+\.\d%/);
    expect((await run(['generate', '--profile', 'extreme', '--no-detections'])).code).toBe(2);
  });
});
