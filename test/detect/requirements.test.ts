import { describe, expect, it } from 'vitest';
import { DetectionEngine } from '../../src/detect/engine.js';
import { loadRuleRequirements } from '../../src/detect/index.js';
import { engineRequirements } from '../../src/detect/requirements.js';
import { loadDetectionRequirements, parseRequirements } from '../../src/policy/requirements.js';
import { ruleSet } from './helpers.js';

describe('rule requirements for the audit-policy checks', { timeout: 30_000 }, () => {
  it('derive requests, stages and the level each rule needs from what it reads', async () => {
    const reqs = await loadRuleRequirements();
    const by = (id: string) => reqs.filter((r) => r.rule === id);
    expect(by('pod-exec')).toEqual([
      {
        rule: 'pod-exec',
        title: 'Exec or attach into a pod',
        verbs: ['create', 'get'],
        resources: [
          { group: '', resource: 'pods', subresource: 'exec' },
          { group: '', resource: 'pods', subresource: 'attach' },
        ],
        level: 'Metadata',
        stages: ['ResponseStarted', 'ResponseComplete'],
      },
    ]);
    // Reads the pod spec (request body) through a helper.
    expect(by('pod-privileged')[0]).toMatchObject({ level: 'Request', verbs: ['create', 'update', 'patch'], stages: ['ResponseComplete'] });
    expect(by('pod-privileged')[0]!.resources).toContainEqual({ group: 'apps', resource: 'deployments' });
    expect(by('pod-privileged')[0]!.resources).toContainEqual({ group: '', resource: 'pods', subresource: 'ephemeralcontainers' });
    expect(by('configmap-with-credentials')[0]!.level).toBe('Request');
    // An explicit level in the rule file wins (secret-created reads the body only as a refinement).
    expect(by('secret-created')[0]!.level).toBe('Metadata');
    expect(by('cluster-admin-binding')[0]!.level).toBe('Request');
    // Namespaces from a list reference, and any-request rules.
    expect(by('pod-in-system-namespace')[0]!.namespaces).toEqual(['kube-system', 'kube-public', 'kube-node-lease']);
    expect(by('forbidden-burst')[0]).toMatchObject({ verbs: [], resources: [], level: 'Metadata' });
    // A sequence needs each of its steps.
    expect(by('workload-after-rbac-change')).toHaveLength(2);
    // Rules that are off (an empty allowlist) need nothing.
    expect(by('disallowed-image')).toEqual([]);
    // The policy side reads them back as they are.
    expect(parseRequirements(reqs, 'test')).toEqual(reqs);
  });

  it('follow the tuning config', async () => {
    const reqs = await loadRuleRequirements({ config: { disabled: ['pod-exec'], lists: { 'allowed-images': ['registry.example.com/*'] } } });
    expect(reqs.some((r) => r.rule === 'pod-exec')).toBe(false);
    expect(reqs.some((r) => r.rule === 'disallowed-image')).toBe(true);
  });

  it('need RequestResponse for a rule that reads the response body', () => {
    const set = ruleSet(`
rules:
  - id: reads-response
    title: t
    severity: low
    match: {verbs: [get], resources: [secrets], namespaces: [web, 'team-*']}
    condition: "responseObject.type = 'Opaque'"
`);
    const engine = new DetectionEngine({ rules: set.rules, lists: set.lists });
    const [r] = engineRequirements(engine, set.rules);
    expect(r).toMatchObject({ level: 'RequestResponse', resources: [{ group: '', resource: 'secrets' }] });
    // A namespace pattern could match any namespace: no namespace restriction.
    expect(r!.namespaces).toBeUndefined();
  });

  it('are what the policy module loads through its lazy import', async () => {
    const reqs = await loadDetectionRequirements();
    expect(reqs.length).toBeGreaterThan(50);
  });
});
