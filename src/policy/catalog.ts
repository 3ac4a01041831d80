/**
 * The Kubernetes API surface kaudit probes a policy with: built-in resources, their scope and subresources, the
 * verbs, the identities that matter, and the traffic known to be high-volume and low-value.
 */
import type { RequestAttributes, RequestUser } from './types.js';
import { requestAttributes } from './types.js';

export interface CatalogResource {
  group: string;
  resource: string;
  namespaced: boolean;
  subresources?: string[];
  /** Verbs the resource serves, when not the usual eight (reviews are create-only). */
  verbs?: string[];
}

export const RESOURCE_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'] as const;
export const READ_VERBS = ['get', 'list', 'watch'];
export const WRITE_VERBS = ['create', 'update', 'patch', 'delete', 'deletecollection'];
/** Non-resource requests carry the lower-cased HTTP method as verb. */
export const NON_RESOURCE_VERBS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];

export const CATALOG: CatalogResource[] = [
  {
    group: '',
    resource: 'pods',
    namespaced: true,
    subresources: ['exec', 'attach', 'portforward', 'proxy', 'log', 'status', 'eviction', 'binding', 'ephemeralcontainers'],
  },
  { group: '', resource: 'services', namespaced: true, subresources: ['proxy', 'status'] },
  { group: '', resource: 'secrets', namespaced: true },
  { group: '', resource: 'configmaps', namespaced: true },
  { group: '', resource: 'serviceaccounts', namespaced: true, subresources: ['token'] },
  { group: '', resource: 'namespaces', namespaced: false, subresources: ['status', 'finalize'] },
  { group: '', resource: 'nodes', namespaced: false, subresources: ['proxy', 'status'] },
  { group: '', resource: 'persistentvolumes', namespaced: false },
  { group: '', resource: 'persistentvolumeclaims', namespaced: true },
  { group: '', resource: 'endpoints', namespaced: true },
  { group: '', resource: 'events', namespaced: true },
  { group: '', resource: 'replicationcontrollers', namespaced: true, subresources: ['scale'] },
  { group: '', resource: 'limitranges', namespaced: true },
  { group: '', resource: 'resourcequotas', namespaced: true },
  { group: 'apps', resource: 'deployments', namespaced: true, subresources: ['scale', 'status'] },
  { group: 'apps', resource: 'daemonsets', namespaced: true },
  { group: 'apps', resource: 'statefulsets', namespaced: true, subresources: ['scale'] },
  { group: 'apps', resource: 'replicasets', namespaced: true, subresources: ['scale'] },
  { group: 'batch', resource: 'jobs', namespaced: true },
  { group: 'batch', resource: 'cronjobs', namespaced: true },
  { group: 'rbac.authorization.k8s.io', resource: 'roles', namespaced: true },
  { group: 'rbac.authorization.k8s.io', resource: 'rolebindings', namespaced: true },
  { group: 'rbac.authorization.k8s.io', resource: 'clusterroles', namespaced: false },
  { group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings', namespaced: false },
  { group: 'networking.k8s.io', resource: 'networkpolicies', namespaced: true },
  { group: 'networking.k8s.io', resource: 'ingresses', namespaced: true },
  { group: 'policy', resource: 'poddisruptionbudgets', namespaced: true },
  { group: 'admissionregistration.k8s.io', resource: 'validatingwebhookconfigurations', namespaced: false },
  { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', namespaced: false },
  { group: 'admissionregistration.k8s.io', resource: 'validatingadmissionpolicies', namespaced: false },
  { group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', namespaced: false },
  { group: 'certificates.k8s.io', resource: 'certificatesigningrequests', namespaced: false, subresources: ['approval'] },
  { group: 'authentication.k8s.io', resource: 'tokenreviews', namespaced: false, verbs: ['create'] },
  { group: 'authorization.k8s.io', resource: 'subjectaccessreviews', namespaced: false, verbs: ['create'] },
  { group: 'authorization.k8s.io', resource: 'selfsubjectaccessreviews', namespaced: false, verbs: ['create'] },
  { group: 'coordination.k8s.io', resource: 'leases', namespaced: true },
  { group: 'discovery.k8s.io', resource: 'endpointslices', namespaced: true },
  { group: 'events.k8s.io', resource: 'events', namespaced: true },
  { group: 'storage.k8s.io', resource: 'storageclasses', namespaced: false },
  { group: 'scheduling.k8s.io', resource: 'priorityclasses', namespaced: false },
  { group: 'metrics.k8s.io', resource: 'pods', namespaced: true },
];

/** A name no policy is expected to mention: the probe for "anything else". */
export const FRESH = 'kaudit-probe';

export function catalogEntry(group: string, resource: string): CatalogResource | undefined {
  return CATALOG.find((c) => c.group === group && c.resource === resource);
}

export function groupResourceLabel(group: string, resource: string, subresource = ''): string {
  const r = subresource ? `${resource}/${subresource}` : resource;
  return group === '' ? r : `${r}.${group}`;
}

export interface ProbeIdentity {
  label: string;
  user: RequestUser | null;
}

/**
 * Identities that stand for "anyone": a person, a person with cluster-admin, a workload's service account and an
 * anonymous caller. A policy that silences any of them for a security-relevant request has a blind spot.
 */
export const GENERIC_IDENTITIES: ProbeIdentity[] = [
  { label: 'a user', user: { name: 'kaudit-probe-user', groups: ['system:authenticated'] } },
  { label: 'a cluster admin', user: { name: 'kaudit-probe-admin', groups: ['system:masters', 'system:authenticated'] } },
  {
    label: 'a service account',
    user: { name: `system:serviceaccount:${FRESH}:default`, groups: ['system:serviceaccounts', `system:serviceaccounts:${FRESH}`, 'system:authenticated'] },
  },
  { label: 'an anonymous caller', user: { name: 'system:anonymous', groups: ['system:unauthenticated'] } },
];

/** Control-plane and node identities that produce most of a cluster's read traffic. */
export const SYSTEM_IDENTITIES: ProbeIdentity[] = [
  { label: 'kube-controller-manager', user: { name: 'system:kube-controller-manager', groups: ['system:authenticated'] } },
  { label: 'kube-scheduler', user: { name: 'system:kube-scheduler', groups: ['system:authenticated'] } },
  { label: 'kube-proxy', user: { name: 'system:kube-proxy', groups: ['system:authenticated'] } },
  { label: 'a kubelet', user: { name: 'system:node:node-1', groups: ['system:nodes', 'system:authenticated'] } },
  { label: 'the apiserver', user: { name: 'system:apiserver', groups: ['system:authenticated', 'system:masters'] } },
  {
    label: 'a kube-system controller',
    user: {
      name: 'system:serviceaccount:kube-system:endpointslice-controller',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
    },
  },
  { label: 'an unauthenticated health probe', user: { name: 'system:anonymous', groups: ['system:unauthenticated'] } },
];

/** Is this user a control-plane, node or kube-system identity (the traffic `--from-log` may drop)? */
export function isSystemIdentity(name: string, groups: string[]): boolean {
  if (name === 'system:anonymous' || name === '') return false;
  if (groups.includes('system:nodes')) return true;
  if (name.startsWith('system:serviceaccount:')) return name.startsWith('system:serviceaccount:kube-system:');
  return name.startsWith('system:');
}

/**
 * Known high-volume, low-value requests (leader election, endpoint watches, heartbeats, health checks, discovery):
 * a policy may drop them without failing the catch-all check, and logging them earns a `noisy-reads` warning.
 * Anchored on the traffic the GKE default policy drops.
 */
export interface NoiseClass {
  id: string;
  description: string;
  verbs: string[];
  resources?: { group: string; resource: string; subresource?: string }[];
  nonResourceURLs?: string[];
}

export const NOISE: NoiseClass[] = [
  {
    id: 'leases',
    description: 'leader-election and node-heartbeat leases',
    verbs: ['get', 'list', 'watch', 'update', 'patch'],
    resources: [{ group: 'coordination.k8s.io', resource: 'leases' }],
  },
  {
    id: 'endpoints-reads',
    description: 'endpoints and endpointslices reads and watches',
    verbs: ['get', 'list', 'watch'],
    resources: [
      { group: '', resource: 'endpoints' },
      { group: 'discovery.k8s.io', resource: 'endpointslices' },
    ],
  },
  {
    id: 'events',
    description: 'Kubernetes Event objects (high volume, no security value)',
    verbs: [...RESOURCE_VERBS],
    resources: [
      { group: '', resource: 'events' },
      { group: 'events.k8s.io', resource: 'events' },
    ],
  },
  {
    id: 'health-checks',
    description: 'health, version and discovery endpoints',
    verbs: ['get'],
    nonResourceURLs: [
      '/healthz',
      '/healthz/etcd',
      '/livez',
      '/livez/ping',
      '/readyz',
      '/version',
      '/openapi/v2',
      '/openapi/v3',
      '/api',
      '/apis',
      '/apis/apps/v1',
    ],
  },
];

export function noiseClassOf(a: RequestAttributes): NoiseClass | undefined {
  for (const n of NOISE) {
    if (!n.verbs.includes(a.verb)) continue;
    if (a.resourceRequest) {
      if ((n.resources ?? []).some((r) => r.group === a.apiGroup && r.resource === a.resource && (r.subresource ?? '') === a.subresource)) return n;
    } else if ((n.nonResourceURLs ?? []).some((u) => u === a.path || (u.endsWith('*') && a.path.startsWith(u.slice(0, -1))))) {
      return n;
    }
  }
  return undefined;
}

/** Builds a resource request the way the apiserver's request-info resolver would describe it. */
export function resourceRequest(o: {
  user: RequestUser | null;
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace: string;
  name?: string;
}): RequestAttributes {
  const version = o.group === '' ? 'v1' : 'v1';
  const prefix = o.group === '' ? `/api/${version}` : `/apis/${o.group}/${version}`;
  const ns = o.namespace ? `/namespaces/${o.namespace}` : '';
  const name = o.name ?? '';
  const path = `${prefix}${ns}/${o.resource}${name ? `/${name}` : ''}${o.subresource ? `/${o.subresource}` : ''}`;
  return requestAttributes({
    user: o.user,
    verb: o.verb,
    resourceRequest: true,
    apiGroup: o.group,
    apiVersion: version,
    namespace: o.namespace,
    resource: o.resource,
    subresource: o.subresource ?? '',
    name,
    path,
  });
}

export function nonResourceRequest(user: RequestUser | null, verb: string, path: string): RequestAttributes {
  return requestAttributes({ user, verb, resourceRequest: false, path });
}

/** Requests that name no object: a plain create, list, watch and deletecollection. */
export function verbNamesObject(verb: string, subresource: string): boolean {
  if (subresource !== '') return true;
  return !['create', 'list', 'watch', 'deletecollection'].includes(verb);
}

export function describeRequest(a: RequestAttributes, who?: string): string {
  const by = who ?? (a.user === null ? 'an unauthenticated caller' : a.user.name);
  if (!a.resourceRequest) return `${a.verb} ${a.path} by ${by}`;
  const what = groupResourceLabel(a.apiGroup, a.resource, a.subresource);
  const where = a.namespace === '' ? '' : ` in namespace ${a.namespace}`;
  return `${a.verb} ${what}${where} by ${by}`;
}
