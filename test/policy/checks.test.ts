import { describe, expect, it } from 'vitest';
import { CHECKS, checkPolicy, type CheckReport, type Finding } from '../../src/policy/checks.js';
import { parsePolicy } from '../../src/policy/load.js';
import { findShadowedRules } from '../../src/policy/shadow.js';
import type { RuleRequirement } from '../../src/policy/requirements.js';

const HEAD = 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: ["RequestReceived"]\n';

function check(body: string, requirements?: RuleRequirement[], head = HEAD): CheckReport {
  return checkPolicy(parsePolicy(head + body, 'p.yaml'), requirements ? { requirements } : {});
}
const of = (r: CheckReport, id: string): Finding[] => r.findings.filter((f) => f.id === id);

// Known noise dropped, then a catch-all: passes every CIS check without warnings.
const NOISE_DROPS = `
  - level: None
    verbs: ["get"]
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"]
  - level: None
    verbs: ["get", "list", "watch", "update", "patch"]
    resources: [{group: coordination.k8s.io, resources: [leases]}]
  - level: None
    verbs: ["get", "list", "watch"]
    resources: [{group: "", resources: [endpoints]}, {group: discovery.k8s.io, resources: [endpointslices]}]
  - level: None
    resources: [{group: "", resources: [events]}, {group: events.k8s.io, resources: [events]}]
`;
const GOOD = `rules:\n  - level: Metadata\n    resources: [{group: "", resources: [secrets, configmaps, serviceaccounts/token]}, {group: authentication.k8s.io, resources: [tokenreviews]}]\n${NOISE_DROPS}  - level: Request\n`;

describe('a good policy', () => {
  it('has no finding at all', () => {
    const r = check(GOOD);
    expect(r.findings).toEqual([]);
    expect(r.passed).toContain('cis-3.2.2-catch-all');
    expect(r.skipped.map((s) => s.id)).toEqual(['detection-blind-spot']);
  });
});

describe('invalid-policy', () => {
  it('one finding per validation error, with path, rule and line', () => {
    const r = check('rules:\n  - verbs: [get]\n  - level: Metadata\n    nonResourceURLs: ["logs"]\n');
    const f = of(r, 'invalid-policy');
    expect(f.map((x) => [x.path, x.rule, x.line])).toEqual([
      ['rules[0].level', 0, 5],
      ['rules[1].nonResourceURLs[0]', 1, 7],
    ]);
    expect(f.every((x) => x.severity === 'error')).toBe(true);
    // a policy the apiserver refuses is no policy: CIS 3.2.1 fails too
    expect(of(r, 'cis-3.2.1')).toHaveLength(1);
  });
  it('decode errors (wrong type, version) are invalid-policy and stop the other checks', () => {
    const r = checkPolicy(parsePolicy('apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: Metadata}]\n'), {});
    expect(of(r, 'invalid-policy')[0]!.path).toBe('apiVersion');
    expect(r.skipped.map((s) => s.id)).toContain('cis-3.2.2-catch-all');
  });
});

describe('unknown-field', () => {
  it('reports the mis-indented verbs that silently widen a rule', () => {
    const r = check(
      `rules:\n  - level: None\n    resources:\n      - group: coordination.k8s.io\n        resources: [leases]\n        verbs: [get]\n  - level: Metadata\n`,
    );
    const f = of(r, 'unknown-field');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'error', path: 'rules[0].resources[0].verbs', rule: 0, line: 9 });
  });
});

describe('cis-3.2.1', () => {
  it('fails when every rule is None', () => {
    expect(of(check('rules:\n  - level: None\n'), 'cis-3.2.1')).toHaveLength(1);
  });
  it('fails when the only logging rule omits every stage', () => {
    expect(of(check('rules:\n  - level: Metadata\n    omitStages: [ResponseStarted, ResponseComplete, Panic]\n'), 'cis-3.2.1')).toHaveLength(1);
  });
  it('passes with one logging rule', () => {
    expect(check('rules:\n  - level: Metadata\n').passed).toContain('cis-3.2.1');
  });
});

describe('cis-3.2.2-secrets-metadata-only', () => {
  it('fails when secrets are logged with bodies (the common guide mistake), naming the rule', () => {
    const r = check(`rules:\n  - level: RequestResponse\n    resources: [{group: "", resources: [secrets]}]\n  - level: Metadata\n`);
    const f = of(r, 'cis-3.2.2-secrets-metadata-only');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ rule: 0, severity: 'error', line: 5 });
    expect(f[0]!.message).toMatch(/secrets .* at RequestResponse/);
  });
  it('fails when only one user or one named object gets bodies', () => {
    const errors = (body: string) => of(check(body), 'cis-3.2.2-secrets-metadata-only').filter((f) => f.severity === 'error');
    expect(errors(`rules:\n  - level: Request\n    users: [admin]\n  - level: Metadata\n`)).toHaveLength(1);
    expect(
      errors(`rules:\n  - level: Request\n    resources: [{group: "", resources: [configmaps], resourceNames: [app-config]}]\n  - level: Metadata\n`),
    ).toHaveLength(1);
  });
  it('a level above Metadata that writes no value (reads and deletes at Request, TokenRequest at Request) is a note', () => {
    const f = of(
      check(
        `rules:\n  - level: Request\n    verbs: [get, list, watch, delete, deletecollection]\n  - level: Request\n    resources: [{group: "", resources: [serviceaccounts/token]}]\n  - level: Metadata\n`,
      ),
      'cis-3.2.2-secrets-metadata-only',
    );
    expect(f.map((x) => [x.severity, x.rule])).toEqual([
      ['note', 0],
      ['note', 1],
    ]);
    expect(f[0]!.message).toMatch(/no secret value is written/);
    // a write at Request carries the value in its body
    const w = of(check(`rules:\n  - level: Request\n    verbs: [patch]\n  - level: Metadata\n`), 'cis-3.2.2-secrets-metadata-only');
    expect(w.map((x) => x.severity)).toEqual(['error']);
    expect(w[0]!.message).toMatch(/secrets \(patch\); configmaps \(patch\) at Request/);
  });
  it('says in which namespaces the problem is', () => {
    const f = of(
      check(`rules:\n  - level: RequestResponse\n    namespaces: [kube-system]\n    resources: [{group: "", resources: [configmaps]}]\n  - level: Metadata\n`),
      'cis-3.2.2-secrets-metadata-only',
    );
    expect(f[0]!.message).toMatch(/configmaps \([a-z, ]+\) in namespace kube-system at RequestResponse/);
  });
  it('fails when token reviews fall under a body-level rule for their group', () => {
    const f = of(
      check(`rules:\n  - level: Metadata\n    resources: [{group: "", resources: [secrets, configmaps]}]\n  - level: RequestResponse\n`),
      'cis-3.2.2-secrets-metadata-only',
    );
    expect(f.map((x) => x.rule)).toEqual([1]);
    expect(f[0]!.message).toMatch(/tokenreviews/);
  });
  it('fails when secrets are not logged at all', () => {
    const f = of(
      check(`rules:\n  - level: None\n    resources: [{group: "", resources: [secrets]}]\n  - level: Metadata\n`),
      'cis-3.2.2-secrets-metadata-only',
    );
    expect(f).toHaveLength(1);
    expect(f[0]!.message).toMatch(/not logged: rule 0 drops them/);
  });
  it('passes when secrets are at Metadata and a Request catch-all follows', () => {
    expect(check(GOOD).passed).toContain('cis-3.2.2-secrets-metadata-only');
  });
});

describe('cis-3.2.2-workload-changes', () => {
  it('fails when pod deletes are dropped', () => {
    const f = of(
      check(`rules:\n  - level: None\n    verbs: [delete]\n    resources: [{group: "", resources: [pods]}]\n  - level: Metadata\n`),
      'cis-3.2.2-workload-changes',
    );
    expect(f).toHaveLength(1);
    expect(f[0]!.rule).toBe(0);
  });
  it('fails when deployments in kube-system are dropped', () => {
    const f = of(
      check(`rules:\n  - level: None\n    namespaces: [kube-system]\n    resources: [{group: apps}]\n  - level: Metadata\n`),
      'cis-3.2.2-workload-changes',
    );
    expect(f).toHaveLength(1);
    expect(f[0]!.examples!.join()).toMatch(/kube-system/);
  });
  it('fails when nothing matches pod changes', () => {
    const f = of(check(`rules:\n  - level: Metadata\n    verbs: [get]\n`), 'cis-3.2.2-workload-changes');
    expect(f[0]!.rule).toBeNull();
  });
});

describe('cis-3.2.2-exec-proxy', () => {
  it('fails when exec is dropped', () => {
    const f = of(check(`rules:\n  - level: None\n    resources: [{group: "", resources: [pods/exec]}]\n  - level: Metadata\n`), 'cis-3.2.2-exec-proxy');
    expect(f).toHaveLength(1);
    expect(f[0]!.message).toMatch(/pods\/exec/);
  });
  it('fails when every proxy subresource is dropped with */proxy', () => {
    const f = of(check(`rules:\n  - level: None\n    resources: [{group: "", resources: ["*/proxy"]}]\n  - level: Metadata\n`), 'cis-3.2.2-exec-proxy');
    expect(f[0]!.message).toMatch(/pods\/proxy/);
    expect(f[0]!.message).toMatch(/services\/proxy/);
  });
  it('fails when the streaming stages are all omitted', () => {
    const f = of(
      check(
        `rules:\n  - level: Metadata\n    resources: [{group: "", resources: [pods/exec]}]\n    omitStages: [ResponseStarted, ResponseComplete]\n  - level: Metadata\n`,
      ),
      'cis-3.2.2-exec-proxy',
    );
    expect(f[0]!.message).toMatch(/omits every stage/);
  });
});

describe('cis-3.2.2-catch-all', () => {
  it('fails without a catch-all', () => {
    const f = of(check(`rules:\n  - level: Request\n    resources: [{group: "", resources: [pods]}]\n`), 'cis-3.2.2-catch-all');
    expect(f).toHaveLength(1);
    expect(f[0]!.rule).toBeNull();
  });
  it('fails when reads are dropped for everyone', () => {
    const f = of(check(`rules:\n  - level: None\n    verbs: [get, list, watch]\n  - level: Metadata\n`), 'cis-3.2.2-catch-all');
    expect(f).toHaveLength(1);
    expect(f[0]!.rule).toBe(0);
  });
  it('tolerates dropping known noise (leases, endpoints reads, events, health checks)', () => {
    expect(check(GOOD).passed).toContain('cis-3.2.2-catch-all');
  });
});

const podPrivileged: RuleRequirement = {
  rule: 'pod-privileged',
  title: 'Privileged container',
  verbs: ['create', 'update', 'patch'],
  resources: [
    { group: '', resource: 'pods' },
    { group: 'apps', resource: 'deployments' },
  ],
  level: 'Request',
  stages: ['ResponseComplete'],
};
const podExec: RuleRequirement = {
  rule: 'pod-exec',
  title: 'Exec into a pod',
  verbs: ['create', 'get'],
  resources: [
    { group: '', resource: 'pods', subresource: 'exec' },
    { group: '', resource: 'pods', subresource: 'attach' },
  ],
  level: 'Metadata',
  stages: ['ResponseStarted', 'ResponseComplete'],
};
const configmapCreds: RuleRequirement = {
  rule: 'configmap-with-credentials',
  title: 'ConfigMap with credentials',
  verbs: ['create', 'update'],
  resources: [{ group: '', resource: 'configmaps' }],
  level: 'Request',
  stages: ['ResponseComplete'],
};

describe('detection-blind-spot', () => {
  it('names each detection a Metadata-only policy leaves blind', () => {
    const r = check(`rules:\n  - level: Metadata\n`, [podPrivileged, podExec]);
    const f = of(r, 'detection-blind-spot');
    expect(f.map((x) => x.detection)).toEqual(['pod-privileged']);
    expect(f[0]!.severity).toBe('warning');
    expect(f[0]!.message).toMatch(/logged at Metadata/);
    expect(f[0]!.rule).toBe(0);
  });
  it('names a detection blind because its stages are omitted', () => {
    const r = check(
      `rules:\n  - level: Metadata\n    resources: [{group: "", resources: ["pods/exec", "pods/attach"]}]\n    omitStages: [ResponseStarted, ResponseComplete]\n  - level: Request\n`,
      [podExec],
    );
    expect(of(r, 'detection-blind-spot')[0]!.message).toMatch(/without the ResponseStarted or ResponseComplete stage/);
  });
  it('a partial blind spot (one namespace) is reported with its share', () => {
    const r = check(`rules:\n  - level: Metadata\n    namespaces: [kube-system]\n  - level: Request\n`, [podPrivileged]);
    expect(of(r, 'detection-blind-spot')[0]!.message).toMatch(/blind for \d+ of \d+ probed requests/);
  });
  it('passes when the policy gives every detection its level', () => {
    const r = check(GOOD, [podPrivileged, podExec]);
    expect(r.passed).toContain('detection-blind-spot');
  });
  it('explains the conflict when a detection needs what CIS 3.2.2 forbids', () => {
    const f = of(check(GOOD, [configmapCreds]), 'detection-blind-spot');
    expect(f).toHaveLength(1);
    expect(f[0]!.message).toMatch(/CIS 3.2.2/);
  });
});

describe('shadowed-rule', () => {
  const shadowed = (body: string) => findShadowedRules(parsePolicy(HEAD + body).policy!).map((s) => s.rule);
  it('a rule after a catch-all', () => {
    const r = check(`rules:\n  - level: Metadata\n  - level: None\n    users: [system:kube-proxy]\n`);
    expect(of(r, 'shadowed-rule').map((f) => [f.rule, f.severity])).toEqual([[1, 'warning']]);
  });
  it('a rule covered by two earlier ones together', () => {
    expect(shadowed(`rules:\n  - level: None\n    verbs: [get]\n  - level: None\n    verbs: [list]\n  - level: Metadata\n    verbs: [get, list]\n`)).toEqual([
      2,
    ]);
  });
  it('pods/* takes pods; */log takes pods/log; a prefix takes a longer path', () => {
    expect(
      shadowed(
        `rules:\n  - level: None\n    resources: [{group: "", resources: ["pods/*"]}]\n  - level: Metadata\n    resources: [{group: "", resources: [pods]}]\n`,
      ),
    ).toEqual([1]);
    expect(
      shadowed(
        `rules:\n  - level: None\n    resources: [{group: "", resources: ["*/log"]}]\n  - level: Metadata\n    resources: [{group: "", resources: [pods/log]}]\n`,
      ),
    ).toEqual([1]);
    expect(shadowed(`rules:\n  - level: None\n    nonResourceURLs: ["/healthz*"]\n  - level: Metadata\n    nonResourceURLs: ["/healthz/etcd"]\n`)).toEqual([1]);
  });
  it('is not fooled by narrower earlier rules', () => {
    expect(shadowed(`rules:\n  - level: None\n    nonResourceURLs: ["/healthz/etcd"]\n  - level: Metadata\n    nonResourceURLs: ["/healthz*"]\n`)).toEqual([]);
    expect(
      shadowed(
        `rules:\n  - level: None\n    resources: [{group: "", resources: [pods]}]\n  - level: Metadata\n    resources: [{group: "", resources: ["pods/*"]}]\n`,
      ),
    ).toEqual([]);
    expect(shadowed(`rules:\n  - level: None\n    users: [a]\n    verbs: [get]\n  - level: Metadata\n    users: [a]\n    verbs: [get, list]\n`)).toEqual([]);
    expect(shadowed(`rules:\n  - level: None\n    userGroups: [system:nodes]\n  - level: Metadata\n    users: [system:node:n1]\n`)).toEqual([]);
    expect(shadowed(`rules:\n  - level: None\n    namespaces: [a]\n  - level: Metadata\n    resources: [{group: "", resources: [pods]}]\n`)).toEqual([]);
    expect(
      shadowed(
        `rules:\n  - level: None\n    resources: [{group: "", resources: [configmaps], resourceNames: [leader]}]\n  - level: Metadata\n    resources: [{group: "", resources: [configmaps]}]\n`,
      ),
    ).toEqual([]);
  });
  it('a group-wide rule takes a rule on one resource of the group; cluster scope "" is a namespace like any', () => {
    expect(
      shadowed(
        `rules:\n  - level: None\n    resources: [{group: apps}]\n  - level: Metadata\n    verbs: [create]\n    resources: [{group: apps, resources: [deployments]}]\n`,
      ),
    ).toEqual([1]);
    expect(shadowed(`rules:\n  - level: None\n    namespaces: [""]\n  - level: Metadata\n    namespaces: [""]\n    verbs: [get]\n`)).toEqual([1]);
  });
  it('a rule that needs a user is not shadowed by one that needs a user of another name', () => {
    expect(shadowed(`rules:\n  - level: None\n    users: [a]\n  - level: Metadata\n    users: [b]\n`)).toEqual([]);
  });
});

describe('omit-request-received', () => {
  it('a note when RequestReceived is written', () => {
    const r = check('rules:\n  - level: None\n    users: [x]\n  - level: Metadata\n', undefined, 'apiVersion: audit.k8s.io/v1\nkind: Policy\n');
    const f = of(r, 'omit-request-received');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'note', rule: 1 });
  });
  it('nothing when every logging rule omits it', () => {
    const r = check('rules:\n  - level: Metadata\n    omitStages: [RequestReceived]\n', undefined, 'apiVersion: audit.k8s.io/v1\nkind: Policy\n');
    expect(of(r, 'omit-request-received')).toEqual([]);
  });
});

describe('noisy-reads', () => {
  it('warns per noise class a catch-all logs', () => {
    const f = of(check('rules:\n  - level: Metadata\n'), 'noisy-reads');
    expect(f.map((x) => x.severity)).toEqual(['warning', 'warning', 'warning', 'warning']);
    expect(f.map((x) => x.message).join('\n')).toMatch(/leases[\s\S]*endpoints[\s\S]*Event[\s\S]*health/);
  });
  it('a kube-proxy-only drop is not enough for endpoint watches', () => {
    const f = of(
      check(
        `rules:\n  - level: None\n    users: [system:kube-proxy]\n    verbs: [watch]\n    resources: [{group: "", resources: [endpoints]}]\n  - level: Metadata\n`,
      ),
      'noisy-reads',
    );
    expect(f.some((x) => /endpoints/.test(x.message))).toBe(true);
  });
});

describe('every check accounted for', () => {
  // Each check reports under its own id exactly once: passed, skipped, or with findings (never two of these, never an
  // id that is not a check), whatever the policy.
  it.each([
    ['a good policy', GOOD],
    ['a policy that logs nothing', 'rules:\n  - level: None\n'],
    ['an invalid policy', 'rules:\n  - level: Loud\n'],
    ['a file kube-apiserver cannot decode', 'rules: 7\n'],
  ])('%s', (_name, body) => {
    const r = check(body);
    const withFindings = [...new Set(r.findings.map((f) => f.id))];
    const all = [...r.passed, ...r.skipped.map((s) => s.id), ...withFindings];
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort()).toEqual(CHECKS.map((c) => c.id).sort());
  });
});

describe('workload-bodies (the posture checks need pod specs)', () => {
  const policyOf = (yaml: string) => parsePolicy(yaml, 'p.yaml');
  it('warns where pod and workload writes are logged below Request, only in the namespaces asked for', () => {
    const p = policyOf(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    resources: [{group: "", resources: [pods]}, {group: apps, resources: [deployments, daemonsets, statefulsets, replicasets]}, {group: batch, resources: [jobs, cronjobs]}]
    namespaces: [shop]
  - level: Metadata
`);
    const everywhere = checkPolicy(p).findings.filter((f) => f.id === 'workload-bodies');
    expect(everywhere).toHaveLength(1);
    expect(everywhere[0]!.severity).toBe('warning');
    expect(everywhere[0]!.rule).toBe(1);
    expect(everywhere[0]!.message).toMatch(/pods \(create, update\).*are logged below Request by rule 1/);
    expect(checkPolicy(p, { postureNamespaces: ['shop'] }).passed).toContain('workload-bodies');
    expect(checkPolicy(p, { postureNamespaces: ['shop', 'batch'] }).findings.find((f) => f.id === 'workload-bodies')!.message).toMatch(/in namespace batch/);
  });
});
