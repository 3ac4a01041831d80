import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createDetector, parseDetectionConfig } from '../../src/detect/index.js';
import { normalise } from '../../src/events/normalise.js';
import { readEventFiles } from '../../src/sources/file-read.js';
import { ev, engine, redaction } from './helpers.js';

const execStarted = (id: string, extra: Record<string, unknown> = {}) => ({
  verb: 'create',
  stage: 'ResponseStarted',
  auditID: id,
  code: 101,
  objectRef: { resource: 'pods', subresource: 'exec', namespace: 'web', name: 'web-1' },
  query: 'command=sh&container=app',
  ...extra,
});

describe('candidate index', { timeout: 30_000 }, () => {
  it('hands each event only to the rules that can match it', async () => {
    const d = await createDetector();
    const lease = d.candidatesFor({ stage: 'ResponseComplete', resource: 'leases', subresource: '', verb: 'update' });
    // Only the rules about any request (or any write) at all.
    expect(lease.sort()).toEqual([
      'admission-policy-audit-failure',
      'anonymous-request-allowed',
      'anonymous-request-denied',
      'forbidden-burst',
      'impersonation-privileged',
    ]);
    const podCreate = d.candidatesFor({ stage: 'ResponseComplete', resource: 'pods', subresource: '', verb: 'create' });
    expect(podCreate).toContain('pod-privileged');
    expect(podCreate).toContain('pod-in-system-namespace');
    expect(podCreate).toContain('workload-after-rbac-change');
    expect(podCreate).not.toContain('secret-read');
    expect(podCreate).not.toContain('pod-exec');
    expect(podCreate).not.toContain('discovery-burst');
    const podGet = d.candidatesFor({ stage: 'ResponseComplete', resource: 'pods', subresource: '', verb: 'get' });
    expect(podGet).not.toContain('pod-privileged');
    const execStart = d.candidatesFor({ stage: 'ResponseStarted', resource: 'pods', subresource: 'exec', verb: 'get' });
    expect(execStart.sort()).toEqual(['pod-exec', 'pod-exec-suspicious-command', 'serviceaccount-token-theft']);
    // No rule looks at RequestReceived.
    expect(d.candidatesFor({ stage: 'RequestReceived', resource: 'pods', subresource: 'exec', verb: 'create' })).toEqual([]);
    // An unknown resource: the any-request rules, and discovery for lists.
    const crdList = d.candidatesFor({ stage: 'ResponseComplete', resource: 'widgets', subresource: '', verb: 'list' });
    expect(crdList.sort()).toEqual(['anonymous-request-allowed', 'anonymous-request-denied', 'discovery-burst', 'forbidden-burst', 'impersonation-privileged']);
    const status = d.candidatesFor({ stage: 'ResponseComplete', resource: 'pods', subresource: 'status', verb: 'patch' });
    expect(status).not.toContain('pod-privileged');
    // Non-resource requests.
    expect(d.candidatesFor({ stage: 'ResponseComplete', resource: '', subresource: '', verb: 'get' }).sort()).toEqual([
      'anonymous-request-allowed',
      'anonymous-request-denied',
      'forbidden-burst',
      'impersonation-privileged',
    ]);
  });

  it('counts per rule: a lease renewal never reaches the pod rules', async () => {
    const d = await createDetector();
    const lease = ev({
      verb: 'update',
      user: { username: 'system:node:n1', groups: ['system:nodes'] },
      objectRef: { resource: 'leases', apiGroup: 'coordination.k8s.io', namespace: 'kube-node-lease', name: 'n1' },
    });
    await d.detect([lease, lease, lease]);
    const stats = new Map(d.stats().map((s) => [s.rule, s]));
    expect(stats.get('pod-privileged')!.candidates).toBe(0);
    expect(stats.get('forbidden-burst')!.candidates).toBe(3);
    expect(stats.get('forbidden-burst')!.checked).toBe(0);
    expect(d.wants(lease)).toBe(false);
    const podCreate = ev({
      verb: 'create',
      objectRef: { resource: 'pods', namespace: 'web' },
      requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'nginx' }] } },
    });
    expect(d.wants(podCreate)).toBe(true);
  });

  it('raises exactly the alerts of an unindexed engine on a generated mix and the peer traces', async () => {
    const { eventStream } = (await import('../../benchmarks/lib/generate.mjs')) as {
      eventStream: (o: { seed: number; rate: number }) => () => Record<string, unknown>;
    };
    const next = eventStream({ seed: 7, rate: 20 });
    const events = Array.from({ length: 6000 }, () => ev(next()));
    // The peer traces (RBAC, configmaps, services ... that the generator lacks), when present.
    const peer = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/peer/falco-k8s-audit/traces');
    if (existsSync(peer)) {
      for await (const r of readEventFiles(readdirSync(peer).map((f) => join(peer, f))))
        if ('event' in r) events.push(normalise(r.event, 'test', redaction, r.text));
    }
    const indexed = await createDetector();
    const linear = await createDetector({ useIndex: false });
    const a = await indexed.detect(events);
    const b = await linear.detect(events);
    expect(a.length).toBeGreaterThan(50);
    expect(a.map((x) => `${x.rule} ${x.auditID} ${x.stage}`)).toEqual(b.map((x) => `${x.rule} ${x.auditID} ${x.stage}`));
    // The index keeps most rule evaluations off most events.
    const handed = indexed.stats().reduce((n, s) => n + s.candidates, 0);
    const all = linear.stats().reduce((n, s) => n + s.candidates, 0);
    expect(handed).toBeLessThan(all / 5);
  }, 60_000);
});

describe('stages: each request once', { timeout: 30_000 }, () => {
  it('fires exec on whichever of ResponseStarted or ResponseComplete comes first, once, across batches', async () => {
    const d = await createDetector();
    const a1 = await d.detect([ev(execStarted('x1'))]);
    const a2 = await d.detect([ev(execStarted('x1', { stage: 'ResponseComplete', at: '+2h' }))]);
    expect(a1.filter((a) => a.rule === 'pod-exec')).toHaveLength(1);
    expect(a1[0]!.stage).toBe('ResponseStarted');
    expect(a2.filter((a) => a.rule === 'pod-exec')).toHaveLength(0);
    // Only ResponseComplete logged (policy omits ResponseStarted): still one alert.
    const a3 = await d.detect([ev(execStarted('x2', { stage: 'ResponseComplete' }))]);
    expect(a3.filter((a) => a.rule === 'pod-exec').map((a) => a.stage)).toEqual(['ResponseComplete']);
  });

  it('never raises two alerts for one rule and one auditID', async () => {
    const d = await createDetector();
    const pod = {
      verb: 'create',
      auditID: 'dup-1',
      objectRef: { resource: 'pods', namespace: 'web', name: 'p' },
      requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'x', securityContext: { privileged: true } }] } },
    };
    const first = await d.detect([ev(pod), ev(pod)]);
    const again = await d.detect([ev(pod)]);
    expect(first.filter((a) => a.rule === 'pod-privileged')).toHaveLength(1);
    expect(again.filter((a) => a.rule === 'pod-privileged')).toHaveLength(0);
  });

  it('ignores stages a rule does not look at', async () => {
    const d = await createDetector();
    const rr = ev({
      verb: 'create',
      stage: 'RequestReceived',
      objectRef: { resource: 'pods', namespace: 'web' },
      requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'x', securityContext: { privileged: true } }] } },
    });
    expect(await d.detect([rr])).toEqual([]);
  });
});

const denied = (user: string, at: string, n = 0) => ({ verb: 'list', code: 403, user, objectRef: { resource: 'pods', namespace: `ns${n}` }, at });

describe('threshold windows on event time', { timeout: 30_000 }, () => {
  it('fires once when the count is reached within the window, not once per event past it', async () => {
    const d = await createDetector({ config: { enabled: ['forbidden-burst'] } });
    const evs = Array.from({ length: 30 }, (_, i) => ev(denied('eve', `+${i * 5}s`, i)));
    const alerts = await d.detect(evs);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.auditID).toBe(evs[9]!.auditID);
    expect(alerts[0]!.details).toMatchObject({ count: 10, window: '5m' });
    expect(alerts[0]!.summary).toBe('eve was denied 10 requests within 5m');
    // After the window of the first alert, a new burst raises a new alert.
    const later = Array.from({ length: 10 }, (_, i) => ev(denied('eve', `+${600 + i}s`, i)));
    expect(await d.detect(later)).toHaveLength(1);
  });

  it('does not count events that fall outside the window', async () => {
    const d = await createDetector({ config: { enabled: ['forbidden-burst'] } });
    // 9 denials, then the 10th six minutes after the first: the first ones have left the 5-minute window.
    const evs = [...Array.from({ length: 9 }, (_, i) => ev(denied('eve', `+${i}s`))), ev(denied('eve', '+360s'))];
    expect(await d.detect(evs)).toEqual([]);
  });

  it('keeps a count per key', async () => {
    const d = await createDetector({ config: { enabled: ['forbidden-burst'] } });
    const evs = Array.from({ length: 10 }, (_, i) => ev(denied(i % 2 ? 'eve' : 'mallory', `+${i}s`)));
    expect(await d.detect(evs)).toEqual([]);
  });

  it('gives the same alerts whether events come in one batch or one by one (replay = live)', async () => {
    const evs = [
      ...Array.from({ length: 12 }, (_, i) => ev(denied('eve', `+${i * 20}s`))),
      ...Array.from({ length: 12 }, (_, i) =>
        ev({ verb: 'get', user: 'eve', objectRef: { resource: 'secrets', namespace: 'a', name: `s${i}` }, at: `+${i * 30}s` }),
      ),
    ].sort((x, y) => x.timeMicros - y.timeMicros);
    const one = await createDetector();
    const many = await createDetector();
    const batch = await one.detect(evs);
    const single = [];
    for (const e of evs) single.push(...(await many.detect([e])));
    expect(batch.map((a) => a.rule).sort()).toEqual(['forbidden-burst', 'secret-enumeration-burst', ...Array(12).fill('secret-read')].sort());
    expect(single.map((a) => `${a.rule}/${a.auditID}`)).toEqual(batch.map((a) => `${a.rule}/${a.auditID}`));
  });

  it('counts distinct values for distinct thresholds', async () => {
    const d = await createDetector({ config: { enabled: ['secret-enumeration-burst'] } });
    const same = Array.from({ length: 15 }, (_, i) =>
      ev({ verb: 'get', user: 'eve', objectRef: { resource: 'secrets', namespace: 'a', name: 's' }, at: `+${i}s` }),
    );
    expect(await d.detect(same)).toEqual([]);
    const distinct = Array.from({ length: 10 }, (_, i) =>
      ev({ verb: 'get', user: 'eve', objectRef: { resource: 'secrets', namespace: i % 2 ? 'a' : 'b', name: `s${i >> 1}` }, at: `+${100 + i}s` }),
    );
    const alerts = await d.detect(distinct);
    expect(alerts).toHaveLength(1);
    expect((alerts[0]!.details as { values: string[] }).values).toHaveLength(10);
    expect(alerts[0]!.groupKey).toBe('secret-enumeration-burst|test|eve|threshold:eve');
  });

  it('takes count and window from the tuning config', async () => {
    const d = await createDetector({ config: { enabled: ['forbidden-burst'], rules: { 'forbidden-burst': { threshold: { count: 3, window: '10s' } } } } });
    expect(await d.detect([ev(denied('eve', '+0s')), ev(denied('eve', '+11s')), ev(denied('eve', '+12s'))])).toEqual([]);
    expect(await d.detect([ev(denied('eve', '+13s'))])).toHaveLength(1);
  });
});

describe('a batch whose commit failed, sent again by its source', { timeout: 30_000 }, () => {
  // The pipeline calls forget(alerts) when a batch's finish fails (a full disk); the source then sends the same events.
  const again = <T>(evs: T[]) => evs.map((e) => structuredClone(e));

  it('counts nothing twice: a threshold the first pass only counted does not fire early on the second', async () => {
    const d = await createDetector({ config: { enabled: ['forbidden-burst'] } });
    const first = Array.from({ length: 6 }, (_, i) => ev(denied('eve', `+${i}s`, i)));
    expect(await d.detect(first)).toEqual([]);
    d.forget!([]); // the batch raised nothing; it is refused and sent again
    expect(await d.detect(again(first))).toEqual([]);
    // 6 counted once: three more are not enough (they would be, had the resent six counted again), the fourth is.
    expect(await d.detect(Array.from({ length: 3 }, (_, i) => ev(denied('eve', `+${10 + i}s`, 10 + i))))).toEqual([]);
    const fire = await d.detect([ev(denied('eve', '+20s', 20))]);
    expect(fire.map((a) => a.rule)).toEqual(['forbidden-burst']);
  });

  it('raises a threshold alert the refused batch raised once more, on the same request, and only once', async () => {
    const d = await createDetector({ config: { enabled: ['forbidden-burst'] } });
    const batch = Array.from({ length: 12 }, (_, i) => ev(denied('eve', `+${i}s`, i)));
    const raised = await d.detect(batch);
    expect(raised.map((a) => a.auditID)).toEqual([batch[9]!.auditID]);
    d.forget!(raised);
    const resent = await d.detect(again(batch));
    expect(resent.map((a) => a.auditID)).toEqual([batch[9]!.auditID]);
    expect(resent[0]!.details).toMatchObject({ count: 10 });
    // Stored this time: the key is quiet for its window again.
    expect(await d.detect([ev(denied('eve', '+30s', 30))])).toEqual([]);
  });

  it('raises a distinct-count alert again, on the same request', async () => {
    const d = await createDetector({ config: { enabled: ['secret-enumeration-burst'] } });
    const batch = Array.from({ length: 12 }, (_, i) =>
      ev({ verb: 'get', user: 'eve', objectRef: { resource: 'secrets', namespace: 'a', name: `s${i}` }, at: `+${i}s` }),
    );
    const raised = await d.detect(batch);
    expect(raised).toHaveLength(1);
    d.forget!(raised);
    const resent = await d.detect(again(batch));
    expect(resent.map((a) => a.auditID)).toEqual(raised.map((a) => a.auditID));
  });

  it('raises a sequence alert again when the refused batch held its last step', async () => {
    const d = await createDetector({ config: { enabled: ['workload-after-rbac-change'] } });
    const rbac = {
      verb: 'create',
      user: 'eve',
      at: '+0s',
      objectRef: { resource: 'rolebindings', apiGroup: 'rbac.authorization.k8s.io', namespace: 'web', name: 'rb' },
    };
    expect(await d.detect([ev(rbac)])).toEqual([]); // stored in an earlier batch
    const batch = [ev({ verb: 'create', user: 'eve', at: '+20s', objectRef: { resource: 'pods', namespace: 'web', name: 'p' } })];
    const raised = await d.detect(batch);
    expect(raised.map((a) => a.rule)).toEqual(['workload-after-rbac-change']);
    d.forget!(raised);
    const resent = await d.detect(again(batch));
    expect(resent.map((a) => `${a.rule}/${a.auditID}`)).toEqual(raised.map((a) => `${a.rule}/${a.auditID}`));
  });
});

describe('sequences', { timeout: 30_000 }, () => {
  const rbac = (user: string, at: string) => ({
    verb: 'create',
    user,
    at,
    objectRef: { resource: 'rolebindings', apiGroup: 'rbac.authorization.k8s.io', namespace: 'web', name: 'rb' },
  });
  const pod = (user: string, at: string) => ({ verb: 'create', user, at, objectRef: { resource: 'pods', namespace: 'web', name: `p${at}` } });
  const run = async (...evs: Record<string, unknown>[]) => {
    const d = await createDetector({ config: { enabled: ['workload-after-rbac-change'] } });
    const out = [];
    for (const e of evs) out.push(...(await d.detect([ev(e)]))); // one batch per event: state carries across batches
    return out;
  };

  it('fires when B follows A by the same key within the window', async () => {
    const alerts = await run(rbac('eve', '+0s'), pod('eve', '+299s'));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.summary).toBe('eve created pod web/p+299s within 5m of changing RBAC');
    expect((alerts[0]!.details as { steps: { step: string }[] }).steps.map((s) => s.step)).toEqual(['rbac change', 'workload write']);
  });

  it('does not fire out of order, too late, or for another key', async () => {
    expect(await run(pod('eve', '+0s'), rbac('eve', '+10s'))).toEqual([]);
    expect(await run(rbac('eve', '+0s'), pod('eve', '+301s'))).toEqual([]);
    expect(await run(rbac('eve', '+0s'), pod('bob', '+10s'))).toEqual([]);
  });

  it('fires once per A, and again after a new A', async () => {
    const alerts = await run(rbac('eve', '+0s'), pod('eve', '+10s'), pod('eve', '+20s'), rbac('eve', '+30s'), pod('eve', '+40s'));
    expect(alerts).toHaveLength(2);
  });

  it('takes its window from the tuning config', async () => {
    const d = await createDetector({ config: { enabled: ['workload-after-rbac-change'], rules: { 'workload-after-rbac-change': { within: '20s' } } } });
    expect(await d.detect([ev(rbac('eve', '+0s')), ev(pod('eve', '+21s'))])).toEqual([]);
  });
});

describe('tuning config', { timeout: 30_000 }, () => {
  const privPod = (extra: Record<string, unknown> = {}) => ({
    verb: 'create',
    user: 'alice@example.com',
    objectRef: { resource: 'pods', namespace: 'web', name: 'p' },
    requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'registry.example.com/agent:1', securityContext: { privileged: true } }] } },
    ...extra,
  });
  const fires = async (config: Record<string, unknown>, e: Record<string, unknown> = privPod()) => {
    const d = await createDetector({ config });
    return (await d.detect([ev(e)])).filter((a) => a.rule === 'pod-privileged');
  };

  it('disables a rule', async () => {
    expect(await fires({})).toHaveLength(1);
    expect(await fires({ disabled: ['pod-privileged'] })).toHaveLength(0);
    expect(await fires({ disabled: ['pod-*'] })).toHaveLength(0);
    expect(await fires({ rules: { 'pod-privileged': { enabled: false } } })).toHaveLength(0);
    const d = await createDetector({ config: { disabled: ['pod-privileged'] } });
    expect(d.inactive).toContainEqual({ id: 'pod-privileged', reason: 'disabled' });
  });

  it('changes severity', async () => {
    expect((await fires({ severity: { 'pod-privileged': 'critical' } }))[0]!.severity).toBe('critical');
    expect((await fires({ rules: { 'pod-privileged': { severity: 'low' } } }))[0]!.severity).toBe('low');
  });

  it('adds exceptions by user, group, namespace, image and name', async () => {
    expect(await fires({ rules: { 'pod-privileged': { exceptions: [{ users: ['alice@*'] }] } } })).toHaveLength(0);
    expect(await fires({ rules: { 'pod-privileged': { exceptions: [{ users: ['bob@*'] }] } } })).toHaveLength(1);
    expect(await fires({ exceptions: [{ groups: ['system:authenticated'], rules: ['pod-*'] }] })).toHaveLength(0);
    expect(await fires({ exceptions: [{ groups: ['system:authenticated'], rules: ['secret-*'] }] })).toHaveLength(1);
    expect(await fires({ exceptions: [{ namespaces: ['web'] }] })).toHaveLength(0);
    expect(await fires({ exceptions: [{ images: ['registry.example.com/*'] }] })).toHaveLength(0);
    expect(await fires({ exceptions: [{ names: ['re:^p$'] }] })).toHaveLength(0);
    // All fields of one exception must match.
    expect(await fires({ exceptions: [{ namespaces: ['web'], users: ['bob'] }] })).toHaveLength(1);
    // An image exception needs every image of the pod to match.
    const mixed = privPod({
      requestObject: {
        kind: 'Pod',
        spec: {
          containers: [
            { name: 'a', image: 'registry.example.com/agent:1' },
            { name: 'b', image: 'evil/x', securityContext: { privileged: true } },
          ],
        },
      },
    });
    expect(await fires({ exceptions: [{ images: ['registry.example.com/*'] }] }, mixed)).toHaveLength(1);
  });

  it('extends and replaces shared lists', async () => {
    const platformPod = {
      verb: 'create',
      objectRef: { resource: 'pods', namespace: 'platform', name: 'p' },
      requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'x' }] } },
    };
    const d1 = await createDetector();
    expect((await d1.detect([ev(platformPod)])).map((a) => a.rule)).not.toContain('pod-in-system-namespace');
    const d2 = await createDetector({ config: { lists: { 'system-namespaces': { add: ['platform'] } } } });
    expect((await d2.detect([ev(platformPod)])).map((a) => a.rule)).toContain('pod-in-system-namespace');
    const mnt = {
      verb: 'create',
      objectRef: { resource: 'pods', namespace: 'web', name: 'p' },
      requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'x' }], volumes: [{ name: 'v', hostPath: { path: '/data/secrets' } }] } },
    };
    const d3 = await createDetector({ config: { lists: { 'sensitive-host-paths': ['/data'] } } });
    expect((await d3.detect([ev(mnt)])).map((a) => a.rule)).toContain('pod-sensitive-hostpath');
  });

  it('turns allowlist rules on only when their list is configured', async () => {
    const pod = {
      verb: 'create',
      objectRef: { resource: 'pods', namespace: 'web', name: 'p' },
      requestObject: { kind: 'Pod', spec: { containers: [{ name: 'a', image: 'docker.io/evil/miner' }] } },
    };
    const off = await createDetector();
    expect(off.inactive.find((r) => r.id === 'disallowed-image')?.reason).toMatch(/allowed-images/);
    expect((await off.detect([ev(pod)])).map((a) => a.rule)).not.toContain('disallowed-image');
    const on = await createDetector({ config: { lists: { 'allowed-images': ['registry.example.com/*'] } } });
    expect((await on.detect([ev(pod)])).map((a) => a.rule)).toContain('disallowed-image');
  });

  it('rejects a bad config with the offending key (checked once, where the config is parsed)', () => {
    expect(() => parseDetectionConfig({ severity: { 'pod-privileged': 'urgent' } })).toThrow(/detection\.severity\.pod-privileged must be one of/);
    expect(() => parseDetectionConfig({ rules: { x: { exceptions: [{ reason: 'nothing' }] } } })).toThrow(/names nothing to except/);
    expect(() => parseDetectionConfig({ disable: ['x'] })).toThrow(/unknown key "disable"/);
    expect(() => parseDetectionConfig({ rules: { x: { threshold: { window: 'soon' } } } })).toThrow(/bad duration/);
  });
});

describe('alerts', { timeout: 30_000 }, () => {
  it('name who did what to which object, with MITRE tags and a group key', async () => {
    const d = await createDetector();
    const e = ev({
      verb: 'create',
      user: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] },
      objectRef: { resource: 'pods', namespace: 'web' },
      requestObject: {
        kind: 'Pod',
        metadata: { generateName: 'web-5d-', ownerReferences: [{ kind: 'ReplicaSet', name: 'web-5d', controller: true }] },
        spec: { containers: [{ name: 'app', image: 'nginx', securityContext: { privileged: true } }] },
      },
      responseObject: { kind: 'Pod', metadata: { name: 'web-5d-x7z' } },
    });
    const [a] = (await d.detect([e])).filter((x) => x.rule === 'pod-privileged');
    expect(a).toMatchObject({
      rule: 'pod-privileged',
      severity: 'high',
      cluster: 'test',
      auditID: e.auditID,
      stage: 'ResponseComplete',
      time: e.time,
      user: 'system:serviceaccount:kube-system:replicaset-controller',
      verb: 'create',
      objectRef: { resource: 'pods', namespace: 'web', name: 'web-5d-x7z' },
      summary: 'system:serviceaccount:kube-system:replicaset-controller created pod web/web-5d-x7z with privileged container(s) app',
      groupKey: 'pod-privileged|test|system:serviceaccount:kube-system:replicaset-controller|web/ReplicaSet/web-5d',
    });
    expect(a!.mitre).toContain('T1611');
    expect(a!.tags).toContain('T1611');
  });

  it('raises a higher severity when an escalation matches', async () => {
    const d = await createDetector();
    const [cw] = await d.detect([ev({ verb: 'list', objectRef: { resource: 'secrets' } })]);
    expect(cw).toMatchObject({ rule: 'secret-list', severity: 'critical' });
    const [ns] = await d.detect([ev({ verb: 'list', objectRef: { resource: 'secrets', namespace: 'web' } })]);
    expect(ns).toMatchObject({ rule: 'secret-list', severity: 'medium' });
  });

  it('never carries secret values (events are redacted before detection)', async () => {
    const d = await createDetector({ config: { enabled: ['secret-created'] } });
    const alerts = await d.detect([
      ev({
        verb: 'create',
        objectRef: { resource: 'secrets', namespace: 'web', name: 's' },
        requestObject: { kind: 'Secret', type: 'Opaque', data: { password: 'aHVudGVyMg==' } },
      }),
    ]);
    expect(alerts).toHaveLength(1);
    expect(JSON.stringify(alerts)).not.toContain('aHVudGVyMg==');
  });
});

describe('JSONata conditions are bounded', { timeout: 30_000 }, () => {
  const rule = (condition: string) => `
rules:
  - id: slow
    title: slow
    severity: low
    match: {verbs: [create], resources: [pods]}
    condition: '${condition}'
`;
  it('a condition that runs too long or too deep is an error for that event, not a hang', async () => {
    const warnings: string[] = [];
    for (const c of ['$count([1..1000000].($ * 2)) > 0', '($f := function($n) { $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000) > 0)']) {
      const d = engine(rule(c), { config: { evaluationTimeoutMs: 20 }, onWarning: (m) => warnings.push(m) });
      // CPU time, not wall time: a busy machine stretches the wall clock, not the work done before the bound stops it.
      const cpu0 = process.cpuUsage();
      expect(await d.detect([ev({ verb: 'create', objectRef: { resource: 'pods', namespace: 'a' } })])).toEqual([]);
      const cpu = process.cpuUsage(cpu0);
      expect((cpu.user + cpu.system) / 1000).toBeLessThan(2000);
      expect(d.stats()[0]!.errors).toBe(1);
    }
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/rule slow: condition failed on event .*timeout/i);
    expect(warnings[1]).toMatch(/rule slow: condition failed on event .*stack/i);
  });
});

describe('shared matchers', { timeout: 30_000 }, () => {
  it('evaluate a condition once for identical rules, with alerts and counts per rule', async () => {
    const yaml = ['a', 'b', 'c']
      .map(
        (id) => `
  - id: r-${id}
    title: ${id}
    severity: low
    match: {verbs: [create], resources: [pods]}
    condition: "$count($containers()[securityContext.privileged = true]) > 0"`,
      )
      .join('\n');
    const d = engine(`rules:${yaml}`);
    const alerts = await d.detect([
      ev({
        verb: 'create',
        objectRef: { resource: 'pods', namespace: 'a', name: 'p' },
        requestObject: { kind: 'Pod', spec: { containers: [{ name: 'x', image: 'y', securityContext: { privileged: true } }] } },
      }),
    ]);
    expect(alerts.map((a) => a.rule)).toEqual(['r-a', 'r-b', 'r-c']);
    expect(d.counts.matchers).toBe(1);
    expect(d.stats().map((s) => [s.conditionEvaluations, s.sharedBy])).toEqual([
      [1, 3],
      [1, 3],
      [1, 3],
    ]);
    const unshared = engine(`rules:${yaml}`, { shareIdentical: false });
    expect(unshared.counts.matchers).toBe(3);
  });
});
