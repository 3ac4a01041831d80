// The mixed log of issue #21: the generator's production-like traffic (lib/generate.mjs: Metadata-level reads,
// leases, watches, exec, people with kubectl), with some of its writes logged at RequestResponse with both bodies
// and some of its lists with their whole response, as a RequestResponse policy for workloads would log them.
// Deterministic for a seed. Sizes: ~60% of events under 1 KB, ~5% writes of 3-5 KB, ~0.7% lists of 20-90 KB.
import { EVENT_FIELD_ORDER } from '../../dist/events/types.js';
import { eventStream, rng } from './generate.mjs';

function pod(r, ns, name, i) {
  return {
    metadata: {
      name: `${name}-${i}`,
      namespace: ns,
      uid:
        `${(i * 2654435761) >>> 0}`.padStart(10, '0') +
        '-1f2e-4c3d-9a8b-' +
        Math.floor(r() * 1e12)
          .toString(16)
          .padStart(12, '0'),
      resourceVersion: String(Math.floor(r() * 1e8)),
      creationTimestamp: '2026-10-30T08:12:44Z',
      labels: { app: name, 'pod-template-hash': '7d9f8c6b5d', team: 'platform' },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-10-30T08:12:40Z' },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: `${name}-7d9f8c6b5d`,
          uid: 'c1d2e3f4-0000-4000-8000-000000000001',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      containers: [
        {
          name,
          image: `registry.example.com/${name}:1.${i % 20}.3`,
          ports: [{ containerPort: 8080, protocol: 'TCP' }],
          resources: { limits: { cpu: '500m', memory: '512Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
          volumeMounts: [{ name: 'kube-api-access', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
          securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false },
        },
      ],
      serviceAccountName: 'default',
      nodeName: `ip-10-0-${i % 250}-${(i * 7) % 250}.ec2.internal`,
      volumes: [{ name: 'kube-api-access', projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] } }],
    },
    status: {
      phase: 'Running',
      podIP: `10.1.${i % 250}.${(i * 3) % 250}`,
      hostIP: `10.0.${i % 250}.${(i * 7) % 250}`,
      startTime: '2026-10-30T08:12:45Z',
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: '2026-10-30T08:12:45Z' },
        { type: 'Ready', status: 'True', lastTransitionTime: '2026-10-30T08:12:51Z' },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: '2026-10-30T08:12:51Z' },
        { type: 'PodScheduled', status: 'True', lastTransitionTime: '2026-10-30T08:12:44Z' },
      ],
      containerStatuses: [
        {
          name,
          ready: true,
          restartCount: i % 3,
          image: `registry.example.com/${name}:1.${i % 20}.3`,
          started: true,
          state: { running: { startedAt: '2026-10-30T08:12:50Z' } },
        },
      ],
    },
  };
}

// The generator appends bodies last; rebuilt in the apiserver's order (EVENT_FIELD_ORDER), as a real log has them.
function inGoOrder(e) {
  const out = {};
  for (const k of EVENT_FIELD_ORDER) if (e[k] !== undefined) out[k] = e[k];
  return out;
}

/** Returns a function producing the next event (object) of the mixed log. */
export function mixedStream({ seed = 1, rate = 12, people = 0.04 } = {}) {
  const next = eventStream({ seed, rate, people });
  const r = rng(seed * 7919 + 3);
  return () => {
    const e = next();
    const ref = e.objectRef;
    if (!ref || e.stage !== 'ResponseComplete') return inGoOrder(e);
    const name = ref.name ?? 'app';
    if ((e.verb === 'update' || e.verb === 'patch') && ref.resource !== 'leases' && r() < 0.45) {
      // A workload write at RequestResponse: the object sent and the object stored.
      e.level = 'RequestResponse';
      const obj = { kind: 'Pod', apiVersion: 'v1', ...pod(r, ref.namespace ?? 'default', name, Math.floor(r() * 1000)) };
      e.requestObject = e.verb === 'patch' ? { metadata: { labels: obj.metadata.labels }, spec: { containers: obj.spec.containers } } : obj;
      e.responseObject = obj;
    } else if (e.verb === 'list' && r() < 0.12) {
      // A list answered in full: 10 to 60 objects.
      e.level = 'RequestResponse';
      const n = 10 + Math.floor(r() * 50);
      e.responseObject = {
        kind: 'PodList',
        apiVersion: 'v1',
        metadata: { resourceVersion: String(Math.floor(r() * 1e8)) },
        items: Array.from({ length: n }, (_, i) => pod(r, ref.namespace ?? 'default', 'web', i)),
      };
    }
    return inGoOrder(e);
  };
}
