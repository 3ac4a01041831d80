/**
 * The fleet store against a real OpenSearch node: idempotent writes (a batch twice, two writers at once), items
 * OpenSearch refuses for good (dead-lettered with its reason), refusals for now (retried), the node stopped mid-write
 * (a retriable error, nothing lost once it is back), `--store URL` in the CLI, and `kaudit serve` on the fleet store.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { defaultConfig } from '../../src/config/config.js';
import { startServe } from '../../src/cli/serve.js';
import { isRetriable } from '../../src/errors.js';
import { normalise } from '../../src/events/normalise.js';
import { toAuditEvent } from '../../src/events/decode.js';
import { OpenSearchStore } from '../../src/store/opensearch/store.js';
import { SETTLE_MS } from '../../src/store/opensearch/sequence.js';
import { toRecords } from '../../src/store/records.js';
import { cleanup, tempDir } from '../api/helpers.js';
import { describeWithOpenSearch, startOpenSearch, type OpenSearchNode } from '../opensearch/node.js';
import { fleetTraffic } from './fleet-traffic.js';

const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;
const KEY = { enabled: true, key: Buffer.alloc(32, 1) };

let node: OpenSearchNode;
let dir: string;

const settings = (indexPrefix: string, url = node.url) => ({ url, indexPrefix, replicas: 0, shards: 1 });

/** The fleet's events, normalised as the pipeline does, as a batch's records. */
function records(n: number, seed = 3) {
  return toRecords(fleetTraffic({ events: n, seed }).map((e) => normalise(toAuditEvent(e.event), e.cluster, KEY)));
}

describeWithOpenSearch('the OpenSearch store', () => {
  beforeAll(async () => {
    node = await startOpenSearch();
    dir = tempDir('kaudit-os-');
  }, 300_000);
  afterAll(async () => {
    await node?.stop();
    if (dir) cleanup(dir);
  });

  it('stores a batch once: the same batch again, and two writers at once, find every event stored', async () => {
    const a = await OpenSearchStore.open(settings('idem'));
    const b = await OpenSearchStore.open(settings('idem'));
    try {
      const batch = records(200);
      const first = await a.insert(batch);
      expect(first.flags.every(Boolean)).toBe(true);
      await a.finish(first.batch, { alerts: [], deadLetters: [], checkpoint: { source: 's', position: '1' } });
      const again = await a.insert(records(200));
      expect(again.flags.some(Boolean)).toBe(false);
      expect(again.orphans).toBe(false);
      await a.finish(again.batch, { alerts: [], deadLetters: [] });
      // Two detectors writing the same new events at once (a rebalance): each event is new to exactly one of them.
      const other = records(300, 4);
      const [x, y] = await Promise.all([a.insert(other), b.insert(records(300, 4))]);
      for (let i = 0; i < other.count; i++) expect(Number(x.flags[i]) + Number(y.flags[i]), `event ${i}`).toBe(1);
      await Promise.all([a.finish(x.batch, { alerts: [], deadLetters: [] }), b.finish(y.batch, { alerts: [], deadLetters: [] })]);
      await a.refresh();
      expect((await a.counts()).events).toBe(batch.count + other.count);
      expect(await b.position('s')).toBe('1');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('dead-letters an event OpenSearch refuses for good, with its reason, and stores the rest', async () => {
    const s = await OpenSearchStore.open(settings('refused'));
    try {
      const events = fleetTraffic({ events: 20, seed: 5 }).map((e) => normalise(toAuditEvent(e.event), e.cluster, KEY));
      // A name longer than a keyword can index (32 KiB): OpenSearch refuses that document alone.
      const huge = { ...events[3]!, name: 'x'.repeat(40_000) };
      events[3] = huge;
      const r = await s.insert(toRecords(events));
      expect(r.flags.filter(Boolean)).toHaveLength(events.length - 1);
      expect(r.flags[3]).toBe(false);
      await s.finish(r.batch, { alerts: [], deadLetters: [] });
      await s.refresh();
      const dl = await s.deadLetters(10);
      expect(dl).toEqual([expect.objectContaining({ source: 'opensearch', position: `${huge.cluster}/${huge.auditID}/${huge.stage}` })]);
      expect(dl[0]!.reason).toMatch(/OpenSearch refused the event: .*(max_bytes_length_exceeded|immense term)/);
      expect((await s.counts()).events).toBe(events.length - 1);
    } finally {
      await s.close();
    }
  });

  it('retries a bulk write OpenSearch refuses for now (429), and stores it', async () => {
    // A proxy in front of the node that answers the first two bulk requests with 429, as an overloaded node does.
    let refused = 0;
    const proxy: Server = createServer((req, res) => {
      if (req.url?.startsWith('/_bulk') && refused < 2) {
        refused++;
        req.resume();
        res.writeHead(429, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'es_rejected_execution_exception', reason: 'rejected execution' }, status: 429 }));
        return;
      }
      const u = new URL(node.url);
      const up = request({ host: u.hostname, port: u.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const s = await OpenSearchStore.open(settings('busy', `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`));
    try {
      const batch = records(50, 6);
      const r = await s.insert(batch);
      expect(refused).toBe(2);
      expect(r.flags.every(Boolean)).toBe(true);
      await s.finish(r.batch, { alerts: [], deadLetters: [] });
      await s.refresh();
      expect((await s.counts()).events).toBe(batch.count);
    } finally {
      await s.close();
      proxy.close();
    }
  });

  it('fails writes with a retriable error while the node is down, and loses nothing once it is back', async () => {
    const s = await OpenSearchStore.open(settings('down'));
    try {
      const before = records(100, 7);
      const r = await s.insert(before);
      await s.finish(r.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'k', position: '100' } });
      await node.halt({ hard: true });
      const during = records(150, 8);
      const err = await s.insert(during).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeDefined();
      expect(isRetriable(err)).toBe(true); // the source keeps the batch: webhook 5xx, Kafka pauses, the tail waits
      await node.start();
      // The source sends the batch again: stored once, and the earlier one is still there.
      const again = await s.insert(during);
      expect(again.flags.every(Boolean)).toBe(true);
      await s.finish(again.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'k', position: '250' } });
      await s.refresh();
      expect((await s.counts()).events).toBe(before.count + during.count);
      expect(await s.position('k')).toBe('250');
      // The failed batch's mark is handed back for detection (it may have stored part of itself), then finished.
      const p = await s.pending();
      for (const b of p) await s.finish(b.batch, { alerts: [], deadLetters: [] });
    } finally {
      await s.close();
    }
  }, 240_000);

  it('deletes whole days past the age limit, then the oldest days while over the size limit (no ISM plugin needed)', async () => {
    const s = await OpenSearchStore.open(settings('ret'));
    try {
      // Three days from 2026-11-02 20:00 UTC: four daily indices, 02 to 05.
      const r = await s.insert(records(600, 12));
      await s.finish(r.batch, { alerts: [], deadLetters: [] });
      await s.refresh();
      const days = async () =>
        (await s.conn.request<{ index: string }[]>('GET', '/_cat/indices/ret-events-*', undefined, { query: { format: 'json', h: 'index' } })).body
          .map((i) => i.index)
          .sort();
      expect(await days()).toEqual(['ret-events-2026.11.02', 'ret-events-2026.11.03', 'ret-events-2026.11.04', 'ret-events-2026.11.05']);
      // 2.5 days before 2026-11-06 00:00 is 11-03 12:00: only the 2nd is wholly older.
      expect(await s.applyRetention({ maxAgeMs: 2.5 * 86_400_000 }, Date.UTC(2026, 10, 6))).toEqual(['ret-events-2026.11.02']);
      // Over any size: every day but the newest (being written) goes, oldest first.
      expect(await s.applyRetention({ maxBytes: 1 })).toEqual(['ret-events-2026.11.03', 'ret-events-2026.11.04']);
      expect(await days()).toEqual(['ret-events-2026.11.05']);
      const left = await s.countEvents({});
      expect(left).toBeGreaterThan(0);
      expect(left).toBe(await s.countEvents({ since: Date.UTC(2026, 10, 5) * 1000 }));
      expect((await s.counts()).alerts).toBe(0);
    } finally {
      await s.close();
    }
  });

  it('takes --store URL in kaudit ingest and kaudit query (auth-free node; the rest of the settings from the config)', () => {
    const log = join(dir, 'audit.log');
    writeFileSync(
      log,
      fleetTraffic({ events: 300, seed: 9 })
        .map((e) => JSON.stringify(e.event))
        .join('\n') + '\n',
    );
    const cfg = join(dir, 'kaudit.yaml');
    writeFileSync(cfg, `store:\n  opensearch:\n    url: http://127.0.0.1:9\n    indexPrefix: cli\n    replicas: 0\n`);
    const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, KAUDIT_LOG_LEVEL: 'warn' } });
    const first = run(['ingest', '--config', cfg, '--store', node.url, '--cluster', 'prod', log]);
    expect(first.status, first.stderr).toBe(0);
    const stored = Number(/stored (\d+) events/.exec(first.stderr)![1]);
    expect(stored).toBeGreaterThan(300);
    const again = run(['ingest', '--config', cfg, '--db', node.url, '--cluster', 'prod', log]);
    expect(again.stderr).toMatch(new RegExp(`stored 0 events, skipped ${stored} duplicates`));
    const count = run(['query', 'count', '--config', cfg, '--store', node.url, '--format', 'json']);
    expect(count.status, count.stderr).toBe(0);
    expect(JSON.parse(count.stdout)).toEqual({ count: stored });
    const exec = run(['query', 'exec', '--config', cfg, '--store', node.url, '--cluster', 'prod', '--format', 'json', '--all']);
    const rows = exec.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { cluster: string; subresource: string });
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.cluster === 'prod' && ['exec', 'attach'].includes(r.subresource))).toBe(true);
  }, 120_000);

  it('serves /api/v1 and the alert feed from the fleet store (a query node sees what a detector wrote)', async () => {
    // A detector (in this process) writes; a separate query node (serve, no sources) answers and feeds.
    const cfg = defaultConfig();
    cfg.server.listen = '127.0.0.1:0';
    cfg.store.opensearch = settings('serve');
    const q = await startServe(cfg, { detect: false });
    const ws = new WebSocket(`ws://127.0.0.1:${q.port}/api/v1/alerts/stream`);
    const fed: { rule: string }[] = [];
    ws.on('message', (m) => fed.push(JSON.parse(String(m)) as { rule: string }));
    await new Promise((r) => ws.once('open', r));
    const detector = await startServe({ ...cfg, server: { ...cfg.server } });
    try {
      const body = fleetTraffic({ events: 400, seed: 11 })
        .filter((e) => e.cluster === 'prod-eu')
        .map((e) => e.event);
      const res = await fetch(`http://127.0.0.1:${detector.port}/api/v1/audit/webhook/prod-eu`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: body }),
      });
      expect(res.status).toBe(200);
      await (detector.store as OpenSearchStore).refresh();
      const api = `http://127.0.0.1:${q.port}/api/v1`;
      const events = (await (await fetch(`${api}/events/count?cluster=prod-eu`)).json()) as { count: number };
      expect(events.count).toBe(body.length);
      const execRes = await fetch(`${api}/analyst/exec?cluster=prod-eu&limit=5`);
      const exec = (await execRes.json()) as { items: unknown[] };
      expect(execRes.status, JSON.stringify(exec)).toBe(200);
      expect(exec.items.length).toBeGreaterThan(0);
      const alertsRes = await fetch(`${api}/alerts?limit=1000`);
      const alerts = (await alertsRes.json()) as { items: { rule: string }[] };
      expect(alertsRes.status, JSON.stringify(alerts)).toBe(200);
      expect(alerts.items.length).toBeGreaterThan(0);
      // The query node's feed carries the detector's alerts, once settled.
      const deadline = Date.now() + SETTLE_MS + 15_000;
      while (fed.length < alerts.items.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      expect(fed.map((a) => a.rule).sort()).toEqual(alerts.items.map((a) => a.rule).sort());
      expect((await fetch(`http://127.0.0.1:${q.port}/readyz`)).status).toBe(200);
    } finally {
      ws.close();
      await detector.stop();
      await q.stop();
    }
  }, 180_000);
});
