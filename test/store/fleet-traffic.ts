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

/**
 * Pod Security and admission-policy traffic for the report's corner cases, in every cluster: one request refused
 * and audited for the same checks (its rows of one check must count one request), audit and refusal at different
 * violation levels, one policy failing through two bindings, unknown checks twice in one request, parse errors and
 * exemptions, requests of one group in the same microsecond, a group with more than 100 users and 30 pods, and
 * more groups than one page of a composite aggregation. Deterministic.
 */
export function admissionTraffic(o: { clusters?: string[]; startMs?: number } = {}): FleetEvent[] {
  const clusters = o.clusters ?? ['prod-eu', 'prod-us', 'staging'];
  const start = (o.startMs ?? Date.UTC(2026, 10, 3, 6, 0, 0)) * 1000;
  const out: FleetEvent[] = [];
  let k = 0;
  const psa = (level: string, text: string) => `would violate PodSecurity "${level}:latest": ${text}`;
  const hostPath = 'hostPath volumes (volume "data")';
  const nonRoot = 'runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true)';
  const seccompSet = 'seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")';
  const seccompUnconfined = 'seccompProfile (pod "p" must not set securityContext.seccompProfile.type to "Unconfined")';
  for (const cluster of clusters) {
    const pod = (o: { t: number; ns: string; name: string; user: string; owner?: string; annotations?: Record<string, string>; refused?: string }): void => {
      const meta = { name: o.name, namespace: o.ns, ...(o.owner ? { ownerReferences: [{ kind: 'ReplicaSet', name: o.owner, controller: true }] } : {}) };
      const body = {
        kind: 'Pod',
        apiVersion: 'v1',
        metadata: meta,
        spec: { volumes: [{ name: 'data', hostPath: { path: '/data' } }], containers: [{ name: 'app', image: 'app:1' }] },
      };
      out.push({
        cluster,
        event: {
          kind: 'Event',
          apiVersion: 'audit.k8s.io/v1',
          level: 'Request',
          auditID: `adm00000-${(cluster.length * 7919 + cluster.charCodeAt(0)).toString(16).padStart(4, '0')}-4000-8000-${String(k++).padStart(12, '0')}`,
          stage: 'ResponseComplete',
          requestURI: `/api/v1/namespaces/${o.ns}/pods`,
          verb: 'create',
          user: { username: o.user, groups: ['system:authenticated'] },
          sourceIPs: ['203.0.113.30'],
          userAgent: 'kubectl/v1.30.2',
          objectRef: { resource: 'pods', namespace: o.ns, name: o.name, apiVersion: 'v1' },
          requestObject: body,
          responseStatus: o.refused
            ? { metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403, message: `pods "${o.name}" is forbidden: violates PodSecurity ${o.refused}` }
            : { metadata: {}, code: 201 },
          requestReceivedTimestamp: iso(o.t),
          stageTimestamp: iso(o.t + 30_000),
          annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '', ...o.annotations },
        },
      });
    };
    // edge: audit=restricted, enforce=baseline. 30 pods of Deployment edge-web by 12 people; every fifth refused by
    // baseline for the hostPath it is also audited for; pairs of requests in the same microsecond.
    for (let i = 0; i < 30; i++) {
      const refused = i % 5 === 0;
      pod({
        t: start + Math.floor(i / 2) * 60_000_000,
        ns: 'edge',
        name: `edge-web-5f7c9d8b6-p${String(i).padStart(3, '0')}`,
        user: `dev${i % 12}@example.com`,
        owner: 'edge-web-5f7c9d8b6',
        annotations: { 'pod-security.kubernetes.io/audit-violations': psa('restricted', `${hostPath}, ${nonRoot}`) },
        refused: refused ? `"baseline:latest": ${hostPath}` : undefined,
      });
    }
    // gate: audit=baseline, enforce=restricted: seccomp audited at baseline, refused at restricted, in one request.
    for (let i = 0; i < 4; i++)
      pod({
        t: start + 3_600_000_000 + i * 1_000_000,
        ns: 'gate',
        name: `gate-${i}`,
        user: 'erin@example.com',
        annotations: { 'pod-security.kubernetes.io/audit-violations': psa('baseline', seccompUnconfined) },
        refused: `"restricted:latest": ${seccompSet}, ${nonRoot}`,
      });
    // policy: one policy failing through two bindings; unknown checks twice; a parse error; a runtime-class exemption.
    for (let i = 0; i < 3; i++)
      pod({
        t: start + 7_200_000_000 + i * 1_000_000,
        ns: 'policy',
        name: `job-${i}`,
        user: 'ci@example.com',
        annotations: {
          'validation.policy.admission.k8s.io/validation_failure': JSON.stringify(
            ['bind-a', 'bind-b'].map((binding) => ({
              message: `failed expression (${binding})`,
              policy: 'no-host-path',
              binding,
              expressionIndex: 0,
              validationActions: ['Audit'],
            })),
          ),
          'pod-security.kubernetes.io/audit-violations': psa('restricted', 'futureCheckA (container "app" does A), futureCheckB (container "app" does B)'),
        },
      });
    pod({
      t: start + 7_300_000_000,
      ns: 'policy',
      name: 'odd',
      user: 'ci@example.com',
      annotations: { 'pod-security.kubernetes.io/error': 'Failed to parse policy: bad level "strict"' },
    });
    pod({
      t: start + 7_400_000_000,
      ns: 'policy',
      name: 'gvisor',
      user: 'ci@example.com',
      annotations: { 'pod-security.kubernetes.io/exempt': 'runtimeClass' },
    });
    // crowd (first cluster): 110 users deploying one workload's pods; sandbox: 80 pods of their own (a group each).
    for (let i = 0; i < (cluster === clusters[0] ? 110 : 0); i++)
      pod({
        t: start + 10_800_000_000 + i * 1_000_000,
        ns: 'crowd',
        name: `crowd-7b8c9d6f5-${i}`,
        user: `u${i}@example.com`,
        owner: 'crowd-7b8c9d6f5',
        annotations: { 'pod-security.kubernetes.io/audit-violations': psa('restricted', nonRoot) },
      });
    for (let i = 0; i < 80; i++)
      pod({
        t: start + 14_400_000_000 + i * 1_000_000,
        ns: 'sandbox',
        name: `sb-${i}`,
        user: 'frank@example.com',
        annotations: { 'pod-security.kubernetes.io/audit-violations': psa('restricted', nonRoot) },
      });
  }
  return out;
}
