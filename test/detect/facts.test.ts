import { describe, expect, it } from 'vitest';
import { containers, execCommand, hostPaths, patchPaths, patchToObject, podSpecs } from '../../src/detect/facts.js';
import { compilePathPrefixes, compilePatterns, compileTextPatterns } from '../../src/detect/patterns.js';
import { parseResource } from '../../src/detect/match.js';
import type { AuditEvent } from '../../src/events/types.js';

const event = (verb: string, resource: string, requestObject: unknown, extra: Partial<AuditEvent> = {}): AuditEvent =>
  ({
    verb,
    objectRef: { resource },
    requestObject,
    requestURI: '/',
    auditID: 'x',
    stage: 'ResponseComplete',
    level: 'Request',
    user: {},
    requestReceivedTimestamp: '2026-01-01T00:00:00Z',
    ...extra,
  }) as AuditEvent;

const c = (name: string) => ({ name, image: name });

describe('pod specs wherever they sit', () => {
  it('finds pods, workload templates, pod templates and cronjob jobTemplates, all container kinds', () => {
    const spec = { initContainers: [c('init')], containers: [c('main')], ephemeralContainers: [c('debug')] };
    const cases: [string, unknown][] = [
      ['pods', { kind: 'Pod', spec }],
      ['deployments', { kind: 'Deployment', spec: { template: { spec } } }],
      ['daemonsets', { kind: 'DaemonSet', spec: { template: { spec } } }],
      ['statefulsets', { kind: 'StatefulSet', spec: { template: { spec } } }],
      ['replicasets', { kind: 'ReplicaSet', spec: { template: { spec } } }],
      ['jobs', { kind: 'Job', spec: { template: { spec } } }],
      ['replicationcontrollers', { kind: 'ReplicationController', spec: { template: { spec } } }],
      ['podtemplates', { kind: 'PodTemplate', template: { spec } }],
      ['cronjobs', { kind: 'CronJob', spec: { jobTemplate: { spec: { template: { spec } } } } }],
      ['rollouts', { kind: 'Rollout', spec: { template: { spec } } }],
      // A patch (no kind): found by resource.
      ['deployments', { spec: { template: { spec } } }],
      ['cronjobs', { spec: { jobTemplate: { spec: { template: { spec } } } } }],
    ];
    for (const [res, body] of cases) {
      const ev = event('create', res, body);
      expect(podSpecs(ev), res).toHaveLength(1);
      expect(
        containers(ev).map((x) => x.name),
        res,
      ).toEqual(['init', 'main', 'debug']);
    }
    expect(podSpecs(event('create', 'services', { kind: 'Service', spec: { ports: [] } }))).toEqual([]);
    expect(podSpecs(event('delete', 'pods', { kind: 'DeleteOptions' }))).toEqual([]);
  });

  it('reads the response body of a create logged without its request body', () => {
    const ev = event('create', 'pods', undefined, {
      responseObject: { kind: 'Pod', spec: { containers: [c('a')], volumes: [{ name: 'v', hostPath: { path: '/etc' } }] } },
    });
    expect(hostPaths(ev)).toEqual(['/etc']);
  });

  it('turns a JSON patch into the partial object it writes', () => {
    expect(
      patchToObject([
        { op: 'add', path: '/spec/template/spec/hostNetwork', value: true },
        { op: 'replace', path: '/spec/template/spec/containers/0/securityContext/privileged', value: true },
        { op: 'add', path: '/metadata/annotations/a~1b', value: 'x' },
        { op: 'remove', path: '/spec/replicas' },
        { op: 'add', path: '/__proto__/polluted', value: true },
      ]),
    ).toEqual({
      spec: { template: { spec: { hostNetwork: true, containers: [{ securityContext: { privileged: true } }] } } },
      metadata: { annotations: { 'a/b': 'x' } },
    });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('lists the paths a patch writes', () => {
    expect(patchPaths(event('patch', 'services', { spec: { type: 'NodePort', ports: [{ port: 80 }] } }))).toEqual(['/spec/type', '/spec/ports/0/port']);
    expect(patchPaths(event('patch', 'services', [{ op: 'replace', path: '/spec/type', value: 'NodePort' }]))).toEqual(['/spec/type']);
    expect(patchPaths(event('update', 'services', { spec: { type: 'NodePort' } }))).toEqual([]);
  });

  it('decodes the exec command', () => {
    const ev = event('create', 'pods', undefined, {
      requestURI: '/api/v1/namespaces/a/pods/p/exec?command=sh&command=-c&command=cat%20%2Fetc%2Fshadow&container=x',
    });
    expect(execCommand(ev)).toEqual(['sh', '-c', 'cat /etc/shadow']);
  });
});

describe('patterns', () => {
  it('matches exact strings, globs and re: regular expressions', () => {
    const t = compilePatterns(['alice', 'ci-*', 'node-?', 're:^svc-[0-9]+$', 'rei:^ADMIN$']);
    expect(['alice', 'ci-deployer', 'node-1', 'svc-42', 'admin'].map(t)).toEqual([true, true, true, true, true]);
    expect(['alic', 'xci-a', 'node-12', 'svc-4a', 'Administrator'].map(t)).toEqual([false, false, false, false, false]);
    // Paths are not regular expressions: "/version/" is an exact path.
    expect(compilePatterns(['/version/'])('/api/version/x')).toBe(false);
  });

  it('matches host paths by prefix, / only itself', () => {
    const t = compilePathPrefixes(['/', '/etc', '/var/run/docker.sock']);
    expect(['/', '/etc', '/etc/', '/etc/kubernetes/pki', '/./etc', '/var/run/docker.sock', '/tmp/../etc/x'].map(t)).toEqual([
      true,
      true,
      true,
      true,
      true,
      true,
      true,
    ]);
    expect(['/etcd', '/data', '/var/run', '/home/etc'].map(t)).toEqual([false, false, false, false]);
  });

  it('finds text patterns case-insensitively', () => {
    const re = compileTextPatterns(['password', 're:\\bAKIA[0-9A-Z]{16}\\b'])!;
    expect(re.test('DB_PASSWORD=x')).toBe(true);
    expect(re.test('key=AKIAABCDEFGHIJKLMNOP')).toBe(true);
    expect(re.test('color=blue')).toBe(false);
  });

  it('parses resources as resource[/subresource][.group]', () => {
    expect(parseResource('pods')).toEqual({ group: '', resource: 'pods' });
    expect(parseResource('pods/exec')).toEqual({ group: '', resource: 'pods', subresource: 'exec' });
    expect(parseResource('clusterroles.rbac.authorization.k8s.io')).toEqual({ group: 'rbac.authorization.k8s.io', resource: 'clusterroles' });
    expect(parseResource('*')).toEqual({ group: '*', resource: '*' });
    expect(parseResource('*/*')).toEqual({ group: '*', resource: '*', subresource: '*' });
    expect(() => parseResource('Pods')).toThrow(/bad resource/);
  });
});
