import { evaluatePolicy } from './evaluate.js';
import { GENERIC_IDENTITIES } from './catalog.js';
import { isVisible, resourceProbes, type Probe, type ResourceSel } from './probe.js';
import type { AuditDecision, Policy } from './types.js';

/** The writes that carry a pod spec (Pod Security and the posture checks judge the same set). */
const POD_SPEC_WRITES: ResourceSel[] = [
  { group: '', resource: 'pods' },
  ...['deployments', 'daemonsets', 'statefulsets', 'replicasets'].map((resource) => ({ group: 'apps', resource })),
  ...['jobs', 'cronjobs'].map((resource) => ({ group: 'batch', resource })),
];

/**
 * Creates and updates of pods and workloads that the policy logs below Request (or without ResponseComplete): their
 * pod specs never reach the log, so the workload posture checks (detections/posture.yaml) cannot judge them.
 * `namespaces`: the namespaces whose workloads should be checked (default: the probe's namespaces, every kind).
 */
export function workloadWritesWithoutBodies(policy: Policy, namespaces?: string[]): { probe: Probe; decision: AuditDecision }[] {
  const probes = resourceProbes({ policy, resources: POD_SPEC_WRITES, verbs: ['create', 'update'], identities: GENERIC_IDENTITIES, namespaces });
  return probes
    .map((probe) => ({ probe, decision: evaluatePolicy(policy, probe.attrs) }))
    .filter((m) => !isVisible(m.decision, 'Request', ['ResponseComplete']));
}
