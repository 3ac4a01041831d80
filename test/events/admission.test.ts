import { describe, expect, it } from 'vitest';
import { decodeAdmission, parseViolations } from '../../src/events/admission.js';
import type { AuditEvent } from '../../src/events/types.js';
import { workloadOf } from '../../src/events/workload.js';

const event = (over: Partial<AuditEvent>): AuditEvent =>
  ({
    level: 'Metadata',
    auditID: 'a',
    stage: 'ResponseComplete',
    requestURI: '/',
    verb: 'create',
    user: { username: 'alice' },
    requestReceivedTimestamp: '2026-01-01T00:00:00Z',
    ...over,
  }) as AuditEvent;

// The texts below are in the shape pod-security-admission writes: `would violate PodSecurity "<level>:<version>": `
// then each failed check's forbidden reason with its detail in parentheses, joined by ", ".
const RESTRICTED =
  'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]), restricted volume types (volumes "logs", "data" use restricted volume type "hostPath"), hostPath volumes (volumes "logs", "data"), runAsNonRoot != true (pod or containers "app", "side" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")';

describe('Pod Security annotations', () => {
  it('decodes an audit-mode violation into its checks, each with the lowest level it breaks', () => {
    const a = decodeAdmission(
      event({ annotations: { 'pod-security.kubernetes.io/audit-violations': RESTRICTED, 'pod-security.kubernetes.io/enforce-policy': 'privileged:v1.30' } }),
    )!;
    expect(a.enforcePolicy).toEqual({ level: 'privileged', version: 'v1.30' });
    expect(a.audit!.level).toBe('restricted');
    expect(a.audit!.version).toBe('latest');
    expect(a.audit!.violations.map((v) => [v.check, v.level])).toEqual([
      ['allowPrivilegeEscalation', 'restricted'],
      ['capabilities_restricted', 'restricted'],
      ['restrictedVolumes', 'restricted'],
      ['hostPathVolumes', 'baseline'],
      ['runAsNonRoot', 'restricted'],
      ['seccompProfile', 'restricted'],
    ]);
    // Details keep their commas and quotes; the split happens only between checks.
    expect(a.audit!.violations[2]!.detail).toBe('volumes "logs", "data" use restricted volume type "hostPath"');
    expect(a.audit!.violations[4]!.detail).toBe('pod or containers "app", "side" must set securityContext.runAsNonRoot=true');
  });

  it('tells the baseline seccomp check (Unconfined) from the restricted one, and takes every check of a baseline audit as baseline', () => {
    expect(parseViolations('seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")', 'restricted')[0]!.level).toBe('baseline');
    expect(parseViolations('runAsNonRoot != true (pod must set securityContext.runAsNonRoot=true)', 'baseline')[0]!.level).toBe('baseline');
    expect(
      parseViolations(
        'hostPort (container "db" uses hostPort 5432), privileged, non-default capabilities (container "a" must not include "SYS_ADMIN" in securityContext.capabilities.add)',
        'baseline',
      ).map((v) => v.check),
    ).toEqual(['hostPorts', 'privileged', 'capabilities_baseline']);
  });

  it('keeps a reason it does not know (a newer Pod Security) as unknown, and goes on', () => {
    const v = parseViolations(
      'frobnication (container "a" frobs (badly)), privileged (container "a" must not set securityContext.privileged=true)',
      'restricted',
    );
    expect(v.map((x) => [x.check, x.reason, x.detail])).toEqual([
      ['unknown', 'frobnication', 'container "a" frobs (badly)'],
      ['privileged', 'privileged', 'container "a" must not set securityContext.privileged=true'],
    ]);
  });

  it('reads an enforce refusal from the response status, exemptions and parse errors from their annotations', () => {
    const denied = decodeAdmission(
      event({
        responseStatus: {
          code: 403,
          message:
            'pods "x" is forbidden: violates PodSecurity "baseline:v1.29": hostPath volumes (volume "root"), privileged (container "a" must not set securityContext.privileged=true)',
        },
      }),
    )!;
    expect(denied.denied).toMatchObject({ level: 'baseline', version: 'v1.29' });
    expect(denied.denied!.violations.map((v) => v.check)).toEqual(['hostPathVolumes', 'privileged']);
    expect(decodeAdmission(event({ annotations: { 'pod-security.kubernetes.io/exempt': 'runtimeClass' } }))).toEqual({ exempt: 'runtimeClass' });
    expect(decodeAdmission(event({ annotations: { 'pod-security.kubernetes.io/error': 'Failed to parse policy: invalid level "strict"' } }))!.error).toMatch(
      /invalid level/,
    );
    // A 403 from RBAC is not Pod Security's.
    expect(decodeAdmission(event({ responseStatus: { code: 403, message: 'pods is forbidden: User "x" cannot create resource "pods"' } }))).toBeUndefined();
  });

  it('ignores what is not in the known formats: other annotations, a bad level, a malformed violation text', () => {
    expect(decodeAdmission(event({ annotations: { 'authorization.k8s.io/decision': 'allow' } }))).toBeUndefined();
    expect(decodeAdmission(event({ annotations: { 'pod-security.kubernetes.io/enforce-policy': 'strict' } }))).toBeUndefined();
    expect(decodeAdmission(event({ annotations: { 'pod-security.kubernetes.io/audit-violations': 'something else entirely' } }))).toBeUndefined();
  });
});

describe('ValidatingAdmissionPolicy audit failures', () => {
  it('decodes the validation_failure JSON list', () => {
    const value = JSON.stringify([
      {
        message: 'failed expression: object.spec.replicas <= 5',
        policy: 'replica-limit.example.com',
        binding: 'replica-limit-shop',
        expressionIndex: 0,
        validationActions: ['Audit'],
      },
      {
        message: 'image must come from registry.example.com',
        policy: 'registry.example.com',
        binding: 'all',
        expressionIndex: 2,
        validationActions: ['Audit', 'Warn'],
      },
    ]);
    const a = decodeAdmission(event({ annotations: { 'validation.policy.admission.k8s.io/validation_failure': value } }))!;
    expect(a.policyFailures).toEqual([
      {
        policy: 'replica-limit.example.com',
        binding: 'replica-limit-shop',
        message: 'failed expression: object.spec.replicas <= 5',
        expressionIndex: 0,
        actions: ['Audit'],
      },
      { policy: 'registry.example.com', binding: 'all', message: 'image must come from registry.example.com', expressionIndex: 2, actions: ['Audit', 'Warn'] },
    ]);
    expect(decodeAdmission(event({ annotations: { 'validation.policy.admission.k8s.io/validation_failure': '{"not":"a list"' } }))).toBeUndefined();
  });
});

describe('the workload an event is about', () => {
  it('follows owner references up to the workload someone wrote', () => {
    const rsPod = event({
      objectRef: { resource: 'pods', namespace: 'shop' },
      requestObject: {
        kind: 'Pod',
        metadata: {
          generateName: 'web-7d4b9c8f6d-',
          labels: { 'pod-template-hash': '7d4b9c8f6d' },
          ownerReferences: [{ kind: 'ReplicaSet', name: 'web-7d4b9c8f6d', controller: true }],
        },
      },
    });
    expect(workloadOf(rsPod)).toEqual({ object: { kind: 'Pod', name: 'web-7d4b9c8f6d-*' }, owner: { kind: 'Deployment', name: 'web' } });
    const cronPod = event({
      objectRef: { resource: 'pods', namespace: 'shop' },
      requestObject: { metadata: { ownerReferences: [{ kind: 'Job', name: 'report-29410560', controller: true }] } },
    });
    expect(workloadOf(cronPod).owner).toEqual({ kind: 'CronJob', name: 'report' });
    // A ReplicaSet whose name only looks like a Deployment's (short suffix, no hash label) stays a ReplicaSet.
    const lone = event({
      objectRef: { resource: 'pods', namespace: 'x' },
      requestObject: { metadata: { ownerReferences: [{ kind: 'ReplicaSet', name: 'my-cache', controller: true }] } },
    });
    expect(workloadOf(lone).owner).toEqual({ kind: 'ReplicaSet', name: 'my-cache' });
  });

  it('without a body, reads the controller that made the request and its naming', () => {
    const by = (username: string, resource: string, name: string) =>
      workloadOf(event({ user: { username }, objectRef: { resource, namespace: 'x', name } })).owner;
    expect(by('system:serviceaccount:kube-system:replicaset-controller', 'pods', 'web-7d4b9c8f6d-x2k9p')).toEqual({ kind: 'Deployment', name: 'web' });
    expect(by('system:serviceaccount:kube-system:daemon-set-controller', 'pods', 'log-agent-h7k2p')).toEqual({ kind: 'DaemonSet', name: 'log-agent' });
    expect(by('system:serviceaccount:kube-system:statefulset-controller', 'pods', 'db-2')).toEqual({ kind: 'StatefulSet', name: 'db' });
    expect(by('system:serviceaccount:kube-system:deployment-controller', 'replicasets', 'web-7d4b9c8f6d')).toEqual({ kind: 'Deployment', name: 'web' });
    expect(by('alice', 'deployments', 'web')).toEqual({ kind: 'Deployment', name: 'web' });
  });
});
