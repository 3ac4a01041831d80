import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { followAlerts, FeedRefused, formatAlert, runAlerts } from '../../src/cli/alerts.js';
import { UsageError } from '../../src/cli/common.js';
import { runWebhookConfig } from '../../src/cli/webhook-config.js';
import type { FeedAlert } from '../../src/sinks/ws-hub.js';
import {
  cleanup,
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

const INGEST = 'ingest-prod-0123456789abcdef';
const READER = 'reader-0123456789abcdef0123';

let certs: Certs;
let dir: string;

beforeAll(() => {
  certs = makeCerts({ apiserver: '/CN=prod/O=ingest' });
  dir = tempDir();
  writeFileSync(join(dir, 'tokens'), `${INGEST} ingest prod\n${READER} read\n`);
  writeFileSync(join(dir, 'ingest.token'), `${INGEST}\n`);
  writeFileSync(join(dir, 'read.token'), `# the reader\n${READER} read\n`);
});
afterAll(() => {
  cleanup(certs.dir);
  cleanup(dir);
});

function secure(o: Parameters<typeof startServer>[0] = {}): Promise<Server> {
  return startServer({
    detector: execDetector(),
    ...o,
    config: (c) => {
      c.server.tls = { cert: certs.serverCert, key: certs.serverKey };
      c.server.tokensFile = join(dir, 'tokens');
      o.config?.(c);
    },
  });
}

/** What kube-apiserver does with the kubeconfig: POST an EventList to exactly `server`, with its credentials. */
function postAsApiserver(kubeconfig: string, body: string) {
  const k = parseYaml(readFileSync(kubeconfig, 'utf8'));
  const cluster = k.clusters[0].cluster;
  const user = k.users[0].user;
  const ca = cluster['certificate-authority-data']
    ? Buffer.from(cluster['certificate-authority-data'], 'base64')
    : readFileSync(cluster['certificate-authority']);
  const certFile = user['client-certificate-data'] ? join(dir, 'kc.crt') : user['client-certificate'];
  const keyFile = user['client-key-data'] ? join(dir, 'kc.key') : user['client-key'];
  if (user['client-certificate-data']) {
    writeFileSync(certFile, Buffer.from(user['client-certificate-data'], 'base64'));
    writeFileSync(keyFile, Buffer.from(user['client-key-data'], 'base64'));
  }
  return request(cluster.server, body, { ca, token: user.token, cert: certFile, key: keyFile });
}

describe('kaudit webhook-config', () => {
  it('writes a kubeconfig (mode 0600) the apiserver can use as is: token and CA embedded', async () => {
    const s = await secure();
    try {
      const out = join(dir, 'kaudit-webhook.kubeconfig');
      writeFileSync(out, 'old', { mode: 0o644 });
      vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      expect(await runWebhookConfig(['--server', s.url, '--token-file', join(dir, 'ingest.token'), '--ca-file', certs.ca, '--output', out])).toBe(0);
      vi.restoreAllMocks();
      expect(statSync(out).mode & 0o777).toBe(0o600);
      const k = parseYaml(readFileSync(out, 'utf8'));
      expect(k).toMatchObject({ apiVersion: 'v1', kind: 'Config', 'current-context': 'kaudit' });
      expect(k.clusters[0].cluster.server).toBe(`${s.url}/api/v1/audit/webhook`);
      expect(k.users[0].user.token).toBe(INGEST);
      expect(Buffer.from(k.clusters[0].cluster['certificate-authority-data'], 'base64').equals(certs.caPem)).toBe(true);
      const r = await postAsApiserver(out, eventList(makeEvents(400)));
      expect(r.status, r.text).toBe(200);
      expect(r.body).toMatchObject({ cluster: 'prod', stored: 400 });
    } finally {
      await s.close();
      cleanup(s.dir);
    }
  });

  it('writes client certificate credentials, by path with --no-embed, and a cluster path segment', async () => {
    const s = await secure({ config: (c) => (c.server.tls!.clientCA = certs.ca) });
    try {
      const out = join(dir, 'cert.kubeconfig');
      vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      const cert = certs.clients.apiserver!;
      expect(
        await runWebhookConfig([
          '--server',
          s.url,
          '--cluster',
          'prod',
          '--client-cert',
          cert.cert,
          '--client-key',
          cert.key,
          '--ca-file',
          certs.ca,
          '--no-embed',
          '-o',
          out,
        ]),
      ).toBe(0);
      vi.restoreAllMocks();
      const k = parseYaml(readFileSync(out, 'utf8'));
      expect(k.clusters[0].cluster.server).toBe(`${s.url}/api/v1/audit/webhook/prod`);
      expect(k.users[0].user).toEqual({ 'client-certificate': cert.cert, 'client-key': cert.key });
      expect(k.clusters[0].cluster['certificate-authority']).toBe(certs.ca);
      const r = await postAsApiserver(out, eventList(makeEvents(10)));
      expect(r.status, r.text).toBe(200);
      expect(r.body.cluster).toBe('prod');
    } finally {
      await s.close();
      cleanup(s.dir);
    }
  });

  it('refuses incomplete or wrong arguments with a usage error', async () => {
    await expect(runWebhookConfig([])).rejects.toThrow(UsageError);
    await expect(runWebhookConfig(['--server', 'https://k:8443', '--client-cert', 'x'])).rejects.toThrow(/go together/);
    await expect(runWebhookConfig(['--server', 'ftp://k'])).rejects.toThrow(/https/);
    await expect(runWebhookConfig(['--server', 'https://k', '--token-file', join(dir, 'nope')])).rejects.toThrow(/cannot read token file/);
    await expect(runWebhookConfig(['--server', 'https://k', '--ca-file', join(dir, 'tokens')])).rejects.toThrow(/not PEM/);
  });
});

describe('kaudit alerts', () => {
  it('--follow prints every alert once across a server restart', async () => {
    let s = await secure();
    const port = s.port;
    const serverDir = s.dir;
    const got: FeedAlert[] = [];
    const status: string[] = [];
    const ac = new AbortController();
    const post = () => request(s.url + '/api/v1/audit/webhook', eventList(makeEvents(400, { execEvery: 25 })), { token: INGEST, ca: certs.caPem });
    // Alerts from before the follow starts are not printed.
    await post();
    const before = storedAlertIds(s.store);
    const following = followAlerts({
      server: s.url,
      token: READER,
      tls: { ca: certs.caPem },
      onAlert: (a) => got.push(a),
      onStatus: (m) => status.push(m),
      signal: ac.signal,
      maxBackoffMs: 200,
    });
    try {
      await sleep(200);
      await post();
      await post();
      await sleep(200);
      await s.close();
      // Down for a while; then back on the same port and store, with more alerts.
      await sleep(300);
      s = await secure({ dir: serverDir, port });
      await post();
      await post();
      const all = storedAlertIds(s.store);
      const deadline = Date.now() + 10_000;
      while (got.length < all.length - before.length && Date.now() < deadline) await sleep(50);
      await sleep(100);
      expect(got.map((a) => a.id)).toEqual(all.filter((id) => id > before.at(-1)!));
      expect(status.some((m) => /disconnected.*resuming after id \d+/.test(m))).toBe(true);
      expect(formatAlert(got[0]!)).toMatch(
        /^2026-\S+Z MEDIUM {3}test\.pod-exec cluster=prod user=alice@example\.com create pods\/exec payments\/web-\d+: .* \(id \d+\)$/,
      );
    } finally {
      ac.abort();
      await following;
      await s.close();
      cleanup(serverDir);
    }
  });

  it('--follow stops with a clear error when refused', async () => {
    const s = await secure();
    try {
      const err = await followAlerts({ server: s.url, token: INGEST, tls: { ca: certs.caPem }, after: 0, onAlert: () => undefined }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(FeedRefused);
      expect((err as FeedRefused).status).toBe(403);
      const err2 = await followAlerts({ server: s.url, token: 'wrong-0123456789abcdef', tls: { ca: certs.caPem }, onAlert: () => undefined }).catch(
        (e: Error) => e,
      );
      expect((err2 as FeedRefused).status).toBe(401);
    } finally {
      await s.close();
      cleanup(s.dir);
    }
  });

  it('without --follow prints stored alerts oldest first, one a line', async () => {
    const s = await secure();
    try {
      await request(s.url + '/api/v1/audit/webhook', eventList(makeEvents(100, { execEvery: 25 })), { token: INGEST, ca: certs.caPem });
      writeFileSync(join(dir, 'ca.pem'), certs.caPem);
      const lines: string[] = [];
      vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (lines.push(String(chunk)), true));
      const code = await runAlerts(['--server', s.url, '--token-file', join(dir, 'read.token'), '--ca-file', join(dir, 'ca.pem'), '--limit', '3', '--json']);
      vi.restoreAllMocks();
      expect(code).toBe(0);
      const ids = lines.map((l) => JSON.parse(l).id);
      expect(ids).toEqual(storedAlertIds(s.store).slice(-3));
    } finally {
      vi.restoreAllMocks();
      await s.close();
      cleanup(s.dir);
    }
  });
});
