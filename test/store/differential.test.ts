/**
 * The differential test of the two store kinds: one realistic log (the sample fixture and a generated fleet of three
 * clusters over three days, with duplicates, redelivered batches and bad records) goes through the same pipeline and
 * rules into a SQLite file and into a real OpenSearch node, and every query is asked of both. Rows must match; only
 * store ids (numbered by each kind its own way) and the order among events of the same microsecond (SQLite: insertion
 * order; OpenSearch: auditID, cluster, stage) may differ.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadDetector } from '../../src/cli/common.js';
import { Pipeline, type RawBatch } from '../../src/pipeline/pipeline.js';
import { OpenSearchStore } from '../../src/store/opensearch/store.js';
import type { PostureFilter, ViolationFilter } from '../../src/store/admission-queries.js';
import type { AlertFilter, AlertRow, AnalystFilter, EventFilter, EventRow, Page, PageOptions } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { StoreReader } from '../../src/store/store.js';
import { SETTLE_MS } from '../../src/store/opensearch/sequence.js';
import { cleanup, tempDir } from '../api/helpers.js';
import { describeWithOpenSearch, startOpenSearch, type OpenSearchNode } from '../opensearch/node.js';
import { admissionTraffic, fleetTraffic } from './fleet-traffic.js';

const SAMPLE = new URL('../../fixtures/sample/audit.log', import.meta.url);
/** A Pod Security migration (violations, refusals, exemptions, a policy failure, posture findings). */
const ADMISSION = new URL('../../fixtures/admission/migration.jsonl', import.meta.url);
const HOUR_US = 3_600_000_000;

/** The log as batches: the sample, then the fleet a chunk at a time per cluster, bad records, redeliveries. */
function batches(): RawBatch[] {
  const out: RawBatch[] = [];
  const lines = readFileSync(SAMPLE, 'utf8').split('\n').filter(Boolean);
  out.push({
    source: 'file:sample',
    cluster: 'sample',
    records: lines.map((text, i) => ({ text, where: `sample:${i + 1}`, line: true })),
    checkpoint: { source: 'file:sample', position: String(lines.length) },
  });
  const fleet = fleetTraffic({ events: 2500 });
  for (let at = 0; at < fleet.length; at += 300) {
    const chunk = fleet.slice(at, at + 300);
    for (const cluster of new Set(chunk.map((e) => e.cluster))) {
      const records = chunk.filter((e) => e.cluster === cluster).map((e, i) => ({ value: e.event, where: `fleet:${at + i}` }));
      out.push({
        source: `kafka:audit/${cluster}`,
        cluster,
        clusterFixed: true,
        records,
        checkpoint: { source: `kafka:audit/${cluster}`, position: String(at + 300) },
      });
    }
  }
  // Bad input: not JSON, an event without its required fields.
  out.push({
    source: 'webhook',
    cluster: 'prod-eu',
    records: [
      { text: '{"kind":"Event", not json', where: 'request 1 item 0' },
      { value: { kind: 'Event', apiVersion: 'audit.k8s.io/v1', stage: 'ResponseComplete' }, where: 'request 1 item 1' },
    ],
  });
  // The migration in two clusters, each in two batches (so its rows and posture alerts are written by several).
  const migration = readFileSync(ADMISSION, 'utf8').split('\n').filter(Boolean);
  const admission: RawBatch[] = [];
  for (const cluster of ['prod-eu', 'staging'])
    for (const [from, to] of [
      [0, 17],
      [17, migration.length],
    ])
      admission.push({
        source: `file:migration-${cluster}`,
        cluster,
        records: migration.slice(from, to).map((text, i) => ({ text, where: `migration:${from + i + 1}`, line: true })),
        checkpoint: { source: `file:migration-${cluster}`, position: String(to) },
      });
  // The report's corner cases (fleet-traffic.ts), in batches of 100.
  const corners = admissionTraffic();
  for (const cluster of new Set(corners.map((e) => e.cluster))) {
    const mine = corners.filter((e) => e.cluster === cluster);
    for (let at = 0; at < mine.length; at += 100)
      admission.push({
        source: `kafka:admission/${cluster}`,
        cluster,
        clusterFixed: true,
        records: mine.slice(at, at + 100).map((e, i) => ({ value: e.event, where: `admission:${at + i}` })),
        checkpoint: { source: `kafka:admission/${cluster}`, position: String(at + 100) },
      });
  }
  // Redelivery (a Kafka rebalance, a webhook retry): batches again, the sample again, a migration batch again.
  out.push(...out.slice(3, 7), out[0]!);
  out.splice(out.length - 5, 0, ...admission);
  out.push(admission[1]!);
  return out;
}

let node: OpenSearchNode;
let dir: string;
let sqlite: SqliteStore;
let os: OpenSearchStore;

describeWithOpenSearch('the OpenSearch store answers every query as the SQLite store does', () => {
  beforeAll(async () => {
    node = await startOpenSearch();
    dir = tempDir('kaudit-diff-');
    sqlite = new SqliteStore(join(dir, 'k.db'));
    os = await OpenSearchStore.open({ url: node.url, indexPrefix: 'diff', replicas: 0, shards: 1 });
    const key = Buffer.alloc(32, 7);
    const pipes = await Promise.all(
      [sqlite, os].map(async (writer) => new Pipeline({ writer, detector: await loadDetector({}), redaction: { enabled: true, key } })),
    );
    for (const b of batches()) for (const p of pipes) await p.submit(b);
    for (const p of pipes) await p.idle();
    await os.refresh();
    // The feed's reads return alerts once settled (see sequence.ts).
    await new Promise((r) => setTimeout(r, SETTLE_MS + 500));
  }, 900_000);

  afterAll(async () => {
    await os?.close();
    sqlite?.close();
    await node?.stop();
    if (dir) cleanup(dir);
  });

  const both = <T>(q: (s: StoreReader) => Promise<T>): Promise<[T, T]> => Promise.all([q(sqlite), q(os)]) as Promise<[T, T]>;

  it('stored the same events, alerts and dead letters', async () => {
    const [a, b] = await both((s) => s.counts());
    expect(a.events).toBeGreaterThan(3000);
    expect(a.alerts).toBeGreaterThan(50);
    expect(a.deadLetters).toBe(2);
    expect(b).toEqual(a);
  });

  it('answers event queries alike, page by page through the cursor to the end', async () => {
    const mid = await middle();
    const one = (await sqlite.queryEvents({ cluster: 'prod-us', resource: 'secrets' }, { limit: 1 })).items[0]!;
    const filters: EventFilter[] = [
      {},
      { user: 'alice@example.com' },
      { user: 'alice*' },
      { verb: 'get', resource: 'secrets' },
      { namespace: 'team-*' },
      { name: 'web-1*' },
      { code: 403 },
      { sourceIP: '203.0.113.7' },
      { cluster: 'prod-eu' },
      { cluster: 'sample' },
      { stage: 'RequestReceived' },
      { subresource: 'exec' },
      { subresource: '', verb: 'list' },
      { since: mid, until: mid + 6 * HOUR_US },
      { auditID: one.auditID },
      { cluster: 'prod-us', namespace: 'payments', verb: 'create' },
      { user: 'nobody@example.com' },
    ];
    for (const f of filters) {
      const [a, b] = await both((s) => pages((p) => s.queryEvents(f, p), 37));
      expectSameEvents(a, b, JSON.stringify(f));
      const [ca, cb] = await both((s) => s.countEvents(f));
      expect(cb, `count ${JSON.stringify(f)}`).toBe(ca);
      expect(ca).toBe(a.length);
    }
    // The full events, as asked for with the rows.
    const [a, b] = await both((s) => s.queryEvents({ cluster: 'sample', resource: 'secrets' }, { limit: 20, includeEvent: true }));
    expectSameEvents(a.items, b.items, 'includeEvent');
    expect(a.items.some((r) => r.event)).toBe(true);
  });

  it('answers the analyst questions alike (one row per request), through the cursor to the end', async () => {
    const mid = await middle();
    const filters: AnalystFilter[] = [{}, { user: 'bob*' }, { namespace: 'payments' }, { cluster: 'staging' }, { since: mid - 12 * HOUR_US, until: mid }];
    for (const f of filters) {
      for (const q of ['execSessions', 'secretReads', 'rbacChanges'] as const) {
        const [a, b] = await both((s) => pages((p) => s[q](f, p), 13));
        if (Object.keys(f).length === 0) expect(a.length, `${q} finds rows`).toBeGreaterThan(0);
        expectSameEvents(a, b, `${q} ${JSON.stringify(f)}`);
      }
    }
    for (const user of ['carol@example.com', 'bob13@example.com', 'ci-deployer']) {
      const [a, b] = await both((s) => pages((p) => s.userActivity({ user }, p), 29));
      expect(a.length).toBeGreaterThan(0);
      expectSameEvents(a, b, `activity ${user}`);
    }
  });

  it('looks events up by their ids alike', async () => {
    const [a, b] = await both(async (s) => {
      const rows = (await s.execSessions({ cluster: 'prod-eu' }, { limit: 10 })).items;
      return Promise.all(rows.map((r) => s.getEvent(r.id)));
    });
    expect(a.length).toBe(10);
    expectSameEvents(a as EventRow[], b as EventRow[], 'getEvent');
    expect(await os.getEvent(1)).toBeUndefined();
  });

  it('ranks and counts over time alike: top, event timelines, alert timelines', async () => {
    const mid = await middle();
    for (const dim of ['user', 'resource', 'verb', 'namespace', 'sourceIP'] as const) {
      for (const w of [{}, { since: mid - 7 * HOUR_US + 1234, until: mid + 5 * HOUR_US - 99 }, { since: mid, until: mid + 1_800_000_000 }]) {
        const [a, b] = await both((s) => s.top(dim, { ...w, limit: 1000 }));
        expect(b, `top ${dim} ${JSON.stringify(w)}`).toEqual(a);
        const [a5, b5] = await both((s) => s.top(dim, { ...w, limit: 5 }));
        expect(b5).toEqual(a5);
        const [ta, tb] = await both((s) => s.eventTimeline(dim, w));
        expect(tb, `timeline ${dim} ${JSON.stringify(w)}`).toEqual(ta);
      }
    }
    const [a, b] = await both((s) => s.alertTimeline({}));
    expect(a.series.length).toBeGreaterThan(0);
    expect(b).toEqual(a);
    const [c, d] = await both((s) => s.alertTimeline({ since: mid, until: mid + 2 * HOUR_US }));
    expect(d).toEqual(c);
  });

  it('lists alerts alike, with their grouping counts, by filter and page', async () => {
    const filters: AlertFilter[] = [
      {},
      { minSeverity: 'high' },
      { rule: ['pod-exec', 'secret-read'] },
      { cluster: 'prod-us' },
      { namespace: 'payments' },
      { user: 'alice@example.com' },
    ];
    for (const f of filters) {
      const [a, b] = await both((s) => pages((p) => s.queryAlerts(f, p), 11));
      expect(b.map(alertShape), `alerts ${JSON.stringify(f)}`).toEqual(a.map(alertShape));
      const [ca, cb] = await both((s) => s.countAlerts(f));
      expect(cb).toBe(ca);
    }
    const all = await pages((p) => sqlite.queryAlerts({}, p), 500);
    expect(all.some((r) => r.count > 1)).toBe(true); // repeats were grouped
    // The feed's replay and the Kafka outbox: every alert, oldest first, in commit order.
    const [ra, rb] = await both((s) => s.alertsAfter({ afterId: 0 }, 10_000));
    expect(rb.map(alertShape)).toEqual(ra.map(alertShape));
    expect(ra.length).toBe(all.length);
    const [ka, kb] = await both((s) => s.committedAlertsAfter(0, 10_000));
    expect(kb.map((k) => k.body)).toEqual(ka.map((k) => k.body));
    // Resuming after an alert's id gives the rest, in both.
    const [rest1, rest2] = await both(async (s) => {
      const rows = await s.alertsAfter({ afterId: 0 }, 10);
      return s.alertsAfter({ afterId: rows[9]!.id }, 10_000);
    });
    expect(rest2.map(alertShape)).toEqual(rest1.map(alertShape));
    expect(rest1.length).toBe(all.length - 10);
    // An alert by its id.
    const [ga, gb] = await both(async (s) => s.getAlert((await s.queryAlerts({ minSeverity: 'high' }, { limit: 1 })).items[0]!.id));
    expect(alertShape(gb!)).toEqual(alertShape(ga!));
    expect(await os.latestAlertId()).toBe(rb.at(-1)!.id);
  });

  it('answers the Pod Security report and the posture table alike, page by page through the cursor', async () => {
    const day = Date.UTC(2026, 10, 3) * 1000;
    const filters: ViolationFilter[] = [
      {},
      { namespace: 'shop' },
      { namespace: 's*' },
      { level: 'baseline' },
      { level: 'restricted' },
      { signals: ['denied'] },
      { signals: ['policy'] },
      { signals: ['exempt'] },
      { signals: ['audit', 'denied', 'policy', 'exempt', 'error'] },
      { signals: ['audit', 'denied', 'policy', 'exempt', 'error'], level: 'baseline' },
      { cluster: 'staging' },
      { user: 'alice*' },
      { user: 'system:serviceaccount:*' },
      { since: day, until: day + 86_400_000_000 },
      { namespace: 'payments', signals: ['audit', 'denied'] },
      { namespace: 'nowhere' },
    ];
    let some = 0;
    for (const [i, f] of filters.entries()) {
      const [a, b] = await both((s) => pages((p) => s.psaViolations(f, p), i === 0 ? 7 : 60));
      expect(b, `psa-violations ${JSON.stringify(f)}`).toEqual(a);
      const [a1, b1] = await both((s) => s.psaViolations(f, { limit: 1000 }));
      expect(b1).toEqual(a1);
      expect(a1.items).toEqual(a);
      some += a.length;
    }
    const all = (await sqlite.psaViolations({ signals: ['audit', 'denied', 'policy', 'exempt'] })).items;
    // The report has what makes it worth comparing: every cluster, repeated requests, refusals, several users.
    expect(new Set(all.map((r) => r.cluster))).toEqual(new Set(['prod-eu', 'prod-us', 'staging']));
    expect(all.some((r) => r.requests > 3 && r.userCount > 1)).toBe(true);
    expect(all.some((r) => r.denied > 0)).toBe(true);
    expect(all.some((r) => r.binding !== undefined)).toBe(true);
    expect(some).toBeGreaterThan(100);
    const postures: PostureFilter[] = [{}, { namespace: 'shop' }, { namespace: 'p*' }, { cluster: 'prod-eu' }, { since: day, until: day + 86_400_000_000 }];
    for (const f of postures) {
      const [a, b] = await both(async (s) => {
        const rows = await pages((p) => s.posture(f, p), 2);
        // Alert ids are each kind's own: the last finding's alert is compared by what it is.
        return Promise.all(rows.map(async ({ lastAlertID, ...r }) => ({ ...r, last: alertShape((await s.getAlert(lastAlertID))!) })));
      });
      expect(b, `posture ${JSON.stringify(f)}`).toEqual(a);
    }
    const table = (await sqlite.posture({})).items;
    expect(table.length).toBeGreaterThan(3);
    expect(table.some((r) => r.workloads > 1 && r.findings > r.workloads)).toBe(true);
    // The comparison fails on a difference.
    const mutated = all.map((r, i) => (i === 2 ? { ...r, requests: r.requests + 1 } : r));
    expect(() => expect(mutated).toEqual(all)).toThrow();
  }, 600_000);

  it('keeps the same dead letters, positions and overview', async () => {
    const [a, b] = await both((s) => s.deadLetters(10));
    const shape = (d: { source: string; position: string; reason: string; size: number }) => ({
      source: d.source,
      position: d.position,
      reason: d.reason,
      size: d.size,
    });
    expect(b.map(shape)).toEqual(a.map(shape));
    for (const src of ['file:sample', 'kafka:audit/prod-eu', 'kafka:audit/staging', 'nothing']) {
      const [pa, pb] = await both((s) => s.position(src));
      expect(pb, src).toBe(pa);
    }
    const [oa, ob] = await both((s) => s.overview());
    expect({ ...ob, positions: ob.positions.map((p) => p.source) }).toEqual({ ...oa, positions: oa.positions.map((p) => p.source) });
    expect(await os.sizeBytes()).toBeGreaterThan(0);
    await expect(os.check()).resolves.toBeUndefined();
  });

  it('fails the comparison when a row differs (the check is not vacuous)', async () => {
    const rows = await pages((p) => sqlite.rbacChanges({}, p), 100);
    const changed = rows.map((r, i) => (i === 3 ? { ...r, verb: 'patch-x' } : r));
    expect(() => expectSameEvents(rows, changed, 'mutated')).toThrow();
    expect(() => expectSameEvents(rows, rows.slice(1), 'shorter')).toThrow();
  });
});

/** The middle of the stored span of event time (microseconds). */
async function middle(): Promise<number> {
  const o = await sqlite.overview();
  return Math.floor((o.oldestEvent! + o.newestEvent!) / 2);
}

/** Every row, page by page through the cursor (each page at most `limit`); checks no row repeats. */
async function pages<T>(q: (p: PageOptions) => Promise<Page<T>>, limit: number): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 10_000; i++) {
    const p = await q({ limit, cursor });
    expect(p.items.length).toBeLessThanOrEqual(limit);
    out.push(...p.items);
    if (!p.next) return out;
    cursor = p.next;
  }
  throw new Error('paging did not end');
}

const key = (r: EventRow) => `${r.auditID}\u0000${r.cluster}\u0000${r.stage}`;

/** Same rows, newest first in both; ties in time in any order; ids apart. */
function expectSameEvents(a: EventRow[], b: EventRow[], what: string): void {
  for (const rows of [a, b]) {
    for (let i = 1; i < rows.length; i++) expect(rows[i - 1]!.time >= rows[i]!.time, `${what}: newest first`).toBe(true);
    expect(new Set(rows.map(key)).size, `${what}: no row twice`).toBe(rows.length);
  }
  const canon = (rows: EventRow[]) =>
    rows.map(({ id: _id, ...r }) => r).sort((x, y) => (x.time !== y.time ? (x.time < y.time ? 1 : -1) : key(x as EventRow) < key(y as EventRow) ? -1 : 1));
  expect(canon(b), what).toEqual(canon(a));
}

/** An alert row without the ids each kind numbers its own way (whether it links an event is kept). */
function alertShape(r: AlertRow): Record<string, unknown> {
  const { id: _id, eventId, lastEventId, ...rest } = r;
  return { ...rest, linked: eventId !== null, lastLinked: lastEventId !== null };
}
