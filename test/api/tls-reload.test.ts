import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { setLogSink } from '../../src/log.js';
import { cleanup, makeCerts, request, sleep, startServer, tempDir, type Certs } from './helpers.js';

// A certificate renewed in place (cert-manager, a mounted Secret) is served without a restart: real HTTPS on
// 127.0.0.1, the files replaced under the running server.
describe('TLS certificate renewal', () => {
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  const dirs: string[] = [];
  afterAll(() => {
    setLogSink((l) => process.stderr.write(l + '\n'));
    for (const d of dirs) cleanup(d);
  });

  /** Whether a request on a new connection trusting `ca` gets an answer (the server's certificate verifies against it). */
  async function trusts(url: string, ca: Buffer): Promise<boolean> {
    try {
      return (await request(`${url}/healthz`, undefined, { ca, agent: false })).status === 200;
    } catch (e) {
      if (/self[- ]signed|unable to verify|certificate/i.test((e as Error).message)) return false;
      throw e;
    }
  }

  async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (await ok()) return;
      await sleep(25);
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it('serves a replaced certificate and key to new connections, keeps the old ones through a bad set, and reports expiry', async () => {
    const a: Certs = makeCerts();
    const b: Certs = makeCerts();
    const live = tempDir('kaudit-tls-');
    dirs.push(a.dir, b.dir, live);
    const cert = join(live, 'tls.crt');
    const key = join(live, 'tls.key');
    copyFileSync(a.serverCert, cert);
    copyFileSync(a.serverKey, key);
    const s = await startServer({ config: (c) => (c.server.tls = { cert, key }), app: { tlsWatchMs: 20 } });
    dirs.push(s.dir);
    try {
      expect(await trusts(s.url, a.caPem)).toBe(true);
      expect(await trusts(s.url, b.caPem)).toBe(false);
      const expiry = Number(/kaudit_tls_certificate_expiry_timestamp_seconds (\d+)/.exec(s.metrics.render())?.[1]);
      expect(expiry * 1000).toBeGreaterThan(Date.now());

      // Half a renewal: B's certificate with A's key does not load; A's pair stays in use, said once.
      copyFileSync(b.serverCert, cert);
      await until('the mismatch to be reported', async () => logs.some((l) => /TLS files changed but were not loaded/.test(l)));
      expect(await trusts(s.url, a.caPem)).toBe(true);
      await sleep(100);
      expect(logs.filter((l) => /TLS files changed but were not loaded/.test(l))).toHaveLength(1);

      // The key follows: B's pair is served from then on, without a restart.
      copyFileSync(b.serverKey, key);
      await until("B's certificate to be served", () => trusts(s.url, b.caPem));
      expect(await trusts(s.url, a.caPem)).toBe(false);
      expect(logs.some((l) => /TLS certificate .*tls\.crt reloaded: valid until 20\d\d-/.test(l))).toBe(true);

      // Garbage in the files changes nothing either.
      writeFileSync(cert, 'not a certificate');
      await until('the bad file to be reported', async () => logs.filter((l) => /TLS files changed but were not loaded/.test(l)).length === 2);
      expect(await trusts(s.url, b.caPem)).toBe(true);
      expect(readFileSync(key).length).toBeGreaterThan(0);
    } finally {
      await s.close();
    }
  });
});
