import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { bearerFromProtocols } from '../../src/api/stream.js';
import { cleanup, eventList, makeEvents, request, startServer, tempDir, type Server } from './helpers.js';

const ADMIN = 'a'.repeat(16) + '0123456789abcdef';
const INGEST = 'i'.repeat(16) + '0123456789abcdef';
const b64url = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

/** Opens the feed with the given subprotocols; resolves with the selected protocol or the refusal status. */
function openFeed(url: string, protocols: string[], headers: Record<string, string> = {}): Promise<{ protocol?: string; status?: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols, { headers });
    ws.on('open', () => {
      resolve({ protocol: ws.protocol });
      ws.close();
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode });
      res.resume();
    });
    ws.on('error', () => undefined);
  });
}

describe('console routes, feed subprotocol token, policy, status, timelines', () => {
  let s: Server;
  let consoleDir: string;
  beforeAll(async () => {
    const dir = tempDir();
    consoleDir = join(dir, 'console');
    mkdirSync(join(consoleDir, 'assets'), { recursive: true });
    writeFileSync(join(consoleDir, 'index.html'), '<!doctype html><script type="module" src="/assets/app-abc123.js"></script>');
    writeFileSync(join(consoleDir, 'assets', 'app-abc123.js'), 'console.log(1)');
    const tokens = join(dir, 'tokens.txt');
    writeFileSync(tokens, `${ADMIN} admin\n${INGEST} ingest\n`);
    chmodSync(tokens, 0o600);
    s = await startServer({ dir, config: (c) => (c.server.tokensFile = tokens), app: { consoleDir } });
    const r = await request(`${s.url}/api/v1/audit/webhook`, eventList(makeEvents(20, { execEvery: 4 })), { token: INGEST });
    expect(r.status).toBe(200);
  });
  afterAll(async () => {
    await s.close();
    cleanup(s.dir);
  });

  it('serves the console page without credentials, with a strict CSP; hashed assets are immutable; no path escapes', async () => {
    const page = await request(`${s.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.headers['cache-control']).toBe('no-cache');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    const asset = await request(`${s.url}/assets/app-abc123.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers['cache-control']).toContain('immutable');
    const again = await request(`${s.url}/assets/app-abc123.js`, undefined, { headers: { 'if-none-match': String(asset.headers.etag) } });
    expect(again.status).toBe(304);
    for (const p of ['/assets/..%2ftokens.txt', '/assets/../tokens.txt', '/assets/%2e%2e/tokens.txt', '/assets/..%2f..%2ftokens.txt']) {
      const r = await request(`${s.url}${p}`);
      expect([401, 404]).toContain(r.status);
      expect(r.text).not.toContain(ADMIN);
    }
    // The API still needs a token.
    expect((await request(`${s.url}/api/v1/status`)).status).toBe(401);
  });

  it('takes the feed token as a subprotocol, selects only kaudit.v1, and refuses a wrong or ingest-only token', async () => {
    const ok = await openFeed(s.wsUrl, ['kaudit.v1', `kaudit.bearer.${b64url(ADMIN)}`]);
    expect(ok.protocol).toBe('kaudit.v1');
    expect((await openFeed(s.wsUrl, ['kaudit.v1', `kaudit.bearer.${b64url('x'.repeat(32))}`])).status).toBe(401);
    expect((await openFeed(s.wsUrl, ['kaudit.v1', `kaudit.bearer.${b64url(INGEST)}`])).status).toBe(403);
    expect((await openFeed(s.wsUrl, ['kaudit.v1'])).status).toBe(401);
    expect((await openFeed(s.wsUrl, [`kaudit.bearer.${b64url(ADMIN)}`])).status).toBe(400);
    // A header still works as before.
    expect((await openFeed(s.wsUrl, [], { authorization: `Bearer ${ADMIN}` })).protocol).toBe('');
    expect(bearerFromProtocols('kaudit.v1, kaudit.bearer.' + b64url('tok-123'))).toBe('tok-123');
    expect(() => bearerFromProtocols('kaudit.bearer.not+base64')).toThrow(/base64url/);
  });

  it('checks a policy: a catch-all at RequestResponse fails CIS 3.2.2 on secrets; a manifest adds flag findings', async () => {
    const bad = 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n';
    const r = await request(`${s.url}/api/v1/policy/check`, JSON.stringify({ policy: bad, detections: false }), { token: ADMIN });
    expect(r.status).toBe(200);
    expect(r.body.findings.some((f: { id: string; severity: string }) => f.id === 'cis-3.2.2-secrets-metadata-only' && f.severity === 'error')).toBe(true);
    expect(r.body.checks.length).toBeGreaterThan(5);
    const manifest =
      'apiVersion: v1\nkind: Pod\nmetadata: {name: kube-apiserver, namespace: kube-system}\nspec:\n  containers:\n  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.30.2\n    command: [kube-apiserver, --audit-policy-file=/etc/kubernetes/audit-policy.yaml]\n';
    const m = await request(`${s.url}/api/v1/policy/check`, JSON.stringify({ policy: bad, manifest, detections: false }), { token: ADMIN });
    expect(m.status).toBe(200);
    expect(m.body.manifest.benchmark).toMatch(/cis/);
    expect(m.body.findings.some((f: { file?: string }) => f.file === 'manifest')).toBe(true);
    // Bounded and validated.
    expect((await request(`${s.url}/api/v1/policy/check`, JSON.stringify({ policy: 'x'.repeat(600 * 1024) }), { token: ADMIN })).status).toBe(400);
    expect((await request(`${s.url}/api/v1/policy/check`, JSON.stringify({}), { token: ADMIN })).status).toBe(400);
    expect((await request(`${s.url}/api/v1/policy/check`, JSON.stringify({ policy: bad }), { token: INGEST })).status).toBe(403);
  });

  it('generates a policy that then passes its own check, and tunes one on stored traffic', async () => {
    const g = await request(`${s.url}/api/v1/policy/generate`, JSON.stringify({ profile: 'minimal', detections: false }), { token: ADMIN });
    expect(g.status).toBe(200);
    expect(g.body.yaml).toContain('kind: Policy');
    const c = await request(`${s.url}/api/v1/policy/check`, JSON.stringify({ policy: g.body.yaml, detections: false }), { token: ADMIN });
    expect(c.body.findings.filter((f: { severity: string }) => f.severity === 'error')).toEqual([]);
    const t = await request(`${s.url}/api/v1/policy/generate`, JSON.stringify({ fromTraffic: { since: '2000-01-01' }, detections: false }), { token: ADMIN });
    expect(t.status).toBe(200);
    expect(t.body.tunedOn.events).toBeGreaterThan(0);
    expect(
      (await request(`${s.url}/api/v1/policy/generate`, JSON.stringify({ profile: 'strict', fromTraffic: { since: '1d' } }), { token: ADMIN })).status,
    ).toBe(400);
  });

  it('reports status: store span in real time, alerts, webhook counters, dead letters', async () => {
    const bad = await request(`${s.url}/api/v1/audit/webhook`, '{"kind":"EventList","items":[{"kind":"Event","stage":"ResponseComplete"}]}', { token: INGEST });
    expect(bad.status).toBeLessThan(500);
    const r = await request(`${s.url}/api/v1/status`, undefined, { token: ADMIN });
    expect(r.status).toBe(200);
    expect(r.body.ready).toBe(true);
    expect(r.body.store.bytes).toBeGreaterThan(0);
    // Stored microseconds are shown as a real date, not one in year 58803.
    expect(new Date(r.body.store.newestEvent).getUTCFullYear()).toBeLessThan(2100);
    expect(r.body.webhook.some((x: { name: string }) => x.name === 'kaudit_webhook_events_received_total')).toBe(true);
    expect(r.body.store.deadLetters).toBe(r.body.deadLetters.length);
  });

  it('counts requests and alerts over time', async () => {
    const e = await request(`${s.url}/api/v1/analyst/timeline/events?by=verb`, undefined, { token: ADMIN });
    expect(e.status).toBe(200);
    const total = e.body.series.reduce((n: number, x: { counts: number[] }) => n + x.counts.reduce((a, b) => a + b, 0), 0);
    expect(total).toBeGreaterThan(0);
    const a = await request(`${s.url}/api/v1/analyst/timeline/alerts`, undefined, { token: ADMIN });
    expect(a.status).toBe(200);
    const alerts = a.body.series.reduce((n: number, x: { counts: number[] }) => n + x.counts.reduce((p, q) => p + q, 0), 0);
    const stored = await request(`${s.url}/api/v1/alerts?limit=1000`, undefined, { token: ADMIN });
    expect(alerts).toBe(stored.body.items.reduce((n: number, x: { count: number }) => n + x.count, 0));
    expect(alerts).toBeGreaterThan(0);
  });
});
