import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/types.js';
import { parsePolicy } from '../../src/policy/load.js';
import { reshapeEvent, simulatePolicy } from '../../src/policy/simulate.js';
import type { RuleRequirement } from '../../src/policy/requirements.js';
import type { Policy } from '../../src/policy/types.js';

const policy = (body: string): Policy => {
  const l = parsePolicy(`apiVersion: audit.k8s.io/v1\nkind: Policy\n${body}`);
  if (!l.policy) throw new Error(JSON.stringify(l.decodeErrors));
  return l.policy;
};

const bigBody = {
  kind: 'Pod',
  apiVersion: 'v1',
  metadata: { name: 'p', managedFields: [{ manager: 'x'.repeat(500) }] },
  spec: { containers: [{ name: 'c', image: 'nginx', securityContext: { privileged: true } }] },
};

function ev(over: Partial<AuditEvent> & { auditID: string; stage: AuditEvent['stage'] }): AuditEvent {
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'RequestResponse',
    requestURI: '/api/v1/namespaces/default/pods',
    verb: 'create',
    user: { username: 'alice', groups: ['system:authenticated'] },
    objectRef: { resource: 'pods', namespace: 'default', name: 'p', apiVersion: 'v1' },
    requestReceivedTimestamp: '2024-05-14T09:00:00.000000Z',
    ...over,
  };
}

const podCreate = [
  ev({ auditID: 'a', stage: 'RequestReceived' }),
  ev({ auditID: 'a', stage: 'ResponseComplete', requestObject: bigBody, responseObject: bigBody, responseStatus: { code: 201 } }),
];
const leaseUpdate = [
  ev({
    auditID: 'b',
    stage: 'RequestReceived',
    verb: 'update',
    user: { username: 'system:node:n1', groups: ['system:nodes'] },
    requestURI: '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1',
    objectRef: { resource: 'leases', apiGroup: 'coordination.k8s.io', namespace: 'kube-node-lease', name: 'n1' },
  }),
  ev({
    auditID: 'b',
    stage: 'ResponseComplete',
    verb: 'update',
    user: { username: 'system:node:n1', groups: ['system:nodes'] },
    requestURI: '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1',
    objectRef: { resource: 'leases', apiGroup: 'coordination.k8s.io', namespace: 'kube-node-lease', name: 'n1' },
    requestObject: { spec: {} },
  }),
];
const all = [...podCreate, ...leaseUpdate];
const bytes = (e: AuditEvent) => Buffer.byteLength(JSON.stringify(e)) + 1;

const podPrivileged: RuleRequirement = {
  rule: 'pod-privileged',
  title: 'Privileged pod',
  verbs: ['create'],
  resources: [{ group: '', resource: 'pods' }],
  level: 'Request',
  stages: ['ResponseComplete'],
};

describe('simulatePolicy', () => {
  it('keeps every event under a policy that logs like the capture', async () => {
    const r = await simulatePolicy(policy('rules:\n- level: RequestResponse\n'), all);
    expect(r.input.events).toBe(4);
    expect(r.kept).toEqual({ events: 4, bytes: r.input.bytes });
    expect(r.rules).toEqual([{ rule: 0, level: 'RequestResponse', inputEvents: 4, inputBytes: r.input.bytes, keptEvents: 4, keptBytes: r.input.bytes }]);
  });

  it('drops omitted stages and None rules, and cuts bodies to the new level', async () => {
    const p = policy(
      'omitStages: [RequestReceived]\nrules:\n- level: None\n  resources: [{group: coordination.k8s.io, resources: [leases]}]\n- level: Metadata\n',
    );
    const r = await simulatePolicy(p, all);
    expect(r.kept.events).toBe(1);
    const expected = bytes(reshapeEvent(podCreate[1]!, 'Metadata', false));
    expect(r.kept.bytes).toBe(expected);
    expect(expected).toBeLessThan(bytes(podCreate[1]!) / 2);
    expect(r.rules.map((v) => [v.rule, v.inputEvents, v.keptEvents])).toEqual([
      [0, 2, 0],
      [1, 2, 1],
    ]);
  });

  it('Request keeps the request body and drops the response; omitManagedFields strips managedFields', () => {
    const full = podCreate[1]!;
    const req = reshapeEvent(full, 'Request', false);
    expect(req.requestObject).toBeDefined();
    expect(req.responseObject).toBeUndefined();
    const slim = reshapeEvent(full, 'Request', true);
    expect((slim.requestObject as typeof bigBody).metadata).toEqual({ name: 'p' });
    // the input is not modified
    expect((full.requestObject as typeof bigBody).metadata.managedFields).toHaveLength(1);
  });

  it('counts events the capture holds at a lower level than the policy asks (a lower bound)', async () => {
    const meta = [ev({ auditID: 'm', stage: 'ResponseComplete', level: 'Metadata' })];
    const r = await simulatePolicy(policy('rules:\n- level: RequestResponse\n'), meta);
    expect(r.underCaptured).toBe(1);
    expect(r.kept.bytes).toBe(r.input.bytes);
  });

  it('names detections that would go blind on the traffic', async () => {
    const metadataOnly = await simulatePolicy(policy('rules:\n- level: Metadata\n'), all, { requirements: [podPrivileged] });
    expect(metadataOnly.detections).toEqual([{ rule: 'pod-privileged', title: 'Privileged pod', requests: 1, visibleInInput: 1, visibleAfter: 0, lost: 1 }]);
    const request = await simulatePolicy(policy('rules:\n- level: Request\n'), all, { requirements: [podPrivileged] });
    expect(request.detections[0]!.lost).toBe(0);
  });

  it('counts bad records apart', async () => {
    const r = await simulatePolicy(policy('rules:\n- level: Metadata\n'), [{ error: 'not JSON', where: 'x.log:3' }, ...all]);
    expect(r.input.badRecords).toBe(1);
    expect(r.errors).toEqual(['x.log:3: not JSON']);
    expect(r.input.events).toBe(4);
  });

  it('uses the original line length for input bytes when the reader gives it', async () => {
    const text = JSON.stringify(podCreate[0]) + '   ';
    const r = await simulatePolicy(policy('rules:\n- level: RequestResponse\n'), [{ event: podCreate[0]!, text, where: 'x:1' }]);
    expect(r.input.bytes).toBe(text.length + 1);
  });
});
