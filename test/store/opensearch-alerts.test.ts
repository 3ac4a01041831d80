/**
 * The fleet store's alert writes against a real OpenSearch node: a commit's alerts take a fixed number of requests
 * however many there are, batches whose finishes overlap (the pipeline keeps several in flight) are grouped as SQLite
 * groups them, an alert raised again for a stored event opens no second row, and two writers counting on one group
 * at once lose no repeat, and two writers opening a new store at once both start.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadDetector } from '../../src/cli/common.js';
import type { Alert } from '../../src/detect/alert.js';
import { Pipeline, type RawBatch } from '../../src/pipeline/pipeline.js';
import { OpenSearchStore } from '../../src/store/opensearch/store.js';
import type { AlertRow } from '../../src/store/queries.js';
import { toRecords } from '../../src/store/records.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { StoreReader } from '../../src/store/store.js';
import { cleanup, tempDir } from '../api/helpers.js';
import { describeWithOpenSearch, startOpenSearch, type OpenSearchNode } from '../opensearch/node.js';
import { fleetTraffic } from './fleet-traffic.js';

let node: OpenSearchNode;
let dir: string;

const settings = (indexPrefix: string) => ({ url: node.url, indexPrefix, replicas: 0, shards: 1 });

/** Counts the store's requests to OpenSearch by method and path. */
function countRequests(s: OpenSearchStore): { counts: Map<string, number>; total: () => number } {
  const counts = new Map<string, number>();
  const orig = s.conn.request.bind(s.conn);
  s.conn.request = ((method: string, path: string, ...rest: unknown[]) => {
    const k = `${method} ${path}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    return (orig as (...a: unknown[]) => unknown)(method, path, ...rest);
  }) as typeof s.conn.request;
  return { counts, total: () => [...counts.values()].reduce((a, b) => a + b, 0) };
}

/** An exec alert of one user into one pod (one group key), at `sec` seconds past a fixed time. */
function execAlert(n: number, sec: number, user = 'alice@example.com'): Alert {
  const us = Date.UTC(2026, 10, 5, 8, 0, 0) * 1000 + sec * 1_000_000;
  return {
    rule: 'pod-exec',
    title: 'exec into a pod',
    severity: 'high',
    tags: [],
    summary: `${user} exec'd into web-1`,
    cluster: 'prod-eu',
    auditID: `aaaaaaaa-0000-4000-8000-${String(n).padStart(12, '0')}`,
    stage: 'ResponseComplete',
    time: new Date(us / 1000).toISOString(),
    timeMicros: us,
    user,
    sourceIP: '203.0.113.7',
    verb: 'create',
    objectRef: { resource: 'pods', namespace: 'payments', name: 'web-1', subresource: 'exec' },
    groupKey: `pod-exec|prod-eu|${user}|payments/web-1`,
  };
}

/** Every alert row, oldest first. */
async function allAlerts(s: StoreReader): Promise<AlertRow[]> {
  return (await s.queryAlerts({}, { limit: 1000 })).items.reverse();
}

const shape = (r: AlertRow) => ({ rule: r.rule, auditID: r.auditID, groupKey: r.groupKey, count: r.count, firstTime: r.firstTime, lastTime: r.lastTime });

describeWithOpenSearch('alert writes on the OpenSearch store', () => {
  beforeAll(async () => {
    node = await startOpenSearch();
    dir = tempDir('kaudit-os-alerts-');
  }, 300_000);
  afterAll(async () => {
    await node?.stop();
    if (dir) cleanup(dir);
  });

  it("writes a commit's alerts in a fixed number of requests, grouped as alert-by-alert writing would", async () => {
    const s = await OpenSearchStore.open(settings('fixed'), { alertGroupWindowMs: 60_000 });
    const sqlite = new SqliteStore(join(dir, 'fixed.db'), { alertGroupWindowMs: 60_000 });
    try {
      // 60 alerts of three users: a minute's window, an alert every 20 s, a gap of 5 minutes after the 30th.
      const alerts = Array.from({ length: 60 }, (_, i) => execAlert(i, i * 20 + (i >= 30 ? 300 : 0), ['alice', 'bob', 'carol'][i % 3] + '@example.com'));
      const batch = await s.insert(emptyRecords());
      const seen = countRequests(s);
      const opened = await s.finish(batch.batch, { alerts, deadLetters: [], checkpoint: { source: 'k', position: '1' } });
      // Two mgets (heads and the rows to open, then the rows heads point to: none yet), the alerts' bulk, the commit's.
      expect(seen.total(), JSON.stringify([...seen.counts])).toBeLessThanOrEqual(4);
      const ref = sqliteAlerts(sqlite, alerts);
      expect(opened.map((a) => a.auditID)).toEqual(ref.opened);
      expect(opened.map((a) => a.id)).toEqual([...opened.map((a) => a.id!)].sort((a, b) => a - b));
      // The same again, on rows that exist now: still a fixed number of requests.
      const more = alerts.map((a, i) => execAlert(100 + i, 1000 + i * 20, a.user));
      const second = await s.insert(emptyRecords());
      const before = seen.total();
      await s.finish(second.batch, { alerts: more, deadLetters: [] });
      expect(seen.total() - before).toBeLessThanOrEqual(4);
      sqliteAlerts(sqlite, more);
      expect((await allAlerts(s)).map(shape)).toEqual((await allAlerts(sqlite)).map(shape));
      // Raised again for the same events (a batch detected again): no new row; repeats within a window still count.
      const third = await s.insert(emptyRecords());
      expect(await s.finish(third.batch, { alerts: alerts.slice(0, 3), deadLetters: [] })).toEqual([]);
      expect((await s.counts()).alerts).toBe((await sqlite.counts()).alerts);
    } finally {
      await s.close();
      sqlite.close();
    }
  });

  it('groups the alerts of batches whose finishes overlap as SQLite does, in batch order', async () => {
    const os = await OpenSearchStore.open(settings('overlap'));
    const sqlite = new SqliteStore(join(dir, 'overlap.db'));
    try {
      const key = Buffer.alloc(32, 3);
      const pipes = await Promise.all(
        [sqlite, os].map(async (writer) => new Pipeline({ writer, detector: await loadDetector({}), redaction: { enabled: true, key } })),
      );
      // Busy traffic of one cluster, 100 events a batch, every batch submitted at once: finishes queue up.
      const events = fleetTraffic({ events: 3000, seed: 21, clusters: ['prod-eu'], spanMs: 4 * 3_600_000 });
      const batches: RawBatch[] = [];
      for (let at = 0; at < events.length; at += 100)
        batches.push({
          source: 'kafka:audit/0',
          cluster: 'prod-eu',
          clusterFixed: true,
          records: events.slice(at, at + 100).map((e, i) => ({ value: e.event, where: `${at + i}` })),
          checkpoint: { source: 'kafka:audit/0', position: String(at + 100) },
        });
      const outcomes = await Promise.all(pipes.map((p) => submitAll(p, batches)));
      const [a, b] = await Promise.all([allAlerts(sqlite), allAlerts(os)]);
      expect(a.length).toBeGreaterThan(20);
      expect(a.some((r) => r.count > 1)).toBe(true);
      expect(b.map(shape)).toEqual(a.map(shape));
      // Each batch published the alerts it opened, in id order across batches.
      const published = outcomes[1]!.flatMap((o) => o.alerts);
      expect(published.map((x) => x.auditID)).toEqual(b.map((r) => r.auditID));
      expect(published.map((x) => x.id)).toEqual(b.map((r) => r.id));
      expect(await os.position('kafka:audit/0')).toBe(batches.at(-1)!.checkpoint!.position);
    } finally {
      await os.close();
      sqlite.close();
    }
  }, 120_000);

  it('loses no repeat when two writers count on one group at once', async () => {
    // Opened at once, as two detectors started together: the second must not read the state index's shard while it
    // is still initializing (it answered 503 in 2 of 5 tries before the writers waited for it).
    const [a, b] = await Promise.all([OpenSearchStore.open(settings('race')), OpenSearchStore.open(settings('race'))]);
    try {
      // One group, every alert within the window of the one before: 4 rounds of 15 alerts from each writer at once.
      let n = 0;
      for (let round = 0; round < 4; round++) {
        const [x, y] = await Promise.all([a.insert(emptyRecords()), b.insert(emptyRecords())]);
        const mine = (k: number) => Array.from({ length: 15 }, () => execAlert(n++, round * 60 + k));
        await Promise.all([a.finish(x.batch, { alerts: mine(1), deadLetters: [] }), b.finish(y.batch, { alerts: mine(2), deadLetters: [] })]);
      }
      const rows = await allAlerts(a);
      expect(rows.reduce((s, r) => s + r.count, 0)).toBe(n);
      expect(rows.length).toBeGreaterThanOrEqual(1);
      expect(new Set(rows.map((r) => r.groupKey)).size).toBe(1);
    } finally {
      await a.close();
      await b.close();
    }
  }, 120_000);
});

/** Submits every batch, eight in flight at a time (the pipeline's queue is bounded); the outcomes in order. */
async function submitAll(p: Pipeline, batches: RawBatch[]) {
  const out: Awaited<ReturnType<Pipeline['submit']>>[] = [];
  const inflight = new Set<Promise<unknown>>();
  for (const [i, b] of batches.entries()) {
    const q: Promise<unknown> = p
      .submit(b)
      .then((o) => void (out[i] = o))
      .finally(() => inflight.delete(q));
    inflight.add(q);
    if (inflight.size >= 8) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  return out;
}

/** A batch with no events (a finish needs an inserted batch). */
function emptyRecords() {
  return toRecords([]);
}

/** The alerts written to SQLite in one batch of their own; the auditIDs of those that opened a row. */
function sqliteAlerts(s: SqliteStore, alerts: Alert[]): { opened: string[] } {
  const { batch } = s.insert(emptyRecords());
  return { opened: s.finish(batch, { alerts, deadLetters: [] }).map((a) => a.auditID) };
}
