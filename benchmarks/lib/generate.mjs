// A realistic mix of kube-apiserver audit events (audit.k8s.io/v1), deterministic for a seed: controllers and
// kubelets (the bulk: leases, watches, status updates), service accounts, people using kubectl (reads, exec,
// secrets, RBAC, deployments with full pod specs at Request level), anonymous probes and denied requests.
// Used by the benchmarks and to make fixtures/sample/audit.log.

export function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const NODES = Array.from({ length: 12 }, (_, i) => `ip-10-0-${(i * 7) % 250}-${(i * 13) % 250}.ec2.internal`);
const NAMESPACES = ['default', 'payments', 'web', 'data', 'monitoring', 'kube-system', 'ingress-nginx', 'cert-manager'];
const PEOPLE = [
  { username: 'alice@example.com', groups: ['system:authenticated', 'platform-admins'], ip: '203.0.113.10' },
  { username: 'bob@example.com', groups: ['system:authenticated', 'developers'], ip: '198.51.100.23' },
  { username: 'carol@example.com', groups: ['system:authenticated', 'sre'], ip: '198.51.100.77' },
  { username: 'ci-deployer', groups: ['system:authenticated', 'ci'], ip: '10.0.5.9' },
];
const CONTROLLERS = [
  'replicaset-controller',
  'deployment-controller',
  'endpoint-controller',
  'daemon-set-controller',
  'job-controller',
  'namespace-controller',
  'generic-garbage-collector',
];
const KUBECTL_UA = 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350';

function uuid(r) {
  const h = () =>
    Math.floor(r() * 0x10000)
      .toString(16)
      .padStart(4, '0');
  return `${h()}${h()}-${h()}-4${h().slice(1)}-a${h().slice(1)}-${h()}${h()}${h()}`;
}

function pick(r, a) {
  return a[Math.floor(r() * a.length)];
}

function ts(us) {
  const ms = Math.floor(us / 1000);
  return new Date(ms).toISOString().slice(0, 19) + '.' + String(us % 1_000_000).padStart(6, '0') + 'Z';
}

function podSpec(r, name, privileged) {
  return {
    serviceAccountName: 'default',
    containers: [
      {
        name,
        image: `registry.example.com/${name}:1.${Math.floor(r() * 20)}.${Math.floor(r() * 9)}`,
        ports: [{ containerPort: 8080, protocol: 'TCP' }],
        env: [
          { name: 'LOG_LEVEL', value: 'info' },
          { name: 'REGION', value: 'eu-west-1' },
        ],
        resources: { limits: { cpu: '500m', memory: '512Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
        volumeMounts: [{ name: 'config', mountPath: '/etc/app' }],
        securityContext: privileged ? { privileged: true } : { runAsNonRoot: true, allowPrivilegeEscalation: false },
        livenessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 10 },
      },
    ],
    volumes: privileged ? [{ name: 'config', hostPath: { path: '/etc' } }] : [{ name: 'config', configMap: { name: `${name}-config` } }],
    terminationGracePeriodSeconds: 30,
    dnsPolicy: 'ClusterFirst',
  };
}

/** Returns a function producing the next event (object). ~rate events per second of event time. */
/**
 * `people` is the share of requests made by people with kubectl (the rest: kubelets, controllers, service accounts,
 * probes). In a production cluster it is a few percent; the sample log uses a higher share to show more.
 */
export function eventStream({ seed = 42, start = Date.parse('2026-11-01T00:00:00Z') * 1000, rate = 50, people = 0.24 } = {}) {
  const machine = 1 - people;
  const r = rng(seed);
  let now = start;
  const queue = [];
  function base(verb, user, uri, objectRef, code, extra = {}) {
    const t = now;
    return {
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: uuid(r),
      stage: 'ResponseComplete',
      requestURI: uri,
      verb,
      user,
      sourceIPs: [extra.ip ?? '10.0.0.2'],
      userAgent: extra.ua ?? 'kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/system:serviceaccount:kube-system:generic-garbage-collector',
      objectRef,
      responseStatus:
        code === 200 || code === 201
          ? { metadata: {}, code }
          : {
              metadata: {},
              status: 'Failure',
              message: `${objectRef?.resource ?? 'request'} is forbidden`,
              reason: code === 403 ? 'Forbidden' : 'NotFound',
              code,
            },
      requestReceivedTimestamp: ts(t),
      stageTimestamp: ts(t + 1000 + Math.floor(r() * 20000)),
      annotations: {
        'authorization.k8s.io/decision': code === 403 ? 'forbid' : 'allow',
        'authorization.k8s.io/reason':
          code === 403 ? '' : 'RBAC: allowed by ClusterRoleBinding "system:controller" of ClusterRole "system:controller" to ServiceAccount',
      },
    };
  }
  function next() {
    if (queue.length) return queue.shift();
    now += Math.max(1, Math.floor((-Math.log(1 - r()) * 1e6) / rate));
    const x = r();
    if (x < (0.3 * machine) / 0.76) {
      const node = pick(r, NODES);
      const u = { username: `system:node:${node}`, groups: ['system:nodes', 'system:authenticated'] };
      return base(
        'update',
        u,
        `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${node}?timeout=10s`,
        { resource: 'leases', namespace: 'kube-node-lease', name: node, apiGroup: 'coordination.k8s.io', apiVersion: 'v1' },
        200,
        { ip: '10.0.1.' + Math.floor(r() * 250), ua: 'kubelet/v1.30.2 (linux/amd64) kubernetes/3968350' },
      );
    }
    if (x < (0.5 * machine) / 0.76) {
      const c = pick(r, CONTROLLERS);
      const ns = pick(r, NAMESPACES);
      const res = pick(r, ['pods', 'endpoints', 'replicasets', 'configmaps', 'services']);
      const grp = res === 'replicasets' ? 'apps' : '';
      const u = {
        username: `system:serviceaccount:kube-system:${c}`,
        uid: uuid(r),
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      };
      const verb = pick(r, ['get', 'list', 'update', 'patch']);
      return base(
        verb,
        u,
        `/api${grp ? 's/' + grp : ''}/v1/namespaces/${ns}/${res}${verb === 'list' ? '' : '/app-' + Math.floor(r() * 40)}`,
        { resource: res, namespace: ns, name: verb === 'list' ? undefined : `app-${Math.floor(r() * 40)}`, apiGroup: grp || undefined, apiVersion: 'v1' },
        200,
        { ua: `kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/system:serviceaccount:kube-system:${c}` },
      );
    }
    if (x < (0.62 * machine) / 0.76) {
      // A watch: ResponseStarted then ResponseComplete.
      const node = pick(r, NODES);
      const u = { username: `system:node:${node}`, groups: ['system:nodes', 'system:authenticated'] };
      const res = pick(r, ['pods', 'services', 'nodes', 'configmaps']);
      const e1 = base(
        'watch',
        u,
        `/api/v1/${res}?allowWatchBookmarks=true&resourceVersion=${Math.floor(r() * 1e7)}&timeout=7m&watch=true`,
        { resource: res, apiVersion: 'v1' },
        200,
        { ip: '10.0.1.' + Math.floor(r() * 250), ua: 'kubelet/v1.30.2 (linux/amd64) kubernetes/3968350' },
      );
      e1.stage = 'ResponseStarted';
      const e2 = { ...e1, stage: 'ResponseComplete', stageTimestamp: ts(now + 420_000_000) };
      queue.push(e2);
      return e1;
    }
    if (x < (0.72 * machine) / 0.76) {
      const ns = pick(r, NAMESPACES.slice(0, 5));
      const u = {
        username: `system:serviceaccount:${ns}:app`,
        uid: uuid(r),
        groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
      };
      const res = pick(r, ['configmaps', 'secrets', 'pods']);
      return base(
        'get',
        u,
        `/api/v1/namespaces/${ns}/${res}/app-config`,
        { resource: res, namespace: ns, name: 'app-config', apiVersion: 'v1' },
        r() < 0.9 ? 200 : 404,
        { ip: '10.0.3.' + Math.floor(r() * 250), ua: 'app/1.4 (linux/amd64)' },
      );
    }
    if (x < machine) {
      const u = { username: 'system:anonymous', groups: ['system:unauthenticated'] };
      const path = pick(r, ['/healthz', '/livez', '/readyz', '/version']);
      const e = base('get', u, path, undefined, 200, { ip: '10.0.0.' + Math.floor(r() * 5), ua: 'kube-probe/1.30' });
      delete e.objectRef;
      return e;
    }
    // People.
    const p = pick(r, PEOPLE);
    const u = { username: p.username, groups: p.groups };
    const ns = pick(r, NAMESPACES);
    const y = r();
    const opts = { ip: p.ip, ua: KUBECTL_UA };
    if (y < 0.35) return base(pick(r, ['get', 'list']), u, `/api/v1/namespaces/${ns}/pods`, { resource: 'pods', namespace: ns, apiVersion: 'v1' }, 200, opts);
    if (y < 0.45) {
      const pod = `web-${Math.floor(r() * 30)}`;
      const cmd = pick(r, [['sh'], ['bash'], ['cat', '/var/run/secrets/kubernetes.io/serviceaccount/token'], ['ls', '-la'], ['env']]);
      const q = cmd.map((c) => 'command=' + encodeURIComponent(c)).join('&');
      const e1 = base(
        'create',
        u,
        `/api/v1/namespaces/${ns}/pods/${pod}/exec?${q}&container=web&stdin=true&stdout=true&tty=true`,
        { resource: 'pods', namespace: ns, name: pod, subresource: 'exec', apiVersion: 'v1' },
        101,
        opts,
      );
      e1.stage = 'ResponseStarted';
      e1.responseStatus = { metadata: {}, code: 101 };
      queue.push({ ...e1, stage: 'ResponseComplete', stageTimestamp: ts(now + 30_000_000) });
      return e1;
    }
    if (y < 0.6)
      return base(
        pick(r, ['get', 'list']),
        u,
        `/api/v1/namespaces/${ns}/secrets`,
        { resource: 'secrets', namespace: ns, name: y < 0.5 ? 'db-password' : undefined, apiVersion: 'v1' },
        p.username.startsWith('bob') ? 403 : 200,
        opts,
      );
    if (y < 0.68) {
      const name = `binding-${Math.floor(r() * 100)}`;
      const e = base(
        'create',
        u,
        `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`,
        { resource: 'rolebindings', namespace: ns, name, apiGroup: 'rbac.authorization.k8s.io', apiVersion: 'v1' },
        201,
        opts,
      );
      e.level = 'Request';
      e.requestObject = {
        kind: 'RoleBinding',
        apiVersion: 'rbac.authorization.k8s.io/v1',
        metadata: { name, namespace: ns },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: r() < 0.2 ? 'cluster-admin' : 'view' },
        subjects: [{ kind: 'User', name: 'dave@example.com', apiGroup: 'rbac.authorization.k8s.io' }],
      };
      return e;
    }
    if (y < 0.8) {
      const name = `svc-${Math.floor(r() * 50)}`;
      const e = base(
        'create',
        u,
        `/apis/apps/v1/namespaces/${ns}/deployments`,
        { resource: 'deployments', namespace: ns, name, apiGroup: 'apps', apiVersion: 'v1' },
        201,
        opts,
      );
      e.level = 'Request';
      e.requestObject = {
        kind: 'Deployment',
        apiVersion: 'apps/v1',
        metadata: { name, namespace: ns, labels: { app: name, team: 'platform' } },
        spec: { replicas: 3, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: podSpec(r, name, r() < 0.1) } },
      };
      return e;
    }
    if (y < 0.9)
      return base(
        pick(r, ['delete', 'patch']),
        u,
        `/api/v1/namespaces/${ns}/configmaps/app-config`,
        { resource: 'configmaps', namespace: ns, name: 'app-config', apiVersion: 'v1' },
        r() < 0.3 ? 403 : 200,
        opts,
      );
    return base(
      'get',
      u,
      `/api/v1/namespaces/${ns}/pods/web-1/log?container=web`,
      { resource: 'pods', namespace: ns, name: 'web-1', subresource: 'log', apiVersion: 'v1' },
      200,
      opts,
    );
  }
  return next;
}
