/**
 * Apiserver-shaped traffic for the fleet tests: per cluster and user, reads, then an exec (a pod-exec alert), a Secret
 * read and an RBAC change. Every event has an auditID of its own (one stage each), in time order.
 */
const BASE_MS = Date.UTC(2026, 10, 5, 8, 0, 0);
let seq = 0;

export function event(cluster: string, user: string, over: Record<string, unknown>): Record<string, unknown> {
  const n = ++seq;
  const t = new Date(BASE_MS + n * 1000).toISOString().replace('Z', '000Z');
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: `00000000-0000-4000-a000-${String(n).padStart(12, '0')}`,
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/team-a/configmaps/app',
    verb: 'get',
    user: { username: user, groups: ['system:authenticated'] },
    sourceIPs: ['192.0.2.10'],
    userAgent: 'kubectl/v1.31.0',
    objectRef: { resource: 'configmaps', namespace: 'team-a', name: 'app', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 200 },
    requestReceivedTimestamp: t,
    stageTimestamp: t,
    annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' },
    ...over,
  };
}

/** One cluster's traffic: reads by several users, and per user an exec, a Secret read and an RBAC change. */
export function traffic(cluster: string, users: number, reads: number, role = 'dev'): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (let u = 0; u < users; u++) {
    const user = `${cluster}-${role}-${u}@example.com`;
    for (let r = 0; r < reads; r++) out.push(event(cluster, user, {}));
    out.push(
      event(cluster, user, {
        verb: 'create',
        requestURI: `/api/v1/namespaces/team-a/pods/web-${u}/exec?command=sh&container=web&stdin=true&tty=true`,
        objectRef: { resource: 'pods', subresource: 'exec', namespace: 'team-a', name: `web-${u}`, apiVersion: 'v1' },
        responseStatus: { metadata: {}, code: 101 },
      }),
      event(cluster, user, {
        requestURI: `/api/v1/namespaces/team-a/secrets/db-${u}`,
        objectRef: { resource: 'secrets', namespace: 'team-a', name: `db-${u}`, apiVersion: 'v1' },
      }),
      event(cluster, user, {
        verb: 'create',
        requestURI: '/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings',
        objectRef: { resource: 'rolebindings', apiGroup: 'rbac.authorization.k8s.io', apiVersion: 'v1', namespace: 'team-a', name: `rb-${u}` },
        responseStatus: { metadata: {}, code: 201 },
      }),
    );
  }
  return out;
}
