import { generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { SourceConfig } from '../../src/config/sources.js';
import { counts } from '../../src/store/queries.js';
import { startServer, request, type Server } from '../api/helpers.js';
import { tempDir } from '../helpers/events.js';

/** The push endpoints over real HTTP on 127.0.0.1, into a real SQLite store. */
const FIX = new URL('../../fixtures/cloud/', import.meta.url).pathname;
const fixture = (f: string) => readFileSync(join(FIX, f));
const KEY = 'firehose-access-key-0123456789abcdef';

let server: Server | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const stored = (s: Server, cluster?: string) =>
  cluster === undefined
    ? counts(s.store).events
    : (s.store.db.prepare('SELECT count(*) FROM events e JOIN dict d ON d.id = e.cluster WHERE d.value = ?').pluck().get(cluster) as number);
const metric = async (s: Server, line: string) => {
  const text = (await request(`${s.url}/metrics`)).text;
  const l = text.split('\n').find((x) => x.startsWith(line));
  return l === undefined ? 0 : Number(l.slice(l.lastIndexOf(' ') + 1));
};

async function serverWith(sources: unknown[]): Promise<Server> {
  return startServer({ config: (c) => void (c.sources = sources as SourceConfig[]) });
}

describe('Firehose HTTP endpoint (EKS)', () => {
  it('checks the access key, answers in Firehose format, stores once committed; a bad record is a dead letter only', async () => {
    server = await serverWith([{ type: 'firehose', accessKey: KEY }]);
    const url = `${server.url}/api/v1/ingest/firehose`;
    const body = fixture('eks/firehose-request.json');
    const requestId = JSON.parse(body.toString()).requestId;
    for (const headers of [{}, { 'x-amz-firehose-access-key': 'wrong' }] as Record<string, string>[]) {
      const r = await request(url, body, { headers: { ...headers, 'x-amz-firehose-request-id': requestId } });
      expect(r.status).toBe(401);
      expect(r.body).toEqual({ requestId, timestamp: expect.any(Number), errorMessage: 'missing or wrong X-Amz-Firehose-Access-Key' });
    }
    expect(stored(server)).toBe(0);
    const ok = await request(url, body, { headers: { 'x-amz-firehose-access-key': KEY, 'x-amz-firehose-request-id': requestId } });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ requestId, timestamp: expect.any(Number) });
    expect(stored(server)).toBe(23);
    // Gzipped body (the destination's content encoding), with a truncated record and a garbage one among good ones.
    const doc = JSON.parse(body.toString());
    const good = doc.records[1];
    const gz = Buffer.from(doc.records[2].data, 'base64');
    doc.records = [{ data: gz.subarray(0, 40).toString('base64') }, { data: '!!not base64!!' }, good];
    const again = await request(url, gzipSync(JSON.stringify(doc)), { headers: { 'x-amz-firehose-access-key': KEY, 'content-encoding': 'gzip' } });
    expect(again.status).toBe(200);
    expect(stored(server)).toBe(23); // the good record's events were already stored: duplicates
    const dl = server.store.db.prepare('SELECT position, reason FROM dead_letters ORDER BY id').all() as { position: string; reason: string }[];
    expect(dl.map((d) => d.reason)).toEqual(['eks: Firehose record data is truncated gzip (40 bytes)', 'eks: Firehose record data is not valid base64']);
    expect(dl[0]!.position).toMatch(/^firehose .* record 0 records\[0\]$/);
    expect(await metric(server, 'kaudit_envelope_bad_total{envelope="eks"}')).toBe(2);
    expect(await metric(server, 'kaudit_envelope_events_total{envelope="eks"}')).toBe(23 + 12);
    const notJson = await request(url, 'nope', { headers: { 'x-amz-firehose-access-key': KEY } });
    expect(notJson.status).toBe(400);
    expect((notJson.body as { errorMessage: string }).errorMessage).toMatch(/not JSON/);
  });

  it('is not served unless configured', async () => {
    server = await serverWith([]);
    expect((await request(`${server.url}/api/v1/ingest/firehose`, '{}', { headers: { 'x-amz-firehose-access-key': KEY } })).status).toBe(404);
  });
});

describe('Pub/Sub push endpoint (GKE)', () => {
  const dir = tempDir('kaudit-pubsub-');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const AUD = 'https://kaudit.example.com/api/v1/ingest/pubsub';
  const SA = 'pubsub-push@acme-prod.iam.gserviceaccount.com';
  const jwt = (claims: Record<string, unknown>, key = privateKey, kid = 'k1') => {
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const head = enc({ alg: 'RS256', kid, typ: 'JWT' });
    const body = enc(claims);
    return `${head}.${body}.${sign('RSA-SHA256', Buffer.from(`${head}.${body}`), key).toString('base64url')}`;
  };
  const now = () => Math.floor(Date.now() / 1000);
  const good = () => ({ iss: 'https://accounts.google.com', aud: AUD, email: SA, email_verified: true, iat: now(), exp: now() + 3600, sub: '1' });

  it('verifies the OIDC token, acknowledges with 204 once stored, dead-letters a bad message and still acknowledges it', async () => {
    const jwks = join(dir, 'jwks.json');
    writeFileSync(jwks, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' }] }));
    server = await serverWith([{ type: 'pubsub-push', audience: AUD, serviceAccount: SA, jwks }]);
    const url = `${server.url}/api/v1/ingest/pubsub`;
    const bodies = fixture('gke/pubsub-push.ndjson').toString().trim().split('\n');
    const refused: [string | undefined, RegExp][] = [
      [undefined, /no bearer token/],
      [jwt({ ...good(), aud: 'https://elsewhere' }), /audience/],
      [jwt({ ...good(), exp: now() - 3600 }), /expired/],
      [jwt({ ...good(), iss: 'https://evil.example' }), /issuer/],
      [jwt({ ...good(), email: 'someone@else.iam.gserviceaccount.com' }), /service account/],
      [jwt(good(), other.privateKey), /signature/],
      [jwt(good(), privateKey, 'k9'), /unknown key/],
    ];
    for (const [token, why] of refused) {
      const r = await request(url, bodies[0], token ? { token } : {});
      expect(r.status, String(why)).toBe(401);
      expect((r.body as { error: string }).error).toMatch(why);
    }
    expect(stored(server)).toBe(0);
    const token = jwt(good());
    for (const b of bodies) expect((await request(url, b, { token })).status).toBe(204);
    expect(stored(server, 'gke-prod')).toBe(23);
    const bad = JSON.stringify({
      message: {
        data: Buffer.from(
          '{"protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "compute.googleapis.com"}, "logName": "x"}',
        ).toString('base64'),
        messageId: '42',
      },
      subscription: 's',
    });
    expect((await request(url, bad, { token })).status).toBe(204);
    const dl = server.store.db.prepare('SELECT reason FROM dead_letters').pluck().all();
    expect(dl).toEqual(['gke: Cloud Audit Logs entry of service "compute.googleapis.com", not k8s.io: not a Kubernetes audit event']);
    expect(await metric(server, 'kaudit_envelope_events_total{envelope="gke"}')).toBe(23);
  });

  it('without an audience, the push needs an ingest credential like the webhook', async () => {
    const tokens = join(tempDir('kaudit-tokens-'), 'tokens');
    writeFileSync(tokens, 'ingest-token-0123456789abcdef0123 ingest\nread-token-0123456789abcdef01234 read\n');
    server = await startServer({ config: (c) => ((c.sources = [{ type: 'pubsub-push' } as SourceConfig]), void (c.server.tokensFile = tokens)) });
    const url = `${server.url}/api/v1/ingest/pubsub`;
    const b = fixture('gke/pubsub-push.ndjson').toString().split('\n')[0]!;
    expect((await request(url, b)).status).toBe(401);
    expect((await request(url, b, { token: 'read-token-0123456789abcdef01234' })).status).toBe(403);
    expect((await request(url, b, { token: 'ingest-token-0123456789abcdef0123' })).status).toBe(204);
  });
});

describe('forwarder endpoint', () => {
  it('takes Fluent Bit arrays, Vector NDJSON (gzipped) and Logstash batches into the cluster of the path', async () => {
    server = await serverWith([]);
    const url = `${server.url}/api/v1/ingest/forwarder/selfmanaged`;
    const fb = await request(url, fixture('forwarder/fluent-bit.json'));
    expect(fb.status).toBe(200);
    expect(fb.body).toMatchObject({ cluster: 'selfmanaged', records: 23, stored: 23, bad: 0 });
    const vec = await request(url, gzipSync(fixture('forwarder/vector.ndjson')), {
      headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
    });
    expect(vec.body).toMatchObject({ records: 23, stored: 0, duplicates: 23, bad: 0 });
    const ls = await request(url, fixture('forwarder/logstash.json'));
    expect(ls.body).toMatchObject({ records: 23, duplicates: 23 });
    const mixed = await request(url, '{"log":"{\\"kind\\":\\"Event\\", trunc"}\nnot json\n', { headers: { 'content-type': 'application/x-ndjson' } });
    expect(mixed.status).toBe(200);
    expect(mixed.body).toMatchObject({ records: 2, stored: 0, bad: 2 });
    expect((mixed.body as { badRecords: { reason: string }[] }).badRecords.map((b) => b.reason)).toEqual([
      expect.stringMatching(/^forwarder: event text is not JSON/),
      expect.stringMatching(/^not JSON/),
    ]);
    expect(stored(server, 'selfmanaged')).toBe(23);
    expect(await metric(server, 'kaudit_envelope_events_total{envelope="forwarder"}')).toBe(69);
  });
});
