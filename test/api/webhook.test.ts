import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent as HttpAgent } from 'node:http';
import { Agent } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.js';
import { ConfigError } from '../../src/errors.js';
import type { Detector } from '../../src/detect/alert.js';
import { setLogSink } from '../../src/log.js';
import { OverloadedError } from '../../src/errors.js';
import {
  cleanup,
  eventCount,
  eventList,
  execDetector,
  makeCerts,
  makeEvents,
  request,
  sleep,
  startServer,
  storedAlertIds,
  tempDir,
  type Certs,
  type Server,
} from './helpers.js';

const INGEST_PROD = 'ingest-prod-0123456789abcdef';
const INGEST_ANY = 'ingest-any-0123456789abcdef0';
const READER = 'reader-0123456789abcdef0123';
const ADMIN = 'admin-0123456789abcdef01234';
const TOKENS = `# token scope [cluster]
${INGEST_PROD} ingest prod
${INGEST_ANY} ingest
${READER} read
${ADMIN} admin
`;

let certs: Certs;
let dir: string;
let logs: string[] = [];

beforeAll(() => {
  certs = makeCerts({ 'ingest-prod': '/CN=prod/O=ingest', reader: '/CN=alice/O=read', 'no-scope': '/CN=bob', 'rogue-admin': '/CN=mallory/O=admin' });
  dir = tempDir();
  writeFileSync(join(dir, 'tokens'), TOKENS);
  setLogSink((l) => logs.push(l));
});

afterAll(() => {
  setLogSink((l) => process.stderr.write(l + '\n'));
  cleanup(certs.dir);
  cleanup(dir);
});

function tlsServer(extra: Parameters<typeof startServer>[0] = {}): Promise<Server> {
  return startServer({
    ...extra,
    config: (c) => {
      c.server.tls = { cert: certs.serverCert, key: certs.serverKey };
      c.server.tokensFile = join(dir, 'tokens');
      extra.config?.(c);
    },
  });
}

describe('webhook over TLS with tokens', () => {
  let s: Server;
  let agent: Agent;
  const post = (path: string, body: string | Buffer, token: string | undefined, headers: Record<string, string> = {}) =>
    request(s.url + path, body, { token, ca: certs.caPem, headers, agent });

  beforeAll(async () => {
    s = await tlsServer({ config: (c) => (c.server.maxResults = 5) });
    agent = new Agent({ keepAlive: true, ca: certs.caPem, maxSockets: 16 });
  });
  afterAll(async () => {
    agent.destroy();
    await s.close();
    cleanup(s.dir);
  });

  it('stores an apiserver-shaped batch of 400 under the token-bound cluster, with alerts, and a retry adds nothing', async () => {
    const items = makeEvents(400, { execEvery: 40 });
    const body = eventList(items);
    const r = await post('/api/v1/audit/webhook', body, INGEST_PROD);
    expect(r.status, r.text).toBe(200);
    expect(r.body).toMatchObject({ cluster: 'prod', stored: 400, duplicates: 0, bad: 0 });
    expect(eventCount(s.store, 'prod')).toBe(400);
    const alerts = storedAlertIds(s.store);
    expect(alerts).toHaveLength(10);
    // The stored raw event is a standalone Event, as the log backend writes it.
    const row = s.store.db.prepare('SELECT blob, blob_idx FROM events LIMIT 1').get() as { blob: number; blob_idx: number };
    const raw = JSON.parse(s.store.rawEvent(row.blob, row.blob_idx)!);
    expect(raw).toMatchObject({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', stage: expect.any(String) });

    const again = await post('/api/v1/audit/webhook', body, INGEST_PROD);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ stored: 0, duplicates: 400 });
    expect(eventCount(s.store, 'prod')).toBe(400);
    expect(storedAlertIds(s.store)).toEqual(alerts);
  });

  it('takes concurrent batches out of order, with retries among them, and stores each event once', async () => {
    const before = eventCount(s.store);
    const batches = Array.from({ length: 8 }, () => eventList(makeEvents(400, { execEvery: 50 })));
    // Out of order and with two retried batches in flight at once, as a busy apiserver does.
    const order = [5, 2, 7, 0, 3, 3, 6, 1, 4, 0];
    const replies = await Promise.all(order.map((i) => post('/api/v1/audit/webhook/prod', batches[i]!, INGEST_PROD)));
    for (const r of replies) {
      expect(r.status, r.text).toBe(200);
      expect(r.body).toMatchObject({ cluster: 'prod', events: 400, bad: 0 });
    }
    expect(eventCount(s.store) - before).toBe(3200);
  });

  it('takes the apiserver-shaped fixture as is, stamping each stored event with kind and apiVersion', async () => {
    const body = readFileSync(new URL('../../fixtures/webhook/eventlist-v1.json', import.meta.url));
    const r = await post('/api/v1/audit/webhook/fixture', body, INGEST_ANY);
    expect(r.body).toMatchObject({ cluster: 'fixture', events: 4, stored: 4, bad: 0 });
    const rows = s.store.db.prepare("SELECT blob, blob_idx FROM events e JOIN dict d ON d.id = e.cluster WHERE d.value = 'fixture'").all() as {
      blob: number;
      blob_idx: number;
    }[];
    expect(rows).toHaveLength(4);
    for (const row of rows) expect(JSON.parse(s.store.rawEvent(row.blob, row.blob_idx)!)).toMatchObject({ kind: 'Event', apiVersion: 'audit.k8s.io/v1' });
    expect((await post('/api/v1/audit/webhook/fixture', body, INGEST_ANY)).body).toMatchObject({ stored: 0, duplicates: 4 });
  });

  it('takes a single Event and a JSON array, v1beta1 too', async () => {
    const [a, b, c] = makeEvents(3);
    const one = await post('/api/v1/audit/webhook', JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...a }), INGEST_ANY);
    expect(one.body).toMatchObject({ stored: 1, cluster: 'default' });
    const arr = await post('/api/v1/audit/webhook/staging', JSON.stringify([{ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...b }]), INGEST_ANY);
    expect(arr.body).toMatchObject({ stored: 1, cluster: 'staging' });
    const beta = await post('/api/v1/audit/webhook/staging', JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1beta1', items: [c] }), INGEST_ANY);
    expect(beta.body).toMatchObject({ stored: 1 });
    expect(eventCount(s.store, 'staging')).toBe(2);
  });

  it('reports events that are not audit events as bad, storing the rest', async () => {
    const [a] = makeEvents(1);
    const r = await post('/api/v1/audit/webhook/qa', eventList([a!, { verb: 'get' }]), ADMIN);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ stored: 1, bad: 1 });
    expect(r.body.badRecords[0].reason).toMatch(/auditID|requestURI/);
  });

  it('stores an event whose request body nests deeper than the splitter tracks, with its batch mates', async () => {
    const [a, b, c] = makeEvents(3);
    const deepItem = JSON.stringify(b).slice(0, -1) + `,"requestObject":${'['.repeat(50_000)}${']'.repeat(50_000)}}`;
    // Pretty-printed, an item is parsed and serialised again to be stored: that one cannot be, and only it is refused.
    const deepPretty = JSON.stringify(c).slice(0, -1) + `,\n"requestObject":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`;
    const body = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[${JSON.stringify(a)},${deepItem},${deepPretty}]}`;
    const r = await post('/api/v1/audit/webhook/qa-deep', body, ADMIN);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ stored: 2, bad: 1 });
    expect(r.body.badRecords[0]).toMatchObject({ where: expect.stringContaining('item 2'), reason: expect.stringMatching(/nested too deeply to store/) });
    expect(eventCount(s.store, 'qa-deep')).toBe(2);
  });

  it('dead-letters an item that is not valid JSON and stores its batch mates', async () => {
    const [a, b] = makeEvents(2);
    const body = eventList([a!, { verb: 'get' }, b!]).replace('{"verb":"get"}', '{"verb":get}');
    const r = await post('/api/v1/audit/webhook/qa2', body, ADMIN);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ stored: 2, bad: 1 });
    expect(r.body.badRecords[0]).toMatchObject({ where: expect.stringContaining('item 1'), reason: expect.stringMatching(/^not JSON/) });
    expect(eventCount(s.store, 'qa2')).toBe(2);
    const dead = s.store.db.prepare("SELECT reason, CAST(data AS TEXT) AS data FROM dead_letters WHERE source = 'webhook:qa2'").all() as {
      reason: string;
      data: string;
    }[];
    expect(dead).toEqual([{ reason: expect.stringMatching(/^not JSON/), data: '{"verb":get}' }]);
  });

  it('refuses wrong, missing and under-scoped credentials, and a token bound to another cluster', async () => {
    logs = [];
    const body = eventList(makeEvents(2));
    const wrong = await post('/api/v1/audit/webhook', body, 'not-a-valid-token-at-all-xyz');
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(wrong.text).not.toContain('not-a-valid-token');
    expect((await post('/api/v1/audit/webhook', body, undefined)).status).toBe(401);
    expect((await post('/api/v1/audit/webhook', body, undefined, { authorization: 'Basic YTpi' })).status).toBe(401);
    const reader = await post('/api/v1/audit/webhook', body, READER);
    expect(reader.status).toBe(403);
    expect(reader.body.error).toMatch(/scope "read"/);
    const other = await post('/api/v1/audit/webhook/staging', body, INGEST_PROD);
    expect(other.status).toBe(403);
    expect(other.body.error).toMatch(/bound to cluster "prod".*"staging"/);
    expect((await post('/api/v1/audit/webhook/no%20such', body, INGEST_ANY)).status).toBe(400);
    // Scopes on read routes: ingest may not read, read may, admin may.
    expect((await request(s.url + '/api/v1/alerts', undefined, { token: INGEST_ANY, ca: certs.caPem })).status).toBe(403);
    expect((await request(s.url + '/api/v1/alerts', undefined, { token: READER, ca: certs.caPem })).status).toBe(200);
    expect((await request(s.url + '/api/v1/alerts', undefined, { token: ADMIN, ca: certs.caPem })).status).toBe(200);
    expect((await request(s.url + '/metrics', undefined, { ca: certs.caPem })).status).toBe(401);
    // Probes need nothing.
    expect((await request(s.url + '/healthz', undefined, { ca: certs.caPem })).status).toBe(200);
    // Tokens never reach the log.
    for (const t of [INGEST_PROD, READER, ADMIN, 'not-a-valid-token']) expect(logs.join('\n')).not.toContain(t);
    const metrics = (await request(s.url + '/metrics', undefined, { token: READER, ca: certs.caPem })).text;
    expect(metrics).toMatch(/kaudit_auth_refused_total\{status="401"\} [1-9]/);
    expect(metrics).toMatch(/kaudit_auth_refused_total\{status="403"\} [1-9]/);
  });

  it('answers 415, 413 and 400 with a message and a metric, and keeps serving', async () => {
    const small = eventList(makeEvents(2));
    const ct = await post('/api/v1/audit/webhook', small, INGEST_ANY, { 'content-type': 'text/plain' });
    expect(ct.status).toBe(415);
    expect(ct.body.error).toMatch(/application\/json/);
    const enc = await post('/api/v1/audit/webhook', small, INGEST_ANY, { 'content-encoding': 'gzip' });
    expect(enc.status).toBe(415);

    const big = Buffer.alloc(13 * 1024 * 1024, 0x20);
    big.write(eventList(makeEvents(1)).slice(0, -1) + ',');
    big.write(']}', big.length - 2);
    const tooBig = await request(s.url + '/api/v1/audit/webhook', big, { token: INGEST_ANY, ca: certs.caPem });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error).toMatch(/maxBodyBytes/);
    // No Content-Length: the limit holds while streaming.
    const chunked = await request(s.url + '/api/v1/audit/webhook', big, { token: INGEST_ANY, ca: certs.caPem, chunked: true }).catch((e: Error) => ({
      status: -1,
      error: e,
    }));
    expect(chunked.status).toBe(413);

    for (const bad of ['{"kind":"EventList","items":[{"auditID":', 'not json', '{"kind":"EventList","items":[{"a":1},]}', '']) {
      const r = await post('/api/v1/audit/webhook', bad, INGEST_ANY);
      expect(r.status, bad).toBe(400);
      expect(r.body.error, bad).toMatch(/malformed|empty body/);
    }
    expect((await request(s.url + '/healthz', undefined, { ca: certs.caPem })).status).toBe(200);
    const m = (await request(s.url + '/metrics', undefined, { token: ADMIN, ca: certs.caPem })).text;
    expect(m).toMatch(/kaudit_webhook_rejected_total\{reason="content_type"\} 2/);
    expect(m).toMatch(/kaudit_webhook_rejected_total\{reason="too_large"\} [12]/);
    expect(m).toMatch(/kaudit_webhook_rejected_total\{reason="malformed"\} 4/);
  });

  it('bounds the size of a read query', async () => {
    expect(storedAlertIds(s.store).length).toBeGreaterThan(5);
    const r = await request(s.url + '/api/v1/alerts?limit=10000', undefined, { token: READER, ca: certs.caPem });
    expect(r.status).toBe(200);
    expect(r.body.items).toHaveLength(5);
    expect(r.body.next).toBeTruthy();
    const r2 = await request(s.url + '/api/v1/alerts?limit=100000', undefined, { token: READER, ca: certs.caPem });
    expect(r2.status).toBe(400);
  });
});

describe('webhook back-pressure', () => {
  it.each([
    ['the pipeline queue is full (no group commit)', false as const],
    ['the group commit queue is full', { maxPendingEvents: 800 }],
  ])('answers 503 with Retry-After at once when %s, and every 200 batch is stored', async (_what, coalesce) => {
    // A slow detector (100 ms a batch) and a queue of 2 batches: 12 concurrent posts must overflow.
    const slow = execDetector();
    const detector: Detector = { detect: async (ev) => (await sleep(100), slow.detect(ev)) };
    const s = await startServer({ detector, pipeline: { maxQueuedBatches: 2 }, app: { webhookCoalesce: coalesce } });
    try {
      const batches = Array.from({ length: 12 }, () => makeEvents(400, { execEvery: 100 }));
      const replies = await Promise.all(batches.map((b) => request(s.url + '/api/v1/audit/webhook/bp', eventList(b))));
      const ok = replies.filter((r) => r.status === 200);
      const busy = replies.filter((r) => r.status === 503);
      expect(ok.length + busy.length).toBe(12);
      expect(busy.length).toBeGreaterThan(0);
      // "At once": a refusal does not wait for the queue to drain, so it is answered before the last accepted batch
      // (which waits out at least two 100 ms detections). Compared with each other, not with a wall-clock limit.
      const lastOk = Math.max(...ok.map((r) => r.ms));
      for (const r of busy) {
        expect(r.headers['retry-after']).toBe('1');
        expect(r.ms).toBeLessThan(lastOk);
      }
      await s.pipeline.idle();
      // Acknowledged means stored: every 200 batch's events are there.
      expect(eventCount(s.store, 'bp')).toBe(ok.length * 400);
      // The apiserver retries the refused batches; they go in.
      for (const [i, r] of replies.entries()) {
        if (r.status !== 503) continue;
        let again;
        do again = await request(s.url + '/api/v1/audit/webhook/bp', eventList(batches[i]!));
        while (again.status === 503);
        expect(again.status).toBe(200);
      }
      expect(eventCount(s.store, 'bp')).toBe(12 * 400);
    } finally {
      await s.close();
      cleanup(s.dir);
    }
  });

  it('answers 503 when the sink reports overload and 500 when it fails', async () => {
    let mode: 'overloaded' | 'fail' | 'ok' = 'overloaded';
    const s = await startServer({
      sink: (p) => ({
        submit: (b) => (mode === 'overloaded' ? Promise.reject(new OverloadedError()) : mode === 'fail' ? Promise.reject(new Error('disk full')) : p.submit(b)),
      }),
    });
    try {
      const body = eventList(makeEvents(10));
      const r = await request(s.url + '/api/v1/audit/webhook', body);
      expect(r.status).toBe(503);
      expect(r.headers['retry-after']).toBe('1');
      mode = 'fail';
      logs = [];
      const f = await request(s.url + '/api/v1/audit/webhook', body);
      expect(f.status).toBe(500);
      expect(logs.join('\n')).toMatch(/not stored: disk full/);
      mode = 'ok';
      expect((await request(s.url + '/api/v1/audit/webhook', body)).status).toBe(200);
      expect(eventCount(s.store)).toBe(10);
    } finally {
      await s.close();
      cleanup(s.dir);
    }
  });
});

describe('client certificates', () => {
  let s: Server;
  beforeAll(async () => {
    s = await tlsServer({ config: (c) => (c.server.tls!.clientCA = certs.ca) });
  });
  afterAll(async () => {
    await s.close();
    cleanup(s.dir);
  });

  it('takes an ingest certificate as the cluster in its CN and refuses others', async () => {
    const body = eventList(makeEvents(3));
    const cert = certs.clients['ingest-prod']!;
    const ok = await request(s.url + '/api/v1/audit/webhook', body, { ca: certs.caPem, ...cert });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.cluster).toBe('prod');
    expect((await request(s.url + '/api/v1/audit/webhook/staging', body, { ca: certs.caPem, ...cert })).status).toBe(403);
    // No certificate: refused even with a valid token; probes still answer.
    const none = await request(s.url + '/api/v1/audit/webhook', body, { ca: certs.caPem, token: INGEST_ANY });
    expect(none.status).toBe(401);
    expect(none.body.error).toMatch(/client certificate/);
    expect((await request(s.url + '/healthz', undefined, { ca: certs.caPem })).status).toBe(200);
    // Signed by another CA (even claiming admin): refused.
    const rogue = await request(s.url + '/api/v1/alerts', undefined, { ca: certs.caPem, ...certs.clients['rogue-admin']! });
    expect(rogue.status).toBe(401);
    // A certificate without a scope is refused; a reader may read but not ingest.
    expect((await request(s.url + '/api/v1/alerts', undefined, { ca: certs.caPem, ...certs.clients['no-scope']! })).status).toBe(403);
    expect((await request(s.url + '/api/v1/alerts', undefined, { ca: certs.caPem, ...certs.clients.reader! })).status).toBe(200);
    expect((await request(s.url + '/api/v1/audit/webhook', body, { ca: certs.caPem, ...certs.clients.reader! })).status).toBe(403);
    // A token sent with a certificate decides the scope.
    expect((await request(s.url + '/api/v1/audit/webhook/staging', body, { ca: certs.caPem, ...certs.clients.reader!, token: INGEST_ANY })).status).toBe(200);
  });
});

describe('listen-address safety', () => {
  const ctxFor = (f: (c: import('../../src/config/config.js').KauditConfig) => void) => startServer({ config: f });

  it('refuses a non-loopback address without TLS and credentials, names what is missing', async () => {
    await expect(ctxFor((c) => (c.server.listen = '0.0.0.0:0'))).rejects.toThrow(ConfigError);
    await expect(ctxFor((c) => (c.server.listen = '0.0.0.0:0'))).rejects.toThrow(/TLS.*and credentials/);
    await expect(ctxFor((c) => ((c.server.listen = '0.0.0.0:0'), (c.server.tokensFile = join(dir, 'tokens'))))).rejects.toThrow(/without TLS/);
    await expect(ctxFor((c) => ((c.server.listen = '0.0.0.0:0'), (c.server.tls = { cert: certs.serverCert, key: certs.serverKey })))).rejects.toThrow(
      /without credentials/,
    );
  });

  it('starts with TLS and tokens, or with the insecure flag and a loud warning', async () => {
    const s = await ctxFor(
      (c) => ((c.server.listen = '0.0.0.0:0'), (c.server.tls = { cert: certs.serverCert, key: certs.serverKey }), (c.server.tokensFile = join(dir, 'tokens'))),
    );
    await s.close();
    cleanup(s.dir);
    logs = [];
    const i = await ctxFor((c) => ((c.server.listen = '0.0.0.0:0'), (c.server.insecureAllowUnauthenticatedRemote = true)));
    expect(logs.join('\n')).toMatch(/INSECURE.*0\.0\.0\.0/);
    await i.close();
    cleanup(i.dir);
  });

  it('requires tokens on loopback when a tokens file is configured, and none without', async () => {
    const s = await startServer({ config: (c) => (c.server.tokensFile = join(dir, 'tokens')) });
    try {
      expect((await request(s.url + '/api/v1/alerts')).status).toBe(401);
      expect((await request(s.url + '/api/v1/alerts', undefined, { token: READER })).status).toBe(200);
    } finally {
      await s.close();
      cleanup(s.dir);
    }
    const open = await startServer();
    try {
      expect((await request(open.url + '/api/v1/alerts')).status).toBe(200);
    } finally {
      await open.close();
      cleanup(open.dir);
    }
  });

  it('refuses a tokens file with a bad line, naming the line but not the token', async () => {
    const f = join(dir, 'bad-tokens');
    writeFileSync(f, `${ADMIN} admin\nsecret-but-short superuser\n`);
    const err = await startServer({ config: (c) => (c.server.tokensFile = f) }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/bad-tokens:2/);
    expect((err as Error).message).not.toContain('secret-but-short');
    // buildApp alone applies the same checks.
    const cfg = (await import('../../src/config/config.js')).defaultConfig();
    cfg.server.listen = '10.1.2.3:8080';
    await expect(buildApp({ config: cfg } as never)).rejects.toThrow(/refusing to listen/);
  });
});

describe('webhook body buffers', () => {
  let s: Server;
  let agent: HttpAgent;
  beforeAll(async () => {
    const exec = execDetector();
    s = await startServer({ detector: { detect: async (events) => (await sleep(25), exec.detect(events)) } });
    agent = new HttpAgent({ keepAlive: true, maxSockets: 24 });
  });
  afterAll(async () => {
    agent.destroy();
    await s.close();
    cleanup(s.dir);
  });

  it('reads bodies into recycled buffers without mixing requests: every stored event is the one sent', async () => {
    // Bodies of several sizes, many at once, behind a slow detector: requests wait in the group commit's queue, their
    // records not yet decoded, while other requests' bodies are read. A buffer given back before its batch was decoded
    // (checked: released as soon as the body is parsed) is filled by a later body, and its events are stored wrong.
    const sent = new Map<string, Record<string, unknown>>();
    for (let round = 0; round < 4; round++) {
      const batches = Array.from({ length: 24 }, (_, i) => makeEvents(100 + ((i * 37 + round * 11) % 300), { execEvery: 60 }));
      for (const b of batches) for (const e of b) sent.set(e.auditID as string, e);
      const replies = await Promise.all(batches.map((b) => request(s.url + '/api/v1/audit/webhook/reuse', eventList(b), { agent })));
      for (const r of replies) expect(r.status, r.text).toBe(200);
    }
    const rows = s.store.db.prepare("SELECT blob, blob_idx FROM events e JOIN dict d ON d.id = e.cluster WHERE d.value = 'reuse'").all() as {
      blob: number;
      blob_idx: number;
    }[];
    expect(rows).toHaveLength(sent.size);
    const seen = new Set<string>();
    for (const row of rows) {
      const { kind, apiVersion, ...raw } = JSON.parse(s.store.rawEvent(row.blob, row.blob_idx)!) as Record<string, unknown>;
      expect([kind, apiVersion]).toEqual(['Event', 'audit.k8s.io/v1']);
      expect(raw).toEqual(sent.get(raw.auditID as string));
      seen.add(raw.auditID as string);
    }
    expect(seen.size).toBe(sent.size);
  });
});
