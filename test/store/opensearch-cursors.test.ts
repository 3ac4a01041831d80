/**
 * The fleet store's cursors against a real OpenSearch node: pages read one point in time while a writer adds events
 * (late older ones included) and counts alert repeats; a point in time that expired or was closed is replaced at the
 * cursor with no row skipped or doubled; a store keeps at most `maxOpen` open, the last page closes its own, and
 * where the node will open no more, pages are read from the live indices, still whole.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Alert } from '../../src/detect/alert.js';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { OpenSearchStore } from '../../src/store/opensearch/store.js';
import type { AlertRow, EventRow, Page, PageOptions } from '../../src/store/queries.js';
import { toRecords } from '../../src/store/records.js';
import { describeWithOpenSearch, startOpenSearch, type OpenSearchNode } from '../opensearch/node.js';
import { fleetTraffic } from './fleet-traffic.js';

const KEY = { enabled: true, key: Buffer.alloc(32, 1) };

let node: OpenSearchNode;

const open = (indexPrefix: string, pointsInTime?: { keepAliveMs?: number; maxOpen?: number }) =>
  OpenSearchStore.open({ url: node.url, indexPrefix, replicas: 0, shards: 1 }, { pointsInTime });

/** Stores a seed's fleet events (all of one time range: a later seed's events land before and after any cursor). */
async function write(s: OpenSearchStore, n: number, seed: number, alerts: Alert[] = []): Promise<void> {
  const batch = toRecords(fleetTraffic({ events: n, seed }).map((e) => normalise(toAuditEvent(e.event), e.cluster, KEY)));
  const r = await s.insert(batch);
  await s.finish(r.batch, { alerts, deadLetters: [] });
  await s.refresh();
}

function alert(i: number, timeMicros: number): Alert {
  return {
    rule: `rule-${i % 3}`,
    title: 't',
    severity: 'high',
    tags: [],
    summary: `alert ${i}`,
    cluster: 'c',
    auditID: `a-${i}-${timeMicros}`,
    stage: 'ResponseComplete',
    time: new Date(timeMicros / 1000).toISOString(),
    timeMicros,
    user: `user${i}@example.com`,
    sourceIP: '203.0.113.1',
    verb: 'get',
    objectRef: { resource: 'secrets', namespace: 'ns', name: `s${i}` },
    groupKey: `group-${i}`,
  };
}

async function openPits(): Promise<number> {
  const r = await fetch(`${node.url}/_search/point_in_time/_all`);
  return ((await r.json()) as { pits?: unknown[] }).pits?.length ?? 0;
}

async function until(what: string, ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The rest of a listing from a cursor, page by page. */
async function rest<T>(q: (p: PageOptions) => Promise<Page<T>>, cursor: string | undefined, limit: number): Promise<T[]> {
  const out: T[] = [];
  while (cursor) {
    const p = await q({ limit, cursor });
    out.push(...p.items);
    cursor = p.next;
  }
  return out;
}

const key = (r: EventRow) => `${r.time} ${r.cluster} ${r.auditID} ${r.stage}`;
const pitOf = (cursor: string) =>
  (JSON.parse(Buffer.from(cursor, 'base64url').toString()) as unknown[]).find((v, i) => i > 0 && typeof v === 'string' && v.length > 40);

describeWithOpenSearch('cursors on the OpenSearch store (points in time)', () => {
  beforeAll(async () => {
    node = await startOpenSearch();
  }, 300_000);
  afterAll(async () => {
    await node?.stop();
  });

  it('pages through one snapshot while a writer adds events before and after the cursor', async () => {
    const s = await open('snap');
    try {
      await write(s, 800, 21);
      for (const q of [(p: PageOptions) => s.queryEvents({}, p), (p: PageOptions) => s.execSessions({}, p)]) {
        const before = (await q({ limit: 10_000 })).items.map(key);
        expect(before.length).toBeGreaterThan(30);
        const first = await q({ limit: 15 });
        expect(pitOf(first.next!)).toBeDefined();
        await write(s, 400, 22 + before.length); // interleaved in time with what is stored: late events included
        const after = [...first.items, ...(await rest(q, first.next, 15))].map(key);
        expect(after).toEqual(before);
        // The writes were there to be seen: a listing now has them, also past the first page's last row.
        const now = (await q({ limit: 10_000 })).items.map(key);
        const cut = first.items.at(-1)!;
        const late = now.filter((k) => !before.includes(k) && k < key(cut));
        expect(now.length).toBeGreaterThan(before.length);
        expect(late.length).toBeGreaterThan(0);
      }
    } finally {
      await s.close();
    }
  });

  it('keeps alert counts as they were when paging began while repeats are counted', async () => {
    const s = await open('snap-alerts');
    try {
      const t0 = Date.UTC(2026, 10, 2, 21) * 1000;
      await write(
        s,
        20,
        31,
        Array.from({ length: 40 }, (_, i) => alert(i, t0 + i * 1000)),
      );
      const shape = (r: AlertRow) => `${r.id} ${r.rule} ${r.count} ${r.lastTime}`;
      const before = (await s.queryAlerts({}, { limit: 1000 })).items.map(shape);
      expect(before.length).toBe(40);
      const first = await s.queryAlerts({}, { limit: 7 });
      // Repeats of every group (counted on their rows) and new alerts.
      await write(s, 20, 32, [...Array.from({ length: 40 }, (_, i) => alert(i, t0 + 60_000_000 + i * 1000)), alert(99, t0)]);
      const after = [...first.items, ...(await rest((p) => s.queryAlerts({}, p), first.next, 7))].map(shape);
      expect(after).toEqual(before);
      const now = await s.queryAlerts({}, { limit: 1000 });
      expect(now.items.length).toBe(41);
      expect(now.items.filter((r) => r.count === 2).length).toBe(40);
    } finally {
      await s.close();
    }
  });

  it('goes on from a cursor whose point in time expired or was closed, with no row skipped or doubled', async () => {
    const s = await open('expiry', { keepAliveMs: 1000 });
    try {
      await write(s, 600, 41);
      const all = (await s.queryEvents({}, { limit: 10_000 })).items.map(key);
      // Expired: OpenSearch frees a point in time past its keep-alive when its reaper runs (once a minute).
      const first = await s.queryEvents({}, { limit: 40 });
      const pit = pitOf(first.next!);
      await until('the point in time to expire', async () => (await openPits()) === 0, 150_000);
      const second = await s.queryEvents({}, { limit: 40, cursor: first.next });
      expect(pitOf(second.next!)).not.toBe(pit); // a new one, opened at the cursor
      const rows = [...first.items, ...second.items, ...(await rest((p) => s.queryEvents({}, p), second.next, 40))].map(key);
      expect(rows).toEqual(all);
      // Closed under it (another node's store, an operator), and a cursor that never had one.
      const a = await s.execSessions({}, { limit: 9 });
      await fetch(`${node.url}/_search/point_in_time/_all`, { method: 'DELETE' });
      const sessions = (await s.execSessions({}, { limit: 10_000 })).items.map(key);
      expect([...a.items, ...(await rest((p) => s.execSessions({}, p), a.next, 9))].map(key)).toEqual(sessions);
      const bare = JSON.parse(Buffer.from(a.next!, 'base64url').toString()) as unknown[];
      const plain = Buffer.from(JSON.stringify(bare.slice(0, 4))).toString('base64url');
      expect([...a.items, ...(await rest((p) => s.execSessions({}, p), plain, 9))].map(key)).toEqual(sessions);
    } finally {
      await s.close();
    }
  }, 240_000);

  it('keeps at most maxOpen open, closes each at the last page, and pages whole where the node opens no more', async () => {
    const s = await open('bound', { maxOpen: 3 });
    try {
      await write(s, 600, 51);
      const queries = [
        (p: PageOptions) => s.queryEvents({}, p),
        (p: PageOptions) => s.queryEvents({ cluster: 'prod-eu' }, p),
        (p: PageOptions) => s.queryEvents({ verb: 'update' }, p),
        (p: PageOptions) => s.execSessions({}, p),
        (p: PageOptions) => s.secretReads({}, p),
        (p: PageOptions) => s.userActivity({ user: 'alice@example.com' }, p),
      ];
      const whole = await Promise.all(queries.map(async (q) => (await q({ limit: 10_000 })).items.map(key)));
      await until('single-page listings to close theirs', async () => (await openPits()) === 0);
      const firsts = [];
      for (const q of queries) firsts.push(await q({ limit: 5 }));
      expect(firsts.every((p) => p.next)).toBe(true);
      expect(s.pits.size).toBeLessThanOrEqual(3);
      await until('evicted ones to close', async () => (await openPits()) <= 3);
      for (const [i, q] of queries.entries()) expect([...firsts[i]!.items, ...(await rest(q, firsts[i]!.next, 5))].map(key), `query ${i}`).toEqual(whole[i]);
      expect(s.pits.size).toBe(0);
      await until('the last pages to close theirs', async () => (await openPits()) === 0);

      // The node's own limit reached: pages come from the live indices, still whole.
      const setting = (v: number | null) =>
        fetch(`${node.url}/_cluster/settings`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ transient: { 'search.max_open_pit_context': v } }),
        });
      await setting(0);
      try {
        const p1 = await s.queryEvents({}, { limit: 25 });
        expect(pitOf(p1.next!)).toBeUndefined();
        expect([...p1.items, ...(await rest((p) => s.queryEvents({}, p), p1.next, 25))].map(key)).toEqual(whole[0]);
      } finally {
        await setting(null);
      }
    } finally {
      await s.close();
    }
  }, 120_000);
});
