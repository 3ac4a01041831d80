/**
 * The workload an audit event is about, and the workload a person wrote that it comes from: a pod the replicaset
 * controller makes belongs to the Deployment someone applied, and that Deployment is what an operator fixes before a
 * namespace enforces Pod Security. Read from the request or response body's metadata when the policy logged one,
 * else from the objectRef and the controller that made the request.
 */
import type { AuditEvent } from './types.js';

export interface WorkloadRef {
  kind: string;
  name: string;
}

export interface WorkloadOf {
  /** The object written: `Pod/web-6d4cf56db6-x2k9p`, `Deployment/web`. */
  object: WorkloadRef;
  /** Its top-level owner as far as the event tells (the object itself when it has none). */
  owner: WorkloadRef;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Resource names of the objects that carry a pod spec (Pod Security judges all of them) and their kinds. */
export const POD_SPEC_KINDS: Readonly<Record<string, string>> = {
  pods: 'Pod',
  podtemplates: 'PodTemplate',
  replicationcontrollers: 'ReplicationController',
  replicasets: 'ReplicaSet',
  deployments: 'Deployment',
  statefulsets: 'StatefulSet',
  daemonsets: 'DaemonSet',
  jobs: 'Job',
  cronjobs: 'CronJob',
};

/** kube-controller-manager's controllers and the kind of object whose pods (or jobs) they make. */
const CONTROLLER_KINDS: Readonly<Record<string, string>> = {
  'system:serviceaccount:kube-system:replicaset-controller': 'ReplicaSet',
  'system:serviceaccount:kube-system:daemon-set-controller': 'DaemonSet',
  'system:serviceaccount:kube-system:statefulset-controller': 'StatefulSet',
  'system:serviceaccount:kube-system:job-controller': 'Job',
  'system:serviceaccount:kube-system:replication-controller': 'ReplicationController',
  'system:serviceaccount:kube-system:deployment-controller': 'Deployment',
  'system:serviceaccount:kube-system:cronjob-controller': 'CronJob',
};

function metadataOf(ev: AuditEvent): Obj | undefined {
  for (const b of [ev.responseObject, ev.requestObject]) {
    if (isObj(b) && isObj(b.metadata) && b.kind !== 'Status') return b.metadata;
  }
  return undefined;
}

function controllerRef(md: Obj | undefined): WorkloadRef | undefined {
  const refs = md && Array.isArray(md.ownerReferences) ? md.ownerReferences : [];
  const c = refs.find((r) => isObj(r) && r.controller === true) ?? (refs.length === 1 ? refs[0] : undefined);
  return isObj(c) && typeof c.kind === 'string' && typeof c.name === 'string' ? { kind: c.kind, name: c.name } : undefined;
}

/**
 * A controller's object one level up, from the names its controller gives: a Deployment's ReplicaSets are
 * `<deployment>-<pod-template-hash>`, a CronJob's Jobs `<cronjob>-<scheduled time in minutes>`. Only when the name
 * has that shape (the hash label confirms it where the body carries one): otherwise the ReplicaSet or Job stands.
 */
function upOne(ref: WorkloadRef, hash: string | undefined): WorkloadRef {
  if (ref.kind === 'ReplicaSet') {
    // Unconfirmed by the label, only a suffix as long as the hashes the deployment controller writes (8 to 10).
    const m = /^(.+)-([a-z0-9]{5,10})$/.exec(ref.name);
    if (m && (hash === undefined ? m[2]!.length >= 8 : hash === m[2])) return { kind: 'Deployment', name: m[1]! };
  }
  if (ref.kind === 'Job') {
    const m = /^(.+)-(\d{8,})$/.exec(ref.name);
    if (m) return { kind: 'CronJob', name: m[1]! };
  }
  return ref;
}

/** The name a controller-made pod has before the apiserver completes it: its generateName, marked with `*`. */
function nameOf(ev: AuditEvent, md: Obj | undefined): string {
  if (ev.objectRef?.name) return ev.objectRef.name;
  if (md && typeof md.name === 'string' && md.name) return md.name;
  if (md && typeof md.generateName === 'string' && md.generateName) return `${md.generateName}*`;
  return '';
}

/** A controller-made pod's parent name: the pod's name without the suffix its controller adds. */
function podParent(kind: string, pod: string): string {
  if (pod.endsWith('*')) return pod.slice(0, -2); // generateName: `<parent>-`
  if (kind === 'StatefulSet') return pod.replace(/-\d+$/, '');
  return pod.replace(/-[a-z0-9]{5}$/, '');
}

export function workloadOf(ev: AuditEvent): WorkloadOf {
  const resource = ev.objectRef?.resource ?? '';
  const md = metadataOf(ev);
  const object = { kind: POD_SPEC_KINDS[resource] ?? resource, name: nameOf(ev, md) };
  const labels = md && isObj(md.labels) ? md.labels : undefined;
  const hash = labels && typeof labels['pod-template-hash'] === 'string' ? labels['pod-template-hash'] : undefined;
  const ctl = controllerRef(md);
  if (ctl) return { object, owner: upOne(ctl, hash) };
  // No body: a controller's own request still says what made the object, and the controller's naming says from what.
  const made = CONTROLLER_KINDS[ev.user?.username ?? ''];
  if (made && object.name) {
    if (object.kind === 'Pod') return { object, owner: upOne({ kind: made, name: podParent(made, object.name) }, undefined) };
    if (object.kind === 'ReplicaSet' || object.kind === 'Job') return { object, owner: upOne(object, undefined) };
  }
  return { object, owner: object };
}
