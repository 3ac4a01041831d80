import { writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanup,
  eventList,
  execDetector,
  feed,
  makeCerts,
  makeEvents,
  realOrTestDetector,
  request,
  sleep,
  startServer,
  storedAlertIds,
  tempDir,
  type Certs,
  type FeedClient,
  type Server,
} from './helpers.js';

const READER = 'reader-0123456789abcdef0123';
const READER_PROD = 'reader-prod-0123456789abcdef';
const INGEST = 'ingest-0123456789abcdef01234';

let certs: Certs;
let dir: string;

beforeAll(() => {
  certs = makeCerts();
  dir = tempDir();
  writeFileSync(join(dir, 'tokens'), `${READER} read\n${READER_PROD} read prod\n${INGEST} ingest\n`);
});
afterAll(() => {
  cleanup(certs.dir);
  cleanup(dir);
});

function secure(extra: Parameters<typeof startServer>[0] = {}): Promise<Server> {
  return startServer({
    ...extra,
    config: (c) => {
      c.server.tls = { cert: certs.serverCert, key: certs.serverKey };
      c.server.tokensFile = join(dir, 'tokens');
    },
  });
}

function ids(c: FeedClient): number[] {
  return c.alerts.map((a) => a.id);
}

function strictlyIncreasing(xs: number[]): boolean {
  return xs.every((x, i) => i === 0 || x > xs[i - 1]!);
}

describe('alert feed over TLS', () => {
  let s: Server;
  let agent: Agent;
  let real = false;
  const post = (path: string, body: string, token = INGEST) => request(s.url + path, body, { token, ca: certs.caPem, agent });
  const open = (query = '', token = READER) => feed(s.wsUrl + query, { token, ca: certs.caPem });

  beforeAll(async () => {
    const d = await realOrTestDetector();
    real = d.real;
    s = await secure({ detector: d.detector });
    agent = new Agent({ keepAlive: true, ca: certs.caPem });
  });
  afterAll(async () => {
    agent.destroy();
    await s.close();
    cleanup(s.dir);
  });

  it('delivers every alert exactly once across a disconnect and resume while ingest runs', async () => {
    const a = open('?after=0');
    await a.opened;
    // Ingest runs throughout: 16 batches of 400 apiserver events, 20 execs each, without waiting for the feed.
    let ingesting = true;
    const ingest = (async () => {
      for (let i = 0; i < 16; i++) {
        const r = await post('/api/v1/audit/webhook/prod', eventList(makeEvents(400, { execEvery: 20 })));
        expect(r.status, r.text).toBe(200);
        await sleep(15);
      }
      ingesting = false;
    })();
    await a.waitFor(25);
    a.ws.close();
    await a.closed;
    const first = ids(a);
    expect(ingesting).toBe(true);
    await sleep(60); // alerts raised while nobody listens
    const b = open(`?after=${first[first.length - 1]}`);
    await b.opened;
    await ingest;
    const all = storedAlertIds(s.store, "WHERE cluster = 'prod'");
    expect(all.length).toBeGreaterThanOrEqual(real ? 1 : 320);
    await b.waitFor(all.length - first.length);
    await sleep(100); // anything extra would arrive now
    const second = ids(b);
    expect(strictlyIncreasing(first)).toBe(true);
    expect(strictlyIncreasing(second)).toBe(true);
    expect([...first, ...second]).toEqual(all);
    // Replayed and live alerts look the same: as stored, with id and rule.
    const one = b.alerts[b.alerts.length - 1]!;
    expect(one).toMatchObject({ id: all[all.length - 1], rule: expect.any(String), cluster: 'prod' });
    b.ws.close();
  });

  it('without after, sends only alerts raised after the connection', async () => {
    const before = storedAlertIds(s.store).at(-1) ?? 0;
    const c = open();
    await c.opened;
    await post('/api/v1/audit/webhook/prod', eventList(makeEvents(400, { execEvery: 40 })));
    const now = storedAlertIds(s.store, 'WHERE id > ?', before);
    await c.waitFor(now.length);
    expect(ids(c)).toEqual(now);
    c.ws.close();
  });

  it('confines a cluster-bound reader to its cluster', async () => {
    const c = open('?after=0', READER_PROD);
    await c.opened;
    const prod = storedAlertIds(s.store, "WHERE cluster = 'prod'");
    await c.waitFor(prod.length);
    await sleep(50);
    expect(ids(c)).toEqual(prod);
    c.ws.close();
    const other = open('?cluster=staging', READER_PROD);
    await expect(other.opened).rejects.toMatchObject({ status: 403 });
  });

  it('refuses bad credentials, scopes and parameters before upgrading', async () => {
    await expect(feed(s.wsUrl, { ca: certs.caPem }).opened).rejects.toMatchObject({ status: 401 });
    await expect(open('', 'wrong-token-0123456789abcdef').opened).rejects.toMatchObject({ status: 401 });
    await expect(open('', INGEST).opened).rejects.toMatchObject({ status: 403 });
    for (const q of ['?severity=urgent', '?after=abc', '?after=-1', '?colour=red', '?cluster=a&cluster=b', '?rule=' + 'r,'.repeat(101)]) {
      await expect(open(q).opened, q).rejects.toMatchObject({ status: 400 });
    }
    await expect(feed(s.wsUrl.replace('/alerts/stream', '/alerts/other'), { token: READER, ca: certs.caPem }).opened).rejects.toMatchObject({ status: 404 });
    const plain = await request(s.url + '/api/v1/alerts/stream', undefined, { token: READER, ca: certs.caPem });
    expect(plain.status).toBe(426);
  });
});

describe('alert feed filters and bounds', () => {
  it('filters by minimum severity, rule, cluster and namespace, live and replayed', async () => {
    // The test detector: severities and rule ids known in advance.
    const s = await secure({ detector: execDetector() });
    const post = (path: string, body: string) => request(s.url + path, body, { token: INGEST, ca: certs.caPem });
    const open = (query = '') => feed(s.wsUrl + query, { token: READER, ca: certs.caPem });
    const start = storedAlertIds(s.store).at(-1) ?? 0;
    const high = open('?severity=high');
    const rule = open('?rule=no.such.rule,other');
    const ns = open('?namespace=web&cluster=staging');
    await Promise.all([high.opened, rule.opened, ns.opened]);
    await post('/api/v1/audit/webhook/staging', eventList(makeEvents(40, { execEvery: 4, podPrefix: 'crit-', namespace: 'web' })));
    await post('/api/v1/audit/webhook/staging', eventList(makeEvents(40, { execEvery: 4, podPrefix: 'high-', namespace: 'data' })));
    await post('/api/v1/audit/webhook/prod', eventList(makeEvents(40, { execEvery: 4, namespace: 'web' })));
    await high.waitFor(20);
    await ns.waitFor(10);
    await sleep(100);
    expect(high.alerts).toHaveLength(20);
    expect(high.alerts.every((a) => a.severity === 'critical' || a.severity === 'high')).toBe(true);
    expect(rule.alerts).toHaveLength(0);
    expect(ns.alerts).toHaveLength(10);
    expect(ns.alerts.every((a) => a.cluster === 'staging' && a.objectRef.namespace === 'web')).toBe(true);
    // The same filter on a replay gives the same alerts.
    const replay = open(`?after=${start}&severity=high`);
    await replay.waitFor(20);
    await sleep(50);
    expect(ids(replay)).toEqual(ids(high));
    for (const c of [high, rule, ns, replay]) c.ws.close();
    await s.close();
    cleanup(s.dir);
  });

  it('closes a client that stops reading with 4008 and its resume id, while ingest goes on; resuming loses nothing', async () => {
    // Heavy alerts (16 KiB each), a 256 KiB socket bound and a 100-alert queue: a paused client overflows quickly
    // once the kernel buffers fill.
    const s = await startServer({ detector: execDetector(16 * 1024), app: { feed: { maxBufferedBytes: 256 * 1024, maxQueuedAlerts: 100 } } });
    try {
      const slow = feed(s.wsUrl + '?after=0');
      await slow.opened;
      await slow.waitFor(0);
      const sock = (slow.ws as unknown as { _socket: import('node:net').Socket })._socket;
      sock.pause();
      const latencies: number[] = [];
      for (let i = 0; i < 8; i++) {
        const r = await request(s.url + '/api/v1/audit/webhook', eventList(makeEvents(400, { execEvery: 1 })));
        expect(r.status).toBe(200);
        latencies.push(r.ms);
      }
      const metrics = await request(s.url + '/metrics');
      expect(metrics.text).toMatch(/kaudit_feed_clients_closed_total\{reason="slow"\} 1/);
      // Ingest was not held up by the stuck client.
      expect(Math.max(...latencies)).toBeLessThan(2000);
      sock.resume();
      const { code, reason } = await slow.closed;
      expect(code).toBe(4008);
      const lastSeen = slow.alerts.at(-1)?.id ?? 0;
      expect(reason).toBe(`client too slow, resume with after=${lastSeen}`);
      const all = storedAlertIds(s.store);
      expect(all).toHaveLength(3200);
      expect(lastSeen).toBeLessThan(all.at(-1)!);
      const again = feed(s.wsUrl + `?after=${lastSeen}`);
      await again.waitFor(all.length - slow.alerts.length, 20_000);
      await sleep(100);
      expect([...ids(slow), ...ids(again)]).toEqual(all);
      again.ws.close();
    } finally {
      await s.close();
      cleanup(s.dir);
    }
  });

  it('terminates peers that stop answering pings, keeps those that answer', async () => {
    const s = await startServer({ app: { feed: { heartbeatMs: 100 } } });
    try {
      const deaf = feed(s.wsUrl, { autoPong: false });
      const live = feed(s.wsUrl);
      await Promise.all([deaf.opened, live.opened]);
      const t0 = Date.now();
      const { code } = await deaf.closed;
      expect(code).toBe(1006);
      expect(Date.now() - t0).toBeLessThan(1500);
      await sleep(300);
      expect(live.ws.readyState).toBe(live.ws.OPEN);
      expect((await request(s.url + '/metrics')).text).toMatch(/kaudit_feed_clients_closed_total\{reason="dead"\} 1/);
      live.ws.close();
    } finally {
      await s.close();
      cleanup(s.dir);
    }
  });

  it('closes feed clients when the server stops', async () => {
    const s = await startServer();
    const c = feed(s.wsUrl);
    await c.opened;
    await s.close();
    const { code } = await c.closed;
    expect([1001, 1006]).toContain(code);
    cleanup(s.dir);
  });
});
