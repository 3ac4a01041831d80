/**
 * A realistic, deterministic audit log of a small fleet for the store tests: several clusters, many users, exec and
 * attach sessions (with their stages), Secret reads and lists, RBAC changes, denied requests, node and controller
 * chatter, requests of one microsecond (ties in time order), spread over three days (several daily indices, timelines
 * past six hours). Same seed, same log.
 */
export interface TrafficOptions {
  events?: number;
  clusters?: string[];
  seed?: number;
  /** First request time (ms since the epoch). */
  startMs?: number;
  spanMs?: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    s ^= s + Math.imul(s ^ (s >>> 7), s | 61);
    return ((s ^ (s >>> 14)) >>> 0) / 4294967296;
  };
}

const iso = (us: number) => new Date(Math.floor(us / 1000)).toISOString().replace(/\.\d{3}Z$/, `.${String(us % 1_000_000).padStart(6, '0')}Z`);

export interface FleetEvent {
  cluster: string;
  /** The audit event, as the apiserver logs it. */
  event: Record<string, unknown>;
}

/** The fleet's audit events, in log order. */
export function fleetTraffic(o: TrafficOptions = {}): FleetEvent[] {
  const r = rng(o.seed ?? 7);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const clusters = o.clusters ?? ['prod-eu', 'prod-us', 'staging'];
  const humans = Array.from({ length: 24 }, (_, i) => `${['alice', 'bob', 'carol', 'dave', 'erin', 'frank'][i % 6]}${i >= 6 ? i : ''}@example.com`);
  const namespaces = ['payments', 'checkout', 'kube-system', 'default', 'monitoring', 'team-a', 'team-b'];
  const n = o.events ?? 3000;
  const start = (o.startMs ?? Date.UTC(2026, 10, 2, 20, 0, 0)) * 1000;
  const span = (o.spanMs ?? 3 * 86_400_000) * 1000;
  const out: FleetEvent[] = [];
  let k = 0;
  let prevT = start;
  for (let i = 0; i < n; i++) {
    // Every 50th request starts in the same microsecond as the one before: ties in time order.
    const t = i % 50 === 49 ? prevT : start + Math.floor((span * i) / n) + Math.floor(r() * 1000);
    prevT = t;
    const cluster = pick(clusters);
    // Distinct per seed: two logs of different seeds share no request.
    const id = `${(0x10000000 + k++).toString(16)}-${((o.seed ?? 7) & 0xffff).toString(16).padStart(4, '0')}-4000-8000-${String(i).padStart(12, '0')}`;
    const kind = r();
    const ns = pick(namespaces);
    const user = pick(humans);
    const ip = `203.0.113.${1 + Math.floor(r() * 40)}`;
    const base = {
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: id,
      requestReceivedTimestamp: iso(t),
      annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' },
    };
    const stages = (ev: Record<string, unknown>, list: string[], code: number) =>
      list.forEach((stage, s) =>
        out.push({
          cluster,
          event: {
            ...base,
            ...ev,
            stage,
            stageTimestamp: iso(t + 1000 * (s + 1)),
            ...(stage === 'RequestReceived' ? {} : { responseStatus: { metadata: {}, code } }),
          },
        }),
      );
    if (kind < 0.08) {
      const pod = `web-${Math.floor(r() * 30)}`;
      const sub = r() < 0.8 ? 'exec' : 'attach';
      const denied = r() < 0.15;
      stages(
        {
          verb: 'create',
          requestURI: `/api/v1/namespaces/${ns}/pods/${pod}/${sub}?command=sh&container=app&stdin=true&tty=true`,
          user: { username: user, groups: ['system:authenticated', 'sre'] },
          sourceIPs: [ip],
          userAgent: 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350',
          objectRef: { resource: 'pods', namespace: ns, name: pod, apiVersion: 'v1', subresource: sub },
          ...(denied ? { annotations: { 'authorization.k8s.io/decision': 'forbid', 'authorization.k8s.io/reason': '' } } : {}),
        },
        denied
          ? ['RequestReceived', 'ResponseComplete']
          : r() < 0.5
            ? ['RequestReceived', 'ResponseStarted']
            : ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
        denied ? 403 : 101,
      );
    } else if (kind < 0.18) {
      const list = r() < 0.4;
      const name = `db-credentials-${Math.floor(r() * 5)}`;
      stages(
        {
          verb: list ? 'list' : 'get',
          requestURI: list ? `/api/v1/namespaces/${ns}/secrets` : `/api/v1/namespaces/${ns}/secrets/${name}`,
          user: { username: r() < 0.5 ? user : `system:serviceaccount:${ns}:ci`, groups: ['system:authenticated'] },
          sourceIPs: [ip],
          userAgent: 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350',
          objectRef: { resource: 'secrets', namespace: ns, ...(list ? {} : { name }), apiVersion: 'v1' },
        },
        r() < 0.5 ? ['RequestReceived', 'ResponseComplete'] : ['ResponseComplete'],
        r() < 0.1 ? 403 : 200,
      );
    } else if (kind < 0.24) {
      const resource = pick(['roles', 'rolebindings', 'clusterroles', 'clusterrolebindings']);
      const cluster_scoped = resource.startsWith('cluster');
      const verb = pick(['create', 'update', 'patch', 'delete']);
      const name = `${resource.slice(0, -1)}-${Math.floor(r() * 9)}`;
      stages(
        {
          verb,
          requestURI: `/apis/rbac.authorization.k8s.io/v1/${cluster_scoped ? '' : `namespaces/${ns}/`}${resource}${verb === 'create' ? '' : `/${name}`}`,
          user: { username: user, groups: ['system:authenticated', 'platform'] },
          sourceIPs: [ip],
          userAgent: 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350',
          objectRef: { resource, ...(cluster_scoped ? {} : { namespace: ns }), name, apiGroup: 'rbac.authorization.k8s.io', apiVersion: 'v1' },
        },
        ['ResponseComplete'],
        verb === 'create' ? 201 : 200,
      );
    } else if (kind < 0.4) {
      stages(
        {
          verb: pick(['get', 'list', 'watch']),
          requestURI: `/api/v1/namespaces/${ns}/pods`,
          user: { username: r() < 0.3 ? user : `system:serviceaccount:kube-system:${pick(['replicaset-controller', 'deployment-controller'])}` },
          sourceIPs: [r() < 0.5 ? ip : '10.0.0.12'],
          userAgent: r() < 0.5 ? 'kubectl/v1.30.2' : 'kube-controller-manager/v1.30.2',
          objectRef: { resource: 'pods', namespace: ns, apiVersion: 'v1' },
        },
        ['ResponseComplete'],
        200,
      );
    } else if (kind < 0.46) {
      stages(
        {
          verb: 'create',
          requestURI: `/apis/apps/v1/namespaces/${ns}/deployments`,
          user: { username: r() < 0.5 ? 'ci-deployer' : user, groups: ['system:authenticated'] },
          sourceIPs: [ip],
          userAgent: 'argocd/v2.11',
          objectRef: { resource: 'deployments', namespace: ns, name: `svc-${Math.floor(r() * 40)}`, apiGroup: 'apps', apiVersion: 'v1' },
        },
        ['ResponseComplete'],
        201,
      );
    } else {
      const node = `node-${Math.floor(r() * 12)}`;
      stages(
        {
          verb: 'update',
          requestURI: `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${node}?timeout=10s`,
          user: { username: `system:node:${node}`, groups: ['system:nodes', 'system:authenticated'] },
          sourceIPs: [`10.0.1.${Math.floor(r() * 12)}`],
          userAgent: 'kubelet/v1.30.2 (linux/amd64) kubernetes/3968350',
          objectRef: { resource: 'leases', namespace: 'kube-node-lease', name: node, apiGroup: 'coordination.k8s.io', apiVersion: 'v1' },
        },
        ['ResponseComplete'],
        200,
      );
    }
  }
  return out;
}
