// Validation facts of kube-apiserver (k8s.io/apiserver pkg/apis/audit/validation and the policy reader), restated.
import { describe, expect, it } from 'vitest';
import { validatePolicy } from '../../src/policy/validate.js';
import { parsePolicy } from '../../src/policy/load.js';
import { emptyRule, type Policy, type PolicyRule } from '../../src/policy/types.js';

const rule = (r: Partial<PolicyRule>): PolicyRule => ({ ...emptyRule(), ...r });
const policy = (rules: PolicyRule[], omitStages: string[] = []): Policy => ({ rules, omitStages, omitManagedFields: false });

const goodRules: PolicyRule[] = [
  rule({ level: 'Metadata' }),
  rule({ level: 'None', userGroups: ['system:serviceaccounts', 'system:nodes'] }),
  rule({
    level: 'RequestResponse',
    verbs: ['get'],
    namespaces: ['kube-system'],
    resources: [{ group: 'rbac.authorization.k8s.io', resources: ['roles', 'rolebindings'], resourceNames: [] }],
  }),
  rule({ level: 'Metadata', userGroups: ['developers'], nonResourceURLs: ['/logs*', '/healthz*', '/metrics', '*'] }),
  rule({ level: 'Metadata', omitStages: ['RequestReceived'] }),
  rule({ level: 'Metadata', resources: [{ group: '*', resources: ['*/status'], resourceNames: [] }] }),
];

describe('validatePolicy accepts', () => {
  goodRules.forEach((r, i) => {
    it(`good rule ${i} alone`, () => expect(validatePolicy(policy([r]))).toEqual([]));
  });
  it('all good rules together, with a policy-wide omitStages', () => {
    expect(validatePolicy(policy(goodRules, ['RequestReceived']))).toEqual([]);
  });
});

describe('validatePolicy rejects, naming the field', () => {
  const bad: [string, PolicyRule, string[]][] = [
    ['an empty rule (no level)', rule({}), ['rules[0].level']],
    [
      'a rule without level',
      rule({ verbs: ['get'], namespaces: ['kube-system'], resources: [{ group: '', resources: ['secrets'], resourceNames: [] }] }),
      ['rules[0].level'],
    ],
    ['an unknown level', rule({ level: 'FooBar' }), ['rules[0].level']],
    ['a wrongly cased level', rule({ level: 'metadata' }), ['rules[0].level']],
    ['nonResourceURLs with namespaces', rule({ level: 'Metadata', namespaces: ['default'], nonResourceURLs: ['/logs*'] }), ['rules[0].nonResourceURLs']],
    [
      'nonResourceURLs with resources',
      rule({ level: 'Metadata', resources: [{ group: '', resources: ['secrets'], resourceNames: [] }], nonResourceURLs: ['/logs*'] }),
      ['rules[0].nonResourceURLs'],
    ],
    [
      'a group with its version',
      rule({ level: 'Metadata', resources: [{ group: 'rbac.authorization.k8s.io/v1beta1', resources: ['roles'], resourceNames: [] }] }),
      ['rules[0].resources[0].group'],
    ],
    ['an upper-case group', rule({ level: 'Metadata', resources: [{ group: 'Apps', resources: [], resourceNames: [] }] }), ['rules[0].resources[0].group']],
    ['a URL without a leading slash', rule({ level: 'Metadata', nonResourceURLs: ['logs', '/healthz*'] }), ['rules[0].nonResourceURLs[0]']],
    ['an empty URL', rule({ level: 'Metadata', nonResourceURLs: ['', '/healthz*'] }), ['rules[0].nonResourceURLs[0]']],
    ['a URL with two wildcards', rule({ level: 'Metadata', nonResourceURLs: ['/metrics', '/logs/*/*'] }), ['rules[0].nonResourceURLs[1]']],
    ['a URL with a wildcard inside', rule({ level: 'Metadata', nonResourceURLs: ['/logs/*.log', '/metrics'] }), ['rules[0].nonResourceURLs[0]']],
    [
      'resourceNames without resources',
      rule({ level: 'Metadata', verbs: ['get'], namespaces: ['kube-system'], resources: [{ group: '', resources: [], resourceNames: ['leader'] }] }),
      ['rules[0].resources[0].resourceNames'],
    ],
    ['an unknown stage in a rule', rule({ level: 'Metadata', omitStages: ['foo'] }), ['rules[0].omitStages[0]']],
  ];
  for (const [what, r, paths] of bad) {
    it(what, () => expect(validatePolicy(policy([r])).map((e) => e.path)).toEqual(paths));
  }
  it('a bad rule after good ones', () => {
    expect(validatePolicy(policy([...goodRules, rule({})])).map((e) => e.path)).toEqual([`rules[${goodRules.length}].level`]);
  });
  it('an unknown stage in the policy', () => {
    expect(validatePolicy(policy([rule({ level: 'Metadata' })], ['foo'])).map((e) => e.path)).toEqual(['omitStages[0]']);
  });
  it('zero rules (the reader refuses it after validation)', () => {
    expect(validatePolicy(policy([])).map((e) => e.path)).toEqual(['rules']);
  });
  it('reports every error of a rule, level first', () => {
    const errs = validatePolicy(policy([rule({ level: 'X', nonResourceURLs: ['x*y'], omitStages: ['Nope'], namespaces: ['a'] })]));
    expect(errs.map((e) => e.path)).toEqual([
      'rules[0].level',
      'rules[0].nonResourceURLs[0]',
      'rules[0].nonResourceURLs[0]',
      'rules[0].omitStages[0]',
      'rules[0].nonResourceURLs',
    ]);
    expect(errs[0]!.type).toBe('NotSupported');
  });
  it('a missing level is Required, a wrong one NotSupported', () => {
    expect(validatePolicy(policy([rule({})]))[0]!.type).toBe('Required');
  });
});

const docPolicy = `
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    nonResourceURLs:
      - /healthz*
      - /version
  - level: RequestResponse
    users: ["tim"]
    userGroups: ["testers", "developers"]
    verbs: ["patch", "delete", "create"]
    resources:
      - group: ""
      - group: "rbac.authorization.k8s.io"
        resources: ["clusterroles", "clusterrolebindings"]
    namespaces: ["default", "kube-system"]
  - level: Metadata
`;

describe('parsePolicy (the reader)', () => {
  it('decodes a v1 policy', () => {
    const l = parsePolicy(docPolicy);
    expect(l.decodeErrors).toEqual([]);
    expect(l.unknownFields).toEqual([]);
    expect(l.policy!.rules).toHaveLength(3);
    expect(l.policy!.rules[1]!.resources).toEqual([
      { group: '', resources: [], resourceNames: [] },
      { group: 'rbac.authorization.k8s.io', resources: ['clusterroles', 'clusterrolebindings'], resourceNames: [] },
    ]);
    expect(l.policy!.rules[0]!.nonResourceURLs).toEqual(['/healthz*', '/version']);
    expect(l.ruleLines).toEqual([5, 9, 18]);
    expect(validatePolicy(l.policy!)).toEqual([]);
  });

  it('refuses a policy without apiVersion and kind', () => {
    const l = parsePolicy(docPolicy.replace('apiVersion: audit.k8s.io/v1\nkind: Policy\n', ''));
    expect(l.policy).toBeNull();
    expect(l.decodeErrors.map((e) => e.path)).toEqual(['apiVersion']);
  });

  it('needs apiVersion; kind may be left out, but not be wrong', () => {
    expect(parsePolicy('apiVersion: audit.k8s.io/v1\nrules: [{level: Metadata}]\n').policy).not.toBeNull();
    expect(parsePolicy('kind: Policy\nrules: [{level: Metadata}]\n').decodeErrors.map((e) => e.path)).toEqual(['apiVersion']);
    expect(parsePolicy('apiVersion: audit.k8s.io/v1\nkind: PolicyList\nrules: [{level: Metadata}]\n').decodeErrors.map((e) => e.path)).toEqual(['kind']);
  });

  it('refuses the removed v1beta1 version', () => {
    const l = parsePolicy(docPolicy.replace('audit.k8s.io/v1', 'audit.k8s.io/v1beta1'));
    expect(l.policy).toBeNull();
    expect(l.decodeErrors[0]!.message).toMatch(/no longer served/);
  });

  it('loads a policy with a mis-indented verbs field, and reports it as unknown with a hint', () => {
    const l = parsePolicy(`
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources:
    - "leases"
    verbs: ["watch", "get", "list"] # one level too deep
`);
    expect(l.policy).not.toBeNull();
    expect(l.policy!.rules[0]!.verbs).toEqual([]);
    expect(l.unknownFields).toHaveLength(1);
    expect(l.unknownFields[0]!.path).toBe('rules[0].resources[0].verbs');
    expect(l.unknownFields[0]!.line).toBe(10);
    expect(l.unknownFields[0]!.message).toMatch(/rules\[0\]\.verbs/);
  });

  it('field names are case-sensitive', () => {
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  Verbs: [get]\n');
    expect(l.policy!.rules[0]!.verbs).toEqual([]);
    expect(l.unknownFields[0]!.message).toMatch(/did you mean "verbs"/);
  });

  it('reports duplicated fields (the last one wins)', () => {
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  level: None\n');
    expect(l.policy!.rules[0]!.level).toBe('None');
    expect(l.unknownFields.map((u) => u.path)).toEqual(['rules[0].level']);
  });

  it('a value of the wrong type fails the whole file', () => {
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbs: get\n');
    expect(l.policy).toBeNull();
    expect(l.decodeErrors[0]).toMatchObject({ path: 'rules[0].verbs', line: 5 });
  });

  it('reads YAML 1.1 as the apiserver does: `on` is a boolean, not a string', () => {
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  users: [on]\n');
    expect(l.policy).toBeNull();
    expect(l.decodeErrors[0]!.path).toBe('rules[0].users[0]');
  });

  it('reads JSON', () => {
    const l = parsePolicy(
      '{"apiVersion":"audit.k8s.io/v1","kind":"Policy","omitStages":["RequestReceived"],"rules":[{"level":"Metadata","omitManagedFields":true}]}',
    );
    expect(l.policy).toEqual({ rules: [{ ...emptyRule('Metadata'), omitManagedFields: true }], omitStages: ['RequestReceived'], omitManagedFields: false });
  });

  it('null leaves a field at its zero value; rule omitManagedFields null inherits', () => {
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbs: null\n  omitManagedFields: null\n');
    expect(l.policy!.rules[0]).toEqual(emptyRule('Metadata'));
    expect('omitManagedFields' in l.policy!.rules[0]!).toBe(false);
  });

  it('an empty file and a policy with no rules do not load', () => {
    expect(parsePolicy('').decodeErrors).toHaveLength(1);
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\n');
    expect(validatePolicy(l.policy!).map((e) => e.path)).toEqual(['rules']);
  });

  it('reports YAML syntax errors with their line', () => {
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [\n');
    expect(l.policy).toBeNull();
    expect(l.decodeErrors[0]!.message).toMatch(/not valid YAML/);
  });

  it('metadata is allowed, unknown top-level fields are reported', () => {
    const l = parsePolicy('apiVersion: audit.k8s.io/v1\nkind: Policy\nmetadata: {name: p}\nrule:\n- level: Metadata\n');
    expect(l.unknownFields.map((u) => u.path)).toEqual(['rule']);
  });

  it('finds the line of a validation path', () => {
    const l = parsePolicy(docPolicy);
    expect(l.lineOf('rules[1].verbs')).toBe(12);
    expect(l.lineOf('rules[1].resources[1].group')).toBe(15);
    expect(l.lineOf('rules[2].level')).toBe(18);
  });
});
