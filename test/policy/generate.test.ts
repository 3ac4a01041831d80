// Round trip: generate each profile, check it (no failure), load it as the apiserver would, simulate it over a log.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { readEventFiles } from '../../src/sources/file-read.js';
import { blindSpots, checkPolicy } from '../../src/policy/checks.js';
import { attributesFromEvent, evaluatePolicy } from '../../src/policy/evaluate.js';
import { generatePolicy, PROFILES } from '../../src/policy/generate.js';
import { parsePolicy } from '../../src/policy/load.js';
import { parseRequirements, type RuleRequirement } from '../../src/policy/requirements.js';
import { simulatePolicy } from '../../src/policy/simulate.js';
import { requestAttributes } from '../../src/policy/types.js';
import { validatePolicy } from '../../src/policy/validate.js';

const fixtures = new URL('../../fixtures/policies/', import.meta.url).pathname;
const LOG = `${fixtures}traffic/audit-requestresponse.jsonl`;
const REQS: RuleRequirement[] = parseRequirements(parseYaml(readFileSync(`${fixtures}detection-requirements.yaml`, 'utf8')), 'detection-requirements.yaml');

describe.each(PROFILES)('profile %s', (profile) => {
  it('loads unchanged in kube-apiserver, passes check with no failure, and simulates over a log', async () => {
    const g = await generatePolicy({ profile, requirements: REQS });
    const loaded = parsePolicy(g.yaml, profile);
    expect(loaded.decodeErrors).toEqual([]);
    expect(loaded.unknownFields).toEqual([]);
    expect(validatePolicy(loaded.policy!)).toEqual([]);
    // `group: "*"` needs Kubernetes 1.36: generated policies must not use it.
    expect(loaded.policy!.rules.flatMap((r) => r.resources).some((gr) => gr.group === '*')).toBe(false);

    const report = checkPolicy(loaded, { requirements: REQS });
    expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
    expect(report.findings.filter((f) => ['shadowed-rule', 'noisy-reads', 'omit-request-received'].includes(f.id))).toEqual([]);

    const sim = await simulatePolicy(loaded.policy!, readEventFiles([LOG]), { requirements: REQS });
    expect(sim.input.events).toBe(270);
    expect(sim.input.badRecords).toBe(0);
    expect(sim.kept.bytes).toBeLessThan(sim.input.bytes / 2);
    // The person's session is kept: privileged pod, exec, secret read, RBAC change.
    expect(sim.kept.events).toBeGreaterThanOrEqual(12);
  });
});

describe('detections', () => {
  it('recommended and strict leave no detection blind except the one CIS forbids; minimal reports, does not patch', async () => {
    for (const profile of ['recommended', 'strict'] as const) {
      const g = await generatePolicy({ profile, requirements: REQS });
      expect(g.uncovered.map((u) => u.rule)).toEqual(['configmap-with-credentials']);
      const blind = checkPolicy(parsePolicy(g.yaml), { requirements: REQS }).findings.filter((f) => f.id === 'detection-blind-spot');
      expect(blind.map((f) => f.detection)).toEqual(['configmap-with-credentials']);
      const sim = await simulatePolicy(parsePolicy(g.yaml).policy!, readEventFiles([LOG]), { requirements: REQS });
      expect(sim.detections.filter((d) => d.lost > 0).map((d) => d.rule)).toEqual(['configmap-with-credentials']);
    }
    const minimal = await generatePolicy({ profile: 'minimal', requirements: REQS });
    expect(minimal.uncovered.map((u) => u.rule).sort()).toEqual(['cluster-admin-binding', 'configmap-with-credentials', 'pod-privileged']);
    expect(minimal.uncovered.find((u) => u.rule === 'pod-privileged')!.reason).toMatch(/needs Request; the minimal profile/);
    expect(minimal.yaml).toMatch(/# Detections: this profile adds nothing for them/);
    const rec = await generatePolicy({ profile: 'recommended', requirements: REQS });
    expect(rec.yaml).toMatch(
      /# Detections: every enabled detection sees the requests it needs, except:\n# {3}configmap-with-credentials: needs Request on secrets/,
    );
  });

  it('adds a targeted rule for a detection the profile hides, before the rule that hid it, without lowering levels', async () => {
    const leaseWatcher: RuleRequirement = {
      rule: 'lease-tamper',
      title: 'Lease takeover',
      verbs: ['update'],
      resources: [{ group: 'coordination.k8s.io', resource: 'leases' }],
      namespaces: ['kube-system'],
      level: 'Request',
      stages: ['ResponseComplete'],
    };
    const g = await generatePolicy({ profile: 'recommended', requirements: [leaseWatcher] });
    expect(g.uncovered).toEqual([]);
    const p = parsePolicy(g.yaml).policy!;
    const upd = requestAttributes({
      user: { name: 'u', groups: [] },
      verb: 'update',
      resourceRequest: true,
      apiGroup: 'coordination.k8s.io',
      resource: 'leases',
      namespace: 'kube-system',
      name: 'x',
    });
    const d = evaluatePolicy(p, upd);
    expect(d.level).toBe('Request');
    // Only the named namespace is taken back from the noise rule; heartbeats elsewhere stay dropped.
    expect(evaluatePolicy(p, { ...upd, namespace: 'kube-node-lease' }).level).toBe('None');
    expect(g.yaml).toMatch(/# Detection lease-tamper: needs update leases.coordination.k8s.io in kube-system at Request/);
    // the sensitive rule stays first
    expect(p.rules[0]!.resources[0]!.resources).toContain('secrets');
    expect(blindSpots(p, [leaseWatcher])[0]!.misses).toEqual([]);
  });

  it('without the catalog, says so in the header', async () => {
    const g = await generatePolicy({ profile: 'recommended', requirementsNote: 'no engine' });
    expect(g.yaml).toMatch(/Detections: not checked \(no engine\)/);
  });
});

describe('--from-log', () => {
  it('drops only high-volume reads by system identities the profile still logs, and reports the volume', async () => {
    const g = await generatePolicy({ profile: 'recommended', requirements: REQS, fromLog: () => readEventFiles([LOG]) });
    const p = parsePolicy(g.yaml).policy!;
    const tuned = p.rules.filter((_, i) => /Seen in the log/.test(g.policy.rules[i]!.comment ?? ''));
    expect(tuned.map((r) => [r.users, r.verbs, r.resources[0]!.resources])).toEqual([
      [['system:serviceaccount:kube-system:coredns'], ['watch'], ['services']],
      [['system:kube-scheduler'], ['list'], ['pods']],
    ]);
    expect(g.volume!.inputEvents).toBe(270);
    expect(g.volume!.tunedBytes).toBeLessThan(g.volume!.untunedBytes);
    expect(g.yaml).toMatch(/# Expected volume: \d+ bytes instead of \d+ captured \(-\d+\.\d%\)/);
    // still passes its own check
    expect(checkPolicy(parsePolicy(g.yaml), { requirements: REQS }).findings.filter((f) => f.severity === 'error')).toEqual([]);
    // a person listing pods is still logged
    const alice = requestAttributes({ user: { name: 'alice', groups: ['system:authenticated'] }, verb: 'list', resourceRequest: true, resource: 'pods' });
    expect(evaluatePolicy(p, alice).level).toBe('Metadata');
  });

  it('keeps a read a detection names, even when only system identities make it', async () => {
    const watchServices: RuleRequirement = {
      rule: 'svc-watch',
      title: 'x',
      verbs: ['watch'],
      resources: [{ group: '', resource: 'services' }],
      level: 'Metadata',
      stages: ['ResponseComplete'],
    };
    const g = await generatePolicy({ profile: 'recommended', requirements: [watchServices], fromLog: () => readEventFiles([LOG]) });
    expect(g.yaml).not.toMatch(/watch services by system identities/);
    expect(g.yaml).toMatch(/list pods by system identities/);
  });
});

// Real captures: the Falco k8s-audit regression traces (read in place from ../shared/peer, never copied).
const PEER = new URL('../../../shared/peer/falco-k8s-audit/', import.meta.url).pathname;
describe.skipIf(!existsSync(PEER))('the recommended profile on real traces (Falco k8s-audit)', () => {
  it('keeps every event the Falco rules look at, with the request body of every change outside secrets and configmaps', async () => {
    const g = await generatePolicy({ profile: 'recommended', requirements: REQS });
    const p = parsePolicy(g.yaml).policy!;
    const traces = readdirSync(`${PEER}traces`)
      .filter((f) => f.endsWith('.json'))
      .map((f) => `${PEER}traces/${f}`);
    let events = 0;
    let bad = 0;
    for await (const item of readEventFiles(traces)) {
      if ('error' in item) {
        bad++;
        continue;
      }
      events++;
      const a = attributesFromEvent(item.event);
      const d = evaluatePolicy(p, a);
      expect(d.level, `${item.where}: ${a.verb} ${a.resource}`).not.toBe('None');
      const sensitive = a.apiGroup === '' && ['secrets', 'configmaps'].includes(a.resource);
      if (['create', 'update', 'patch'].includes(a.verb) && !sensitive) expect(d.level, `${item.where}: ${a.verb} ${a.resource}`).toBe('Request');
      if (sensitive) expect(d.level).toBe('Metadata');
    }
    expect(events).toBeGreaterThanOrEqual(45);
    expect(bad).toBeGreaterThanOrEqual(1); // fal_01_003.json is deliberately broken
  });
});
