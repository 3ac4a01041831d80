import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/detect/alert.js';
import type { DetectionEngine } from '../../src/detect/engine.js';
import { createDetector } from '../../src/detect/index.js';
import { parseRuleFile, type RuleSet } from '../../src/detect/rule.js';
import { ev } from './helpers.js';

// Severity by blast radius, and which rule speaks: cluster-wide versus one namespace, system versus workload
// namespaces, an actor unusual for the namespace.
let engine: DetectionEngine;
async function alerts(partial: Record<string, unknown>): Promise<Alert[]> {
  engine ??= await createDetector();
  return engine.detect([ev(partial)]);
}
async function one(partial: Record<string, unknown>, rule: string): Promise<string | undefined> {
  return (await alerts(partial)).find((a) => a.rule === rule)?.severity;
}

const crb = (kind: 'ClusterRoleBinding' | 'RoleBinding', ns?: string) => ({
  verb: 'create',
  objectRef: {
    resource: kind === 'ClusterRoleBinding' ? 'clusterrolebindings' : 'rolebindings',
    apiGroup: 'rbac.authorization.k8s.io',
    ...(ns ? { namespace: ns } : {}),
    name: 'b',
  },
  requestObject: { kind, roleRef: { kind: 'ClusterRole', name: 'cluster-admin' }, subjects: [{ kind: 'User', name: 'eve' }] },
});

describe('binding kinds', () => {
  it('a ClusterRoleBinding to cluster-admin is critical and only cluster-admin-binding', async () => {
    const a = await alerts(crb('ClusterRoleBinding'));
    expect(a.filter((x) => x.rule.startsWith('cluster-admin')).map((x) => [x.rule, x.severity])).toEqual([['cluster-admin-binding', 'critical']]);
  });
  it('a RoleBinding to the cluster-admin ClusterRole is namespaced: medium in a workload namespace, critical in kube-system', async () => {
    const a = await alerts(crb('RoleBinding', 'web'));
    expect(a.filter((x) => x.rule.startsWith('cluster-admin')).map((x) => [x.rule, x.severity])).toEqual([['cluster-admin-namespace-binding', 'medium']]);
    expect(await one(crb('RoleBinding', 'kube-system'), 'cluster-admin-namespace-binding')).toBe('critical');
  });
});

describe('secret lists by scope', () => {
  const list = (ns?: string) => ({ verb: 'list', objectRef: { resource: 'secrets', ...(ns ? { namespace: ns } : {}) } });
  it('all namespaces: critical; kube-system: high; one workload namespace: medium', async () => {
    expect(await one(list(), 'secret-list')).toBe('critical');
    expect(await one(list('kube-system'), 'secret-list')).toBe('high');
    expect(await one(list('payments'), 'secret-list')).toBe('medium');
  });
});

describe('service-account token theft: severity by the actor', () => {
  const exec = (user: unknown, ns: string) => ({
    verb: 'create',
    code: 101,
    user,
    objectRef: { resource: 'pods', subresource: 'exec', namespace: ns, name: 'p' },
    query: 'command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken',
  });
  const kubeSystemSA = { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] };
  it('a person in a workload namespace: high; in kube-system: critical', async () => {
    expect(await one(exec('alice@example.com', 'web'), 'serviceaccount-token-theft')).toBe('high');
    expect(await one(exec('alice@example.com', 'kube-system'), 'serviceaccount-token-theft')).toBe('critical');
  });
  it('a system identity in a workload namespace: critical; in its own: high', async () => {
    expect(await one(exec(kubeSystemSA, 'payments'), 'serviceaccount-token-theft')).toBe('critical');
    expect(await one(exec(kubeSystemSA, 'kube-system'), 'serviceaccount-token-theft')).toBe('high');
  });
  it('is not reported twice: pod-exec-suspicious-command leaves tokens to it', async () => {
    const rules = (await alerts(exec('alice@example.com', 'web'))).map((a) => a.rule).sort();
    expect(rules).toEqual(['pod-exec', 'serviceaccount-token-theft']);
  });
});

describe('token requests', () => {
  it('high for an account in a system namespace', async () => {
    expect(
      await one(
        { verb: 'create', objectRef: { resource: 'serviceaccounts', subresource: 'token', namespace: 'kube-system', name: 'x' } },
        'serviceaccount-token-request',
      ),
    ).toBe('high');
  });
});

describe('shipped exceptions in rule files', () => {
  const parse = (yaml: string) => {
    const set: RuleSet = { rules: [], lists: new Map(), issues: [] };
    parseRuleFile(yaml, 'x.yaml', set);
    return set;
  };
  const rule = (ex: string) => `rules:\n  - id: r\n    title: t\n    severity: low\n    match: {verbs: [create], resources: [pods]}\n    exceptions:\n${ex}`;
  it('refuses one that names no user or group (a namespace, name or image alone never suppresses)', () => {
    const set = parse(rule('      - {name: by-ns, reason: x, namespaces: [kube-system], images: ["registry.k8s.io/*"]}\n'));
    expect(set.issues.map((i) => i.message)).toEqual([expect.stringMatching(/must name users or groups/)]);
  });
  it('refuses one without a reason, or with an unknown key such as userAgents', () => {
    expect(parse(rule('      - {name: a, users: [x]}\n')).issues[0]!.message).toMatch(/reason is required/);
    expect(parse(rule('      - {name: a, reason: r, users: [x], userAgents: [kubectl*]}\n')).issues[0]!.message).toMatch(/unknown key "userAgents"/);
  });
  it('the system-image exception holds only with the controller identity', async () => {
    const pod = {
      kind: 'Pod',
      metadata: { ownerReferences: [{ kind: 'DaemonSet', name: 'kube-proxy', controller: true }] },
      spec: { hostNetwork: true, containers: [{ name: 'kube-proxy', image: 'registry.k8s.io/kube-proxy:v1.30.4', securityContext: { privileged: true } }] },
    };
    const dsc = {
      username: 'system:serviceaccount:kube-system:daemon-set-controller',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system'],
    };
    expect(
      (await alerts({ verb: 'create', user: dsc, objectRef: { resource: 'pods', namespace: 'kube-system' }, requestObject: pod })).map((a) => a.rule),
    ).toEqual([]);
    expect(
      (await alerts({ verb: 'create', user: dsc, objectRef: { resource: 'pods', namespace: 'web' }, requestObject: pod })).map((a) => a.rule).sort(),
    ).toEqual(['pod-host-network', 'pod-privileged']);
    // A person's pod is also judged by the info-level posture rules, which spare only the controllers' copies.
    const posture = ['posture-default-serviceaccount', 'posture-image-digest', 'posture-run-as-non-root', 'posture-token-automount'];
    expect(
      (await alerts({ verb: 'create', user: 'mallory@example.com', objectRef: { resource: 'pods', namespace: 'kube-system' }, requestObject: pod }))
        .map((a) => a.rule)
        .sort(),
    ).toEqual(['pod-host-network', 'pod-in-system-namespace', 'pod-privileged', ...posture]);
    const other = structuredClone(pod);
    other.spec.containers.push({ name: 'x', image: 'docker.io/xmrig/xmrig', securityContext: { privileged: false } });
    expect(
      (await alerts({ verb: 'create', user: dsc, objectRef: { resource: 'pods', namespace: 'kube-system' }, requestObject: other })).map((a) => a.rule).sort(),
    ).toEqual(['pod-host-network', 'pod-in-system-namespace', 'pod-privileged']);
  });
});
