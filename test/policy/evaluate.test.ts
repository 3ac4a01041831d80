// Matching facts of kube-apiserver's audit policy checker (k8s.io/apiserver pkg/audit/policy, checker.go and its
// tests), restated as kaudit cases: which level a request gets from a list of rules.
import { describe, expect, it } from 'vitest';
import { attributesFromEvent, evaluatePolicy, pathMatches, ruleMatches } from '../../src/policy/evaluate.js';
import { emptyRule, requestAttributes, type Policy, type PolicyRule, type RequestAttributes } from '../../src/policy/types.js';
import type { AuditEvent, Stage } from '../../src/events/types.js';

const alice = { name: 'alice@example.org', groups: ['people', 'devs'] };

const requests: Record<string, RequestAttributes> = {
  podGet: requestAttributes({
    user: alice,
    verb: 'get',
    namespace: 'default',
    apiVersion: 'v1',
    resource: 'pods',
    name: 'web',
    resourceRequest: true,
    path: '/api/v1/namespaces/default/pods/web',
  }),
  clusterRoleGet: requestAttributes({
    user: alice,
    verb: 'get',
    apiGroup: 'rbac.authorization.k8s.io',
    apiVersion: 'v1',
    resource: 'clusterroles',
    name: 'edit',
    resourceRequest: true,
    path: '/apis/rbac.authorization.k8s.io/v1/clusterroles/edit',
  }),
  logsPath: requestAttributes({ user: alice, verb: 'get', resourceRequest: false, path: '/logs/kubelet.log' }),
  podLog: requestAttributes({
    user: alice,
    verb: 'get',
    namespace: 'default',
    apiVersion: 'v1',
    resource: 'pods',
    subresource: 'log',
    name: 'web',
    resourceRequest: true,
    path: '/api/v1/namespaces/default/pods/web/log',
  }),
  anonymousPodGet: requestAttributes({
    user: null,
    verb: 'get',
    namespace: 'default',
    apiVersion: 'v1',
    resource: 'pods',
    name: 'web',
    resourceRequest: true,
    path: '/api/v1/namespaces/default/pods/web',
  }),
  clusterRoleStatusUpdate: requestAttributes({
    user: alice,
    verb: 'update',
    apiGroup: 'rbac.authorization.k8s.io',
    apiVersion: 'v1',
    resource: 'clusterroles',
    subresource: 'status',
    name: 'r',
    resourceRequest: true,
    path: '/apis/rbac.authorization.k8s.io/v1/clusterroles/r/status',
  }),
};

const rule = (r: Partial<PolicyRule> & { level: string }): PolicyRule => ({ ...emptyRule(r.level), ...r });
const core = (resources: string[], resourceNames: string[] = []) => ({ group: '', resources, resourceNames });

const rules: Record<string, PolicyRule> = {
  all: rule({ level: 'Metadata' }),
  creates: rule({ level: 'Request', verbs: ['create'] }),
  alice: rule({ level: 'Metadata', users: ['alice@example.org'] }),
  people: rule({ level: 'Metadata', userGroups: ['people'] }),
  serviceAccounts: rule({ level: 'Request', userGroups: ['system:serviceaccounts'] }),
  podGets: rule({ level: 'RequestResponse', verbs: ['get'], resources: [core(['pods'])] }),
  podLogGets: rule({ level: 'Request', verbs: ['get'], resources: [core(['pods/log'])] }),
  anyResourceGets: rule({ level: 'Request', verbs: ['get'], resources: [core(['*'])] }),
  anyLogGets: rule({ level: 'Request', verbs: ['get'], resources: [core(['*/log'])] }),
  podSubresourceGets: rule({ level: 'Request', verbs: ['get'], resources: [core(['pods/*'])] }),
  clusterScopedRoleGets: rule({
    level: 'RequestResponse',
    verbs: ['get'],
    namespaces: [''],
    resources: [{ group: 'rbac.authorization.k8s.io', resources: ['clusterroles'], resourceNames: [] }],
  }),
  anyGroupStatusUpdates: rule({ level: 'RequestResponse', verbs: ['update'], resources: [{ group: '*', resources: ['*/status'], resourceNames: [] }] }),
  logPaths: rule({ level: 'RequestResponse', verbs: ['get'], nonResourceURLs: ['/logs*'] }),
  metricsPath: rule({ level: 'Request', verbs: ['get'], nonResourceURLs: ['/metrics'] }),
  editRole: rule({ level: 'Request', resources: [{ group: 'rbac.authorization.k8s.io', resources: ['clusterroles'], resourceNames: ['edit'] }] }),
  omitReceived: rule({ level: 'Request', omitStages: ['RequestReceived'] }),
  panicOnly: rule({ level: 'Request', omitStages: ['RequestReceived', 'ResponseStarted', 'ResponseComplete'] }),
};

function policyOf(names: string[], omitStages: Stage[] = []): Policy {
  return { rules: names.map((n) => rules[n]!), omitStages, omitManagedFields: false };
}

// [request, expected level, rules in order]
const cases: [string, string, string[]][] = [
  ['podGet', 'Metadata', ['all']],
  ['podGet', 'None', ['creates']],
  ['podGet', 'Metadata', ['alice']],
  ['podGet', 'Metadata', ['people']],
  ['podGet', 'None', ['serviceAccounts']],
  ['podGet', 'RequestResponse', ['podGets']],
  ['podGet', 'None', ['clusterScopedRoleGets']],
  ['podGet', 'None', ['logPaths']],
  ['podGet', 'None', ['metricsPath']],
  ['podGet', 'Metadata', ['metricsPath', 'serviceAccounts', 'all']],
  ['podGet', 'RequestResponse', ['metricsPath', 'podGets', 'all']],
  ['podGet', 'RequestResponse', ['podLogGets', 'podGets']],

  ['clusterRoleGet', 'Metadata', ['all']],
  ['clusterRoleGet', 'None', ['creates']],
  ['clusterRoleGet', 'Metadata', ['alice']],
  ['clusterRoleGet', 'Metadata', ['people']],
  ['clusterRoleGet', 'None', ['serviceAccounts']],
  ['clusterRoleGet', 'None', ['podGets']],
  ['clusterRoleGet', 'RequestResponse', ['clusterScopedRoleGets']],
  ['clusterRoleGet', 'Request', ['editRole', 'clusterScopedRoleGets']],
  ['clusterRoleGet', 'None', ['logPaths']],
  ['clusterRoleGet', 'None', ['metricsPath']],
  ['clusterRoleGet', 'Metadata', ['metricsPath', 'serviceAccounts', 'all']],
  ['clusterRoleGet', 'RequestResponse', ['metricsPath', 'clusterScopedRoleGets', 'all']],
  ['clusterRoleGet', 'None', ['podLogGets', 'podGets']],

  ['logsPath', 'Metadata', ['all']],
  ['logsPath', 'None', ['creates']],
  ['logsPath', 'Metadata', ['alice']],
  ['logsPath', 'Metadata', ['people']],
  ['logsPath', 'None', ['serviceAccounts']],
  ['logsPath', 'None', ['podGets']],
  ['logsPath', 'None', ['clusterScopedRoleGets']],
  ['logsPath', 'RequestResponse', ['logPaths']],
  ['logsPath', 'None', ['metricsPath']],
  ['logsPath', 'Metadata', ['metricsPath', 'serviceAccounts', 'all']],
  ['logsPath', 'RequestResponse', ['logPaths', 'clusterScopedRoleGets', 'all']],
  ['logsPath', 'None', ['podLogGets', 'podGets']],

  // A subresource request is matched by `pods/log`, `*`, `*/log` and `pods/*`, not by `pods`.
  ['podLog', 'Request', ['podLogGets', 'podGets']],
  ['podLog', 'Request', ['anyResourceGets']],
  ['podLog', 'Request', ['anyLogGets']],
  ['podLog', 'Request', ['podSubresourceGets']],
  ['podLog', 'None', ['podGets']],

  // No user: rules naming users or groups never match.
  ['anonymousPodGet', 'None', ['alice']],
  ['anonymousPodGet', 'Metadata', ['alice', 'all']],
  ['anonymousPodGet', 'None', ['people']],
  ['anonymousPodGet', 'Metadata', ['people', 'all']],

  // group "*" (Kubernetes 1.36+) with `*/status`.
  ['clusterRoleStatusUpdate', 'RequestResponse', ['anyGroupStatusUpdates']],
];

describe('evaluatePolicy: the apiserver checker cases', () => {
  for (const omit of [[], ['RequestReceived', 'ResponseStarted']] as Stage[][]) {
    for (const [req, level, names] of cases) {
      it(`${req} under [${names.join(', ')}] with policy omitStages [${omit.join(', ')}] -> ${level}`, () => {
        const d = evaluatePolicy(policyOf(names, omit), requests[req]!);
        expect(d.level).toBe(level);
        // Rules without their own omitStages, and the no-match default, carry exactly the policy's stages.
        expect([...d.omitStages].sort()).toEqual([...omit].sort());
      });
    }
  }

  it('reports the index of the first matching rule, null when none matched', () => {
    expect(evaluatePolicy(policyOf(['metricsPath', 'podGets', 'all']), requests.podGet!).rule).toBe(1);
    expect(evaluatePolicy(policyOf(['creates']), requests.podGet!).rule).toBeNull();
  });
});

describe('omitStages: the rule and the policy are united', () => {
  const both = (s: Stage[]) => [...s].sort();
  const cases2: [string, Stage[], Stage[], string, string[]][] = [
    ['podGet', [], ['RequestReceived'], 'Request', ['omitReceived', 'podGets', 'all']],
    ['podGet', [], ['RequestReceived', 'ResponseStarted', 'ResponseComplete'], 'Request', ['panicOnly', 'podGets', 'all']],
    ['clusterRoleGet', [], ['RequestReceived'], 'Request', ['omitReceived', 'podGets', 'all']],
    ['logsPath', [], ['RequestReceived', 'ResponseStarted', 'ResponseComplete'], 'Request', ['panicOnly', 'podGets', 'all']],
    ['podGet', ['RequestReceived', 'ResponseStarted'], ['RequestReceived', 'ResponseStarted'], 'Request', ['omitReceived', 'podGets', 'all']],
    ['podGet', ['RequestReceived', 'ResponseStarted'], ['RequestReceived', 'ResponseStarted', 'ResponseComplete'], 'Request', ['panicOnly', 'podGets', 'all']],
    ['logsPath', ['RequestReceived', 'ResponseStarted'], ['RequestReceived', 'ResponseStarted'], 'Metadata', ['all', 'omitReceived', 'podGets']],
  ];
  for (const [req, policyStages, want, level, names] of cases2) {
    it(`${req} with policy [${policyStages}] and rules [${names}]`, () => {
      const d = evaluatePolicy(policyOf(names, policyStages), requests[req]!);
      expect(d.level).toBe(level);
      expect(both(d.omitStages)).toEqual(both(want));
    });
  }

  it('lists each stage once', () => {
    const p: Policy = {
      rules: [rule({ level: 'Metadata', omitStages: ['RequestReceived', 'RequestReceived', 'Panic'] })],
      omitStages: ['RequestReceived', 'ResponseStarted'],
      omitManagedFields: false,
    };
    expect(both(evaluatePolicy(p, requests.podGet!).omitStages)).toEqual(['Panic', 'RequestReceived', 'ResponseStarted']);
  });
});

describe('omitManagedFields: a rule value overrides the policy default', () => {
  const req = requestAttributes({ verb: 'get' });
  const matching = (omf?: boolean): PolicyRule => ({
    ...rule({ level: 'RequestResponse', verbs: ['get'] }),
    ...(omf === undefined ? {} : { omitManagedFields: omf }),
  });
  it.each([
    [false, undefined, false],
    [true, undefined, true],
    [true, false, false],
    [false, true, true],
  ])('policy %s, rule %s -> %s', (policyDefault, ruleValue, want) => {
    const p: Policy = { rules: [matching(ruleValue)], omitStages: [], omitManagedFields: policyDefault };
    expect(evaluatePolicy(p, req).omitManagedFields).toBe(want);
  });
  it('no match hands back the policy omitStages as written, repeats included (rule lists are united)', () => {
    const p: Policy = { rules: [rule({ level: 'Metadata', verbs: ['list'] })], omitStages: ['Panic', 'Panic'], omitManagedFields: false };
    expect(evaluatePolicy(p, req).omitStages).toEqual(['Panic', 'Panic']);
    expect(evaluatePolicy(p, { ...req, verb: 'list' }).omitStages).toEqual(['Panic']);
  });
  it('no match carries the policy default', () => {
    const p: Policy = { rules: [rule({ level: 'Metadata', verbs: ['list'] })], omitStages: ['Panic'], omitManagedFields: true };
    expect(evaluatePolicy(p, req)).toEqual({ level: 'None', omitStages: ['Panic'], omitManagedFields: true, rule: null });
  });
});

describe('matching details that follow the code', () => {
  it('`pods/*` also matches the pods resource itself', () => {
    expect(ruleMatches(rules.podSubresourceGets!, requests.podGet!)).toBe(true);
  });
  it('`*/log` does not match a request without a subresource', () => {
    expect(ruleMatches(rules.anyLogGets!, requests.podGet!)).toBe(false);
  });
  it('namespaces [""] selects cluster-scoped requests only', () => {
    const r = rule({ level: 'Metadata', namespaces: [''] });
    expect(ruleMatches(r, requests.clusterRoleGet!)).toBe(true);
    expect(ruleMatches(r, requests.podGet!)).toBe(false);
    // ... and never a non-resource request.
    expect(ruleMatches(r, requests.logsPath!)).toBe(false);
  });
  it('a group entry without resources matches every resource of the group', () => {
    const r = rule({ level: 'Metadata', resources: [{ group: '', resources: [], resourceNames: [] }] });
    expect(ruleMatches(r, requests.podLog!)).toBe(true);
    expect(ruleMatches(r, requests.clusterRoleGet!)).toBe(false);
  });
  it('a group entry is exact: the core group "" is not "any group"', () => {
    const r = rule({ level: 'Metadata', resources: [core(['*'])] });
    expect(ruleMatches(r, requests.clusterRoleGet!)).toBe(false);
  });
  it('resourceNames restrict to named requests; a request without a name does not match', () => {
    const r = rules.editRole!;
    expect(ruleMatches(r, requests.clusterRoleGet!)).toBe(true);
    expect(ruleMatches(r, { ...requests.clusterRoleGet!, name: 'admin' })).toBe(false);
    expect(ruleMatches(r, { ...requests.clusterRoleGet!, name: '', verb: 'list' })).toBe(false);
  });
  it('userGroups match when any one group of the user is listed', () => {
    const r = rule({ level: 'Metadata', userGroups: ['ops', 'devs'] });
    expect(ruleMatches(r, requests.podGet!)).toBe(true);
    expect(ruleMatches(r, { ...requests.podGet!, user: { name: 'x', groups: [] } })).toBe(false);
  });
  it('users and userGroups must both hold when both are given', () => {
    const r = rule({ level: 'Metadata', users: ['bob'], userGroups: ['people'] });
    expect(ruleMatches(r, requests.podGet!)).toBe(false);
  });
  it('verbs are compared exactly (no wildcard)', () => {
    expect(ruleMatches(rule({ level: 'Metadata', verbs: ['*'] }), requests.podGet!)).toBe(false);
    expect(ruleMatches(rule({ level: 'Metadata', verbs: ['GET'] }), requests.podGet!)).toBe(false);
  });
  it('nonResourceURLs: "*", exact and trailing-* prefix', () => {
    expect(pathMatches('/healthz/etcd', '/healthz*')).toBe(true);
    expect(pathMatches('/healthz', '/healthz*')).toBe(true);
    expect(pathMatches('/healthzfoo', '/healthz*')).toBe(true);
    expect(pathMatches('/health', '/healthz*')).toBe(false);
    expect(pathMatches('/metrics/x', '/metrics')).toBe(false);
    expect(pathMatches('/anything', '*')).toBe(true);
  });
  it('a nonResourceURLs rule never matches a resource request, even with a matching path', () => {
    const r = rule({ level: 'Metadata', nonResourceURLs: ['/api*'] });
    expect(ruleMatches(r, requests.podGet!)).toBe(false);
  });
  it('an unknown level (only possible in a policy the apiserver refuses) counts as None', () => {
    const p: Policy = { rules: [rule({ level: 'Everything' })], omitStages: [], omitManagedFields: false };
    expect(evaluatePolicy(p, requests.podGet!).level).toBe('None');
  });
});

describe('attributesFromEvent', () => {
  const base: AuditEvent = {
    level: 'RequestResponse',
    auditID: 'a1',
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/default/pods?fieldManager=kubectl',
    verb: 'create',
    user: { username: 'alice', groups: ['system:authenticated'] },
    impersonatedUser: { username: 'bob', groups: ['x'] },
    objectRef: { resource: 'pods', namespace: 'default', name: 'web', apiVersion: 'v1' },
    requestReceivedTimestamp: '2024-01-01T00:00:00.000000Z',
  };
  it('uses the pre-impersonation user, drops the query string and the name a create got from its body', () => {
    expect(attributesFromEvent(base)).toEqual({
      user: { name: 'alice', groups: ['system:authenticated'] },
      verb: 'create',
      resourceRequest: true,
      apiGroup: '',
      apiVersion: 'v1',
      namespace: 'default',
      resource: 'pods',
      subresource: '',
      name: '',
      path: '/api/v1/namespaces/default/pods',
    });
  });
  it('keeps the name of a create on a subresource (exec) and of other verbs', () => {
    const exec = attributesFromEvent({ ...base, objectRef: { ...base.objectRef, subresource: 'exec' } });
    expect(exec.name).toBe('web');
    expect(attributesFromEvent({ ...base, verb: 'get' }).name).toBe('web');
  });
  it('a failed authentication has no user; a request without objectRef is a non-resource request', () => {
    const a = attributesFromEvent({ ...base, user: {}, objectRef: undefined, verb: 'get', requestURI: '/healthz' });
    expect(a.user).toBeNull();
    expect(a.resourceRequest).toBe(false);
    expect(a.path).toBe('/healthz');
  });
});
