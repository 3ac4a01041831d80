import { alertEventFields } from '../../src/detect/alert.js';
/**
 * A deterministic audit-event stream for the Kafka tests and benchmark, and a small detector whose alerts can be
 * counted in advance: so "no alert lost or doubled" is an exact comparison.
 */
import type { Alert, Detector } from '../../src/detect/alert.js';
import type { NormalisedEvent } from '../../src/events/types.js';

const BASE_MS = Date.UTC(2026, 10, 1, 0, 0, 0);

export function auditID(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

function ts(ms: number, micros: number): string {
  return new Date(ms).toISOString().slice(0, 19) + '.' + String((ms % 1000) * 1000 + (micros % 1000)).padStart(6, '0') + 'Z';
}

export interface StreamMessage {
  cluster: string;
  user: string;
  /** One JSON document: an Event or an EventList. */
  value: string;
  /** Events in it. */
  events: number;
}

export interface Stream {
  messages: StreamMessage[];
  events: number;
  /** Alerts TestDetector must raise for the whole stream, each exactly once. */
  expectedAlerts: number;
  auditIDs: string[];
}

function event(n: number, cluster: string, user: string, ms: number, over: Record<string, unknown>): Record<string, unknown> {
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: auditID(n),
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/team-a/configmaps/app',
    verb: 'get',
    user: { username: user, groups: ['system:authenticated'] },
    sourceIPs: ['203.0.113.7'],
    userAgent: 'kubectl/v1.31.0',
    objectRef: { resource: 'configmaps', namespace: 'team-a', name: 'app', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 200 },
    requestReceivedTimestamp: ts(ms, n),
    stageTimestamp: ts(ms + 5, n),
    annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' },
    ...over,
  };
}

/**
 * `total` events over 2 clusters and 40 users: mostly reads, every 100th a Secret deletion (one alert each), and bursts
 * of 5 exec requests sent as one EventList message (one alert per burst: each burst has its own minute and identity).
 */
export function makeStream(total: number, opts: { burstEvery?: number } = {}): Stream {
  const burstEvery = opts.burstEvery ?? 500;
  const messages: StreamMessage[] = [];
  const auditIDs: string[] = [];
  let n = 0;
  let alerts = 0;
  let bursts = 0;
  while (n < total) {
    const cluster = Math.floor(n / 1000) % 2 === 0 ? 'prod-eu' : 'prod-us';
    const user = `user-${n % 40}@example.com`;
    if (n > 0 && n % burstEvery === 0 && total - n >= 5) {
      // A burst gets a minute of its own, far from the reads' time range, so no two bursts share a window.
      const minuteMs = BASE_MS + (10_000 + bursts) * 60_000;
      bursts++;
      const items = [];
      for (let k = 0; k < 5; k++) {
        auditIDs.push(auditID(n));
        items.push(
          event(n++, cluster, user, minuteMs + k * 1000, {
            verb: 'create',
            requestURI: '/api/v1/namespaces/team-a/pods/web-1/exec?command=sh&container=app&stdin=true&tty=true',
            objectRef: { resource: 'pods', subresource: 'exec', namespace: 'team-a', name: 'web-1', apiVersion: 'v1' },
            responseStatus: { metadata: {}, code: 101 },
          }),
        );
      }
      alerts++;
      messages.push({ cluster, user, value: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items }), events: 5 });
      continue;
    }
    const del = n % 100 === 7;
    if (del) alerts++;
    auditIDs.push(auditID(n));
    const e = event(
      n,
      cluster,
      user,
      BASE_MS + n * 10,
      del
        ? {
            verb: 'delete',
            requestURI: `/api/v1/namespaces/team-a/secrets/s-${n}`,
            objectRef: { resource: 'secrets', namespace: 'team-a', name: `s-${n}`, apiVersion: 'v1' },
          }
        : {},
    );
    n++;
    messages.push({ cluster, user, value: JSON.stringify(e), events: 1 });
  }
  return { messages, events: n, expectedAlerts: alerts, auditIDs };
}

function alertOf(rule: string, e: NormalisedEvent, groupKey: string): Alert {
  return {
    rule,
    title: rule,
    severity: 'high',
    tags: [],
    summary: `${e.user} ${e.verb} ${e.resource}/${e.name}`,
    ...alertEventFields(e),
    objectRef: { resource: e.resource, namespace: e.namespace, name: e.name },
    groupKey,
  };
}

/**
 * Two rules: `test.secret-deleted` (stateless) and `test.exec-burst` (stateful: 5 execs by one identity within one
 * minute of event time), whose window state is per cluster/user: the partition key.
 */
export class TestDetector implements Detector {
  private windows = new Map<string, { minute: number; n: number }>();
  detect(events: readonly NormalisedEvent[]): Alert[] {
    const out: Alert[] = [];
    for (const e of events) {
      if (e.verb === 'delete' && e.resource === 'secrets') out.push(alertOf('test.secret-deleted', e, `secret-deleted/${e.auditID}`));
      if (e.resource === 'pods' && e.subresource === 'exec') {
        const key = `${e.cluster}/${e.user}`;
        const minute = Math.floor(e.timeMicros / 60_000_000);
        let w = this.windows.get(key);
        if (!w || w.minute !== minute) this.windows.set(key, (w = { minute, n: 0 }));
        if (++w.n === 5) out.push(alertOf('test.exec-burst', e, `exec-burst/${key}/${minute}`));
      }
    }
    return out;
  }
}
