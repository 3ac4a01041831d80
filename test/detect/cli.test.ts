import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runDetect } from '../../src/cli/detect.js';
import { runRules } from '../../src/cli/rules.js';
import { createDetector, RuleLoadError } from '../../src/detect/index.js';
import { exampleEvent } from '../../src/detect/examples.js';
import { sink } from './helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const badRules = join(repo, 'fixtures/detect/bad-rules');

function io(stdinText = '') {
  const stdout = sink();
  const stderr = sink();
  return { stdin: Readable.from([Buffer.from(stdinText)]), stdout, stderr };
}

const line = (p: Record<string, unknown>, id: string) => JSON.stringify(exampleEvent(p, id, 0));
const privileged = (id: string) =>
  line(
    {
      verb: 'create',
      objectRef: { resource: 'pods', namespace: 'web', name: id },
      requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'x', securityContext: { privileged: true } }] } },
    },
    id,
  );
const cmCreate = (id: string) => line({ verb: 'create', objectRef: { resource: 'configmaps', namespace: 'web', name: id } }, id);

describe('kaudit detect', { timeout: 30_000 }, () => {
  it('reads JSON lines from stdin, prints one alert a line, reports bad input on stderr and goes on', async () => {
    const x = io([privileged('p1'), 'not json at all', '{"kind":"Event"}', cmCreate('c1'), ''].join('\n'));
    expect(await runDetect([], x)).toBe(0);
    const alerts = x.stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // The pod also raises the info-level posture findings of its spec (detections/posture.yaml).
    expect(alerts.map((a) => a.rule)).toEqual([
      'posture-default-serviceaccount',
      'posture-token-automount',
      'posture-run-as-non-root',
      'posture-image-digest',
      'pod-privileged',
      'configmap-created',
    ]);
    for (const k of ['rule', 'severity', 'auditID', 'stage', 'time', 'summary', 'user', 'objectRef', 'mitre', 'tags', 'groupKey'])
      expect(alerts[0]).toHaveProperty(k);
    const errs = x.stderr.text.trim().split('\n');
    expect(errs[0]).toMatch(/^kaudit detect: bad input at stdin:2: not JSON/);
    expect(errs[1]).toMatch(/^kaudit detect: bad input at stdin:3: audit event lacks auditID/);
    expect(errs[2]).toBe('kaudit detect: 2 events, 6 alerts printed, 2 bad records, 74 rules');
  });

  it('filters with --min-severity and fails the run with --fail-on', async () => {
    const input = [privileged('p1'), cmCreate('c1')].join('\n') + '\n';
    const a = io(input);
    expect(await runDetect(['--min-severity', 'medium', '--quiet'], a)).toBe(0);
    expect(
      a.stdout.text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).rule),
    ).toEqual(['pod-privileged']);
    const b = io(input);
    expect(await runDetect(['--fail-on', 'high', '--quiet'], b)).toBe(1);
    const c = io(cmCreate('c2') + '\n');
    expect(await runDetect(['--fail-on', 'high', '--quiet'], c)).toBe(0);
  });

  it('groups repeats of one rule, identity and object within the window into one alert with a count; --no-group prints each', async () => {
    // A loop re-creating one privileged pod every 30 s for 20 minutes, then once more after a 15-minute pause (a new
    // group), and another pod in between (its own group).
    const at = (s: number) => new Date(Date.parse('2026-01-01T00:00:00Z') + s * 1000).toISOString();
    const pod = (id: string, name: string, s: number) =>
      JSON.stringify({
        ...exampleEvent(
          {
            verb: 'create',
            objectRef: { resource: 'pods', namespace: 'web', name },
            requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'x', securityContext: { privileged: true } }] } },
          },
          id,
          0,
        ),
        requestReceivedTimestamp: at(s),
        stageTimestamp: at(s),
      });
    const lines = [];
    for (let i = 0; i < 40; i++) lines.push(pod(`loop-${i}`, 'p1', i * 30));
    lines.push(pod('other', 'p2', 100));
    lines.push(pod('late', 'p1', 39 * 30 + 15 * 60));
    const input = lines.join('\n') + '\n';
    const x = io(input);
    expect(await runDetect(['--min-severity', 'high'], x)).toBe(0);
    const alerts = x.stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(alerts.map((a) => [a.objectRef.name, a.count, a.auditID, a.lastAuditID])).toEqual([
      ['p1', 40, 'loop-0-0', 'loop-39-0'],
      ['p2', 1, 'other-0', 'other-0'],
      ['p1', 1, 'late-0', 'late-0'],
    ]);
    expect(alerts[0].firstTime).toBe('2026-01-01T00:00:00.000Z');
    expect(alerts[0].lastTime).toBe('2026-01-01T00:19:30.000Z');
    expect(x.stderr.text).toMatch(/3 alerts printed.*; \d+ firings grouped by rule, identity and object within 600s/);
    const y = io(input);
    expect(await runDetect(['--min-severity', 'high', '--no-group', '--quiet'], y)).toBe(0);
    expect(y.stdout.text.trim().split('\n')).toHaveLength(42);
  });

  it('reads an EventList document from stdin', async () => {
    const doc = JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [JSON.parse(privileged('p9'))] }, null, 2);
    const x = io(doc);
    expect(await runDetect(['--quiet'], x)).toBe(0);
    expect(x.stdout.text).toContain('"rule":"pod-privileged"');
  });

  it('takes tuning from --config (the detection: key of a kaudit config file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kaudit-detect-'));
    const cfg = join(dir, 'kaudit.yaml');
    writeFileSync(cfg, "cluster: prod\ndetection:\n  disabled: [configmap-created, 'posture-*']\n  severity: {pod-privileged: critical}\n");
    const x = io([privileged('p1'), cmCreate('c1')].join('\n') + '\n');
    expect(await runDetect(['--config', cfg, '--quiet'], x)).toBe(0);
    const alerts = x.stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(alerts.map((a) => [a.rule, a.severity, a.cluster])).toEqual([['pod-privileged', 'critical', 'prod']]);
    writeFileSync(cfg, 'detection:\n  severity: {pod-privileged: urgent}\n');
    const y = io('');
    expect(await runDetect(['--config', cfg], y)).toBe(2);
    expect(y.stderr.text).toMatch(/detection\.severity\.pod-privileged must be one of/);
  });

  it('refuses broken rules with every problem and its place', async () => {
    const x = io('');
    expect(await runDetect(['--rules', badRules], x)).toBe(2);
    expect(x.stderr.text).toMatch(/rules\.yaml:\d+: error: rule typo-field: duplicate id/);
    await expect(createDetector({ rulesDir: badRules })).rejects.toBeInstanceOf(RuleLoadError);
  });
});

describe('kaudit rules', { timeout: 30_000 }, () => {
  it('lint passes on the bundled catalog and reports every problem of a broken file with its line', { timeout: 30_000 }, async () => {
    const ok = io();
    expect(await runRules(['lint'], ok)).toBe(0);
    expect(ok.stdout.text).toMatch(/79 rules, \d+ lists: 0 errors, 0 warnings/);
    const bad = io();
    expect(await runRules(['lint', '--rules', badRules], bad)).toBe(1);
    const out = bad.stdout.text;
    const expectLine = (re: RegExp) => expect(out).toMatch(re);
    expectLine(/rules\.yaml:3: error: rule typo-field: condition: "requestObjekt" is not a field of an audit event/);
    expectLine(/rules\.yaml:15: error: rule unknown-function: condition: unknown function \$containerz\(\)/);
    expectLine(/rules\.yaml:27: error: rule bad-placeholder: summary: unknown placeholder \{vreb\}, \{details\.nothing\}/);
    expectLine(/rules\.yaml:27: warning: rule bad-placeholder: no quiet example/);
    expectLine(/rules\.yaml:37: error: rule bad-syntax: condition: .*at character/);
    expectLine(/rules\.yaml:48: error: rule bad-resource: match\.resources: bad resource "Pods!"/);
    expectLine(/rules\.yaml:59: error: rule Not_Kebab: id "Not_Kebab" must be kebab-case/);
    expectLine(/rules\.yaml:59: error: rule Not_Kebab: severity must be one of/);
    expectLine(/rules\.yaml:59: error: rule Not_Kebab: match: unknown key "verbz"/);
    expectLine(/rules\.yaml:59: error: rule Not_Kebab: no fire example/);
    expectLine(/rules\.yaml:66: error: rule typo-field: duplicate id: also defined at .*rules\.yaml:3/);
    expectLine(/rules\.yaml:66: error: rule typo-field: match\.namespaces\.include: unknown list "no-such-list"/);
    expectLine(/rules\.yaml:88: warning: rule slow-lambda: condition: evaluated by JSONata's own evaluator, several times slower .* does not cover lambda/);
    expectLine(/lists?\.yaml:\d+: warning: list unused-list is not used by any rule|rules\.yaml:\d+: warning: list unused-list is not used by any rule/);
  });

  it('test runs every example and fails on one that does not hold', { timeout: 60_000 }, async () => {
    const ok = io();
    expect(await runRules(['test'], ok)).toBe(0);
    expect(ok.stdout.text).toMatch(/^(\d+)\/\1 examples passed \(79 rules\)$/m);
    const one = io();
    expect(await runRules(['test', '--rule', 'pod-exec', '--verbose'], one)).toBe(0);
    expect(one.stdout.text).toMatch(/ok {4}.*exec\.yaml:\d+: pod-exec fire\[0\]/);
    expect(one.stdout.text).toMatch(/examples passed \(1 rules\)/);
    const bad = io();
    expect(await runRules(['test', '--rules', badRules, '--rule', 'wrong-example'], bad)).toBe(1);
    expect(bad.stdout.text).toMatch(/FAIL {2}.*rules\.yaml:\d+: wrong-example fire\[0\]: expected 1 alert\(s\), got 0/);
    expect(bad.stdout.text).toMatch(/FAIL {2}.*wrong-example quiet\[0\]: expected 0 alert\(s\), got 1/);
  });

  it('list prints the catalog with status, level and MITRE ids', async () => {
    const x = io();
    expect(await runRules(['list', '--json'], x)).toBe(0);
    const rows = x.stdout.text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(79);
    expect(rows.find((r) => r.id === 'pod-exec')).toMatchObject({ severity: 'medium', kind: 'event', level: 'Metadata', status: 'on' });
    expect(rows.find((r) => r.id === 'pod-privileged')).toMatchObject({ level: 'Request' });
    expect(rows.find((r) => r.id === 'disallowed-image')!.status).toMatch(/needs list allowed-images/);
    expect(rows.find((r) => r.id === 'secret-enumeration-burst')).toMatchObject({ kind: 'threshold' });
    const t = io();
    expect(await runRules(['list'], t)).toBe(0);
    expect(t.stdout.text.split('\n')[0]).toMatch(/^ID\s+SEVERITY\s+KIND\s+LEVEL\s+MITRE\s+STATUS\s+EXCEPTIONS\s+TITLE/);
    expect(rows.find((r) => r.id === 'pod-privileged')).toMatchObject({ exceptions: 'node-agents,mirror-pods' });
    expect(rows.find((r) => r.id === 'pod-exec')).toMatchObject({ exceptions: '-' });
  });

  it('explain --event says why an event did or did not raise the rule', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kaudit-explain-ev-'));
    const pod = {
      kind: 'Pod',
      metadata: { ownerReferences: [{ kind: 'DaemonSet', name: 'kube-proxy', controller: true }] },
      spec: { containers: [{ name: 'kube-proxy', image: 'registry.k8s.io/kube-proxy:v1.30.4', securityContext: { privileged: true } }] },
    };
    const dsc = { username: 'system:serviceaccount:kube-system:daemon-set-controller', groups: ['system:serviceaccounts'] };
    const write = (name: string, p: Record<string, unknown>) => {
      const f = join(dir, name);
      writeFileSync(f, JSON.stringify(exampleEvent(p, name, 0)) + '\n');
      return f;
    };
    const excepted = io();
    expect(
      await runRules(
        [
          'explain',
          'pod-privileged',
          '--event',
          write('a', { verb: 'create', user: dsc, objectRef: { resource: 'pods', namespace: 'kube-system' }, requestObject: pod }),
        ],
        excepted,
      ),
    ).toBe(0);
    expect(excepted.stdout.text).toMatch(/match: passes/);
    expect(excepted.stdout.text).toMatch(/shipped exception: "?node-agents:/);
    expect(excepted.stdout.text).toMatch(/condition: "?true/);
    expect(excepted.stdout.text).toMatch(/alert: "?no/);
    const person = io();
    expect(
      await runRules(
        ['explain', 'pod-privileged', '--event', write('b', { verb: 'create', objectRef: { resource: 'pods', namespace: 'kube-system' }, requestObject: pod })],
        person,
      ),
    ).toBe(0);
    expect(person.stdout.text).not.toMatch(/shipped exception/);
    expect(person.stdout.text).toMatch(/alert: "?yes \(high\)/);
    const failed = io();
    expect(
      await runRules(
        [
          'explain',
          'pod-privileged',
          '--event',
          write('c', { verb: 'create', code: 422, objectRef: { resource: 'pods', namespace: 'web' }, requestObject: pod }),
        ],
        failed,
      ),
    ).toBe(0);
    expect(failed.stdout.text).toMatch(/match: "?does not pass: outcome/);
  });

  it("explain shows a rule's shipped exceptions with the lists they use, and what the config removed", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kaudit-explain-'));
    const cfg = join(dir, 'kaudit.yaml');
    writeFileSync(
      cfg,
      'detection:\n  rules:\n    role-pod-exec: {removeExceptions: [role-aggregation]}\n  lists:\n    workload-controllers: {remove: [system:kube-controller-manager]}\n',
    );
    const x = io();
    expect(await runRules(['explain', 'pod-privileged', '--config', cfg], x)).toBe(0);
    expect(x.stdout.text).toMatch(/name: node-agents/);
    expect(x.stdout.text).toMatch(/system:serviceaccount:kube-system:daemon-set-controller/);
    expect(x.stdout.text).not.toMatch(/- system:kube-controller-manager/);
    const y = io();
    expect(await runRules(['explain', 'role-pod-exec', '--config', cfg], y)).toBe(0);
    expect(y.stdout.text).toMatch(/quiet on .*: none/);
    expect(y.stdout.text).toMatch(/removed by the config:\n\s+- role-aggregation/);
    const l = io();
    expect(await runRules(['list', '--json', '--config', cfg], l)).toBe(0);
    expect(
      l.stdout.text
        .split('\n')
        .filter(Boolean)
        .map((r) => JSON.parse(r))
        .find((r) => r.id === 'role-pod-exec').exceptions,
    ).toBe('-');
  });
});
