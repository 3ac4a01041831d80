import { randomUUID } from 'node:crypto';

/** An exec into a kube-system pod, both stages, as the apiserver's webhook sends it (the bundled pod-exec rule fires: high). */
export function execEventList(opts: { user?: string; pod?: string; when?: Date } = {}): { body: string; auditID: string } {
  const auditID = randomUUID();
  const t = (opts.when ?? new Date()).toISOString().replace('Z', '000Z');
  const pod = opts.pod ?? 'coredns-7d';
  const base = {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID,
    requestURI: `/api/v1/namespaces/kube-system/pods/${pod}/exec?command=sh&container=coredns&stdin=true&stdout=true&tty=true`,
    verb: 'create',
    user: { username: opts.user ?? 'mallory@example.com', groups: ['system:authenticated'] },
    sourceIPs: ['198.51.100.66'],
    userAgent: 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350',
    objectRef: { resource: 'pods', namespace: 'kube-system', name: pod, subresource: 'exec', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 101 },
    requestReceivedTimestamp: t,
    stageTimestamp: t,
    annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' },
  };
  const items = [
    { ...base, stage: 'ResponseStarted' },
    { ...base, stage: 'ResponseComplete' },
  ];
  return { body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items }), auditID };
}

export async function postWebhook(base: string, body: string, token?: string): Promise<number> {
  const res = await fetch(`${base}/api/v1/audit/webhook`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
  });
  await res.text();
  return res.status;
}
