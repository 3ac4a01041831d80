/**
 * The fleet store stopped mid-load and started again (issue 20's fault test), with real `kaudit serve` processes, a
 * real OpenSearch node and a real Kafka broker:
 *
 *  - a webhook node writing to OpenSearch directly answers 503 with Retry-After while the node is down (what the
 *    apiserver's webhook client retries), /readyz says why, and the sender's retried batches end stored exactly once;
 *  - a Kafka detector writing to OpenSearch pauses and retries without committing an offset while the node is down,
 *    and afterwards every produced event is stored exactly once and every exec raised its one pod-exec alert;
 *  - the API answers 503 with a one-line reason, not 500, for a node that is down and for an index whose shard stays
 *    unallocated ("all shards failed"); a query over a day's index whose shard starts a moment after it arrived (as
 *    just after a detector created it) waits for it and answers 200.
 *
 * Stored events are counted by (cluster, auditID, stage) in OpenSearch against what was acknowledged or produced.
 */
import { expect, it } from 'vitest';
import { tempDir, waitFor } from '../helpers/events.js';
import { describeWithKafka } from '../kafka/broker.js';
import type { ServeProcess } from '../kafka/serve-process.js';
import { fleetServices, postUntilStored, type Json } from './harness.js';
import { traffic } from './traffic.js';

describeWithKafka('the fleet store stopped mid-load and started again', () => {
  const fleet = fleetServices();
  const { start } = fleet;

  /** Every stored event's key, `cluster/auditID/stage`, read from OpenSearch (after a refresh). */
  async function storedKeys(prefix: string): Promise<string[]> {
    await fetch(`${fleet.os.url}/${prefix}-events*/_refresh`, { method: 'POST' });
    const r = (await (
      await fetch(`${fleet.os.url}/${prefix}-events*/_search`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ size: 10_000, _source: ['cluster', 'auditID', 'stage'], query: { match_all: {} } }),
      })
    ).json()) as { hits?: { hits: { _source: { cluster: string; auditID: string; stage: string } }[] } };
    // An index just created answers 503 ("all shards failed") for a moment: nothing to count yet, the callers poll.
    if (!r.hits) return [];
    return r.hits.hits.map((h) => `${h._source.cluster}/${h._source.auditID}/${h._source.stage}`);
  }

  /** Each key once: the keys that are missing, and those stored more than once. */
  function compare(stored: string[], expected: string[]): { missing: string[]; doubled: string[]; unexpected: string[] } {
    const n = new Map<string, number>();
    for (const k of stored) n.set(k, (n.get(k) ?? 0) + 1);
    const want = new Set(expected);
    return {
      missing: expected.filter((k) => !n.has(k)),
      doubled: [...n].filter(([, c]) => c > 1).map(([k]) => k),
      unexpected: stored.filter((k) => !want.has(k)),
    };
  }

  const readyz = async (p: ServeProcess) => {
    const r = await fetch(`${p.url}/readyz`);
    return { status: r.status, body: (await r.json()) as { status: string; error?: string } };
  };

  it('a webhook node answers 503 with Retry-After while OpenSearch is down; the retried batches end stored once', async () => {
    const dir = tempDir();
    const node = await start(dir, 'direct', { store: { opensearch: { url: fleet.os.url, indexPrefix: 'down-a', replicas: 0 } } });
    try {
      const clusters = ['prod-eu', 'prod-us'];
      const batches = clusters.flatMap((c) => {
        const t = traffic(c, 6, 25);
        const out: { cluster: string; items: Json[] }[] = [];
        for (let i = 0; i < t.length; i += 40) out.push({ cluster: c, items: t.slice(i, i + 40) });
        return out;
      });
      const answers: { status: number; retryAfter: string | null; error?: string }[] = [];
      const acknowledged: string[] = [];
      // The apiserver's webhook client: one batch at a time, sent again after a 5xx or 429 (waiting Retry-After).
      const send = async (b: { cluster: string; items: Json[] }) => {
        await postUntilStored(node.url, b.cluster, b.items, { maxWaitMs: 2000, onAnswer: (a) => answers.push(a) });
        acknowledged.push(...b.items.map((e) => `${b.cluster}/${e.auditID as string}/${e.stage as string}`));
      };
      const third = Math.floor(batches.length / 3);
      for (const b of batches.slice(0, third)) await send(b);

      // Down mid-load: the sender keeps sending while the node is away.
      await fleet.os.halt();
      const sending = (async () => {
        for (const b of batches.slice(third)) await send(b);
      })();
      const down = await waitFor(
        async () => {
          const r = await readyz(node);
          return r.status === 503 ? r : undefined;
        },
        '/readyz to say the store is away',
        60_000,
      );
      expect(down.body.error).toMatch(/OpenSearch at http:\/\/127\.0\.0\.1:\d+ is unreachable/);
      await waitFor(() => answers.filter((a) => a.status === 503).length >= 2, 'two retryable answers to the sender', 120_000);
      const refused = answers.filter((a) => a.status >= 500);
      // Retryable, with Retry-After and the reason: never a 500 the apiserver would only retry blindly.
      expect(refused.map((a) => a.status)).toEqual(refused.map(() => 503));
      expect(refused.every((a) => a.retryAfter === '5')).toBe(true);
      expect(refused[0]!.error).toMatch(/the store cannot take the batch now; retry later \(OpenSearch at .* is unreachable/);
      const before = acknowledged.length;

      await fleet.os.start();
      await sending;
      expect(acknowledged.length).toBeGreaterThan(before);
      // Ready again by itself.
      await waitFor(async () => (await readyz(node)).status === 200, '/readyz to be ready again', 60_000);

      const all = batches.flatMap((b) => b.items.map((e) => `${b.cluster}/${e.auditID as string}/${e.stage as string}`));
      expect(acknowledged.sort()).toEqual([...all].sort());
      const c = compare(await storedKeys('down-a'), acknowledged);
      expect(c).toEqual({ missing: [], doubled: [], unexpected: [] });
      const retried = answers.filter((a) => a.status !== 200);
      expect(retried.every((a) => a.status === 503 && a.retryAfter === '5')).toBe(true);
      expect(await node.metric('kaudit_webhook_rejected_total')).toBe(retried.length);
      process.stdout.write(`webhook node: ${acknowledged.length} events stored once; ${retried.length} batches answered 503 while OpenSearch was down\n`);
      expect((await node.stop()).code).toBe(0);
    } catch (e) {
      fleet.failed(e);
    }
  }, 600_000);

  it('a Kafka detector pauses without committing while OpenSearch is down; afterwards every event is stored once, every alert raised once', async () => {
    const dir = tempDir();
    const topic = 'down-events';
    const groupId = 'down-detectors';
    const admin = fleet.kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
      const det = await start(dir, 'det', {
        store: { opensearch: { url: fleet.os.url, indexPrefix: 'down-b', replicas: 0 } },
        kafka: {
          brokers: fleet.broker.brokers,
          groupId,
          // A session shorter than a batch retrying through the outage (bulk retries take 11-13 s): the detector must
          // stay in its group (or get back in) and consume on.
          sessionTimeoutMs: 6000,
          heartbeatIntervalMs: 500,
          fromBeginning: true,
          topics: { events: [topic], alerts: '' },
        },
      });
      await waitFor(async () => (await det.metric('kaudit_kafka_assigned_partitions')) === 2, 'the detector to own both partitions', 90_000);
      const producer = fleet.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const produced: string[] = [];
      const execs: string[] = [];
      // What an ingest-only webhook node writes: an event a message, keyed by cluster and user, the cluster in a header.
      const produce = async (cluster: string, events: Json[]) => {
        await producer.send({
          topic,
          acks: -1,
          messages: events.map((e) => ({
            key: `${cluster}/${(e.user as { username: string }).username}`,
            value: JSON.stringify(e),
            headers: { 'kaudit-cluster': cluster },
          })),
        });
        for (const e of events) {
          produced.push(`${cluster}/${e.auditID as string}/${e.stage as string}`);
          if ((e.objectRef as { subresource?: string }).subresource === 'exec') execs.push(`${cluster}/${e.auditID as string}`);
        }
      };
      const offsets = async () => {
        const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
        return t!.partitions.map((p) => `${p.partition}:${p.offset}`).sort();
      };

      await produce('prod-eu', traffic('prod-eu', 4, 30));
      await waitFor(async () => (await storedKeys('down-b')).length === produced.length, 'the first load stored', 120_000);
      await waitFor(async () => ((await det.metric('kaudit_kafka_consumer_lag')) ?? 1) === 0, 'the first load committed', 60_000);
      const committedBefore = await offsets();

      await fleet.os.halt({ hard: true });
      await produce('prod-us', traffic('prod-us', 4, 30));
      await produce('staging', traffic('staging', 3, 30));
      const down = await waitFor(
        async () => {
          const r = await readyz(det);
          return r.status === 503 ? r : undefined;
        },
        "the detector's /readyz to say the store is away",
        60_000,
      );
      expect(down.body.error).toMatch(/OpenSearch at .* is unreachable/);
      // It tries and fails (the batch stays unacknowledged), and commits nothing meanwhile.
      await waitFor(async () => ((await det.metric('kaudit_kafka_consumer_batch_errors_total')) ?? 0) >= 1, 'a failed batch', 120_000);
      const committedWhileDown = await offsets();
      await new Promise((r) => setTimeout(r, 8000));
      expect(await offsets()).toEqual(committedWhileDown);
      expect(committedWhileDown).toEqual(committedBefore); // the first load's, nothing of the second
      expect(await det.metric('kaudit_kafka_consumer_pauses_total')).toBeGreaterThanOrEqual(1);

      await fleet.os.start();
      await waitFor(async () => (await storedKeys('down-b')).length >= produced.length, 'every produced event stored', 180_000);
      await new Promise((r) => setTimeout(r, 3000)); // and no more arrive
      expect(compare(await storedKeys('down-b'), produced)).toEqual({ missing: [], doubled: [], unexpected: [] });
      // Committed to the end only once everything is stored.
      await waitFor(async () => ((await det.metric('kaudit_kafka_consumer_lag')) ?? 1) === 0, 'the detector to commit to the end', 60_000);
      await waitFor(async () => (await readyz(det)).status === 200, "the detector's /readyz ready again", 60_000);

      // Every exec raised its pod-exec alert once (one row, counted once).
      const alerts = await waitFor(
        async () => {
          const a = ((await det.get(`/api/v1/alerts?rule=pod-exec&limit=1000`)) as { items: Json[] }).items;
          return a.length >= execs.length ? a : undefined;
        },
        `${execs.length} pod-exec alerts`,
        60_000,
      ).catch(async (e: unknown) => {
        const r = await fetch(`${fleet.os.url}/down-b-alerts/_search?size=200`);
        const rows = ((await r.json()) as { hits: { hits: { _source: Json }[] } }).hits.hits.map((h) => ({ ...h._source, body: undefined }));
        process.stderr.write(`alerts index: ${JSON.stringify(rows)}\n`);
        throw e;
      });
      expect(alerts.map((a) => `${a.cluster as string}/${a.auditID as string}`).sort()).toEqual([...execs].sort());
      expect(alerts.filter((a) => a.count !== 1)).toEqual([]);
      // No alert row left unstamped (written by a batch whose finish failed, hidden from every read).
      await fetch(`${fleet.os.url}/down-b-alerts/_refresh`, { method: 'POST' });
      const hidden = (await (
        await fetch(`${fleet.os.url}/down-b-alerts/_count`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query: { bool: { must_not: { exists: { field: 'seq' } } } } }),
        })
      ).json()) as { count: number };
      expect(hidden.count).toBe(0);
      process.stdout.write(
        `kafka detector: ${produced.length} events stored once, ${execs.length} exec alerts once, offsets held at ${committedWhileDown.join(' ')} while down\n`,
      );
      await producer.disconnect();
      expect((await det.stop()).code).toBe(0);
    } catch (e) {
      fleet.failed(e);
    } finally {
      await admin.disconnect();
    }
  }, 600_000);

  it('the API answers 503 with the reason, not 500, while OpenSearch is down or an index is not yet searchable', async () => {
    const dir = tempDir();
    const prefix = 'down-c';
    const q = await start(dir, 'query', { store: { opensearch: { url: fleet.os.url, indexPrefix: prefix, replicas: 0 } } });
    try {
      // A day's events index whose shard cannot be allocated: what a search meets just after the index is created.
      const r = await fetch(`${fleet.os.url}/${prefix}-events-2026.11.05`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ settings: { 'index.routing.allocation.require._name': 'no-such-node', number_of_replicas: 0 } }),
      });
      expect(r.status, await r.text()).toBe(200);
      // And the day before, searchable: OpenSearch answers a search over both from the one shard it has (200, partial).
      const before = await fetch(`${fleet.os.url}/${prefix}-events-2026.11.04`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ settings: { number_of_replicas: 0 } }),
      });
      expect(before.status, await before.text()).toBe(200);
      await fetch(`${fleet.os.url}/_cluster/health/${prefix}-events-2026.11.04?wait_for_status=green&timeout=30s`);
      for (const path of ['/api/v1/events?limit=5', '/api/v1/analyst/exec', '/api/v1/events/count']) {
        const a = await fetch(q.url + path);
        const body = (await a.json()) as { error: string };
        expect(a.status, `${path}: ${JSON.stringify(body)}`).toBe(503);
        expect(a.headers.get('retry-after')).toBe('5');
        expect(body.error).toMatch(/^the store is unavailable; retry later: OpenSearch at .*(shard|unavailable)/);
        expect(body.error).not.toContain('\n');
        process.stdout.write(`${path}: 503 ${body.error}\n`);
      }
      // The not yet allocated index alone: OpenSearch answers 503 "all shards failed".
      await fetch(`${fleet.os.url}/${prefix}-events-2026.11.04`, { method: 'DELETE' });
      const alone = await fetch(`${q.url}/api/v1/events?limit=5`);
      expect(alone.status).toBe(503);
      expect(((await alone.json()) as { error: string }).error).toMatch(/answered 503 to POST .*all shards failed/);
      await fetch(`${fleet.os.url}/${prefix}-events-2026.11.05`, { method: 'DELETE' });
      expect((await fetch(`${q.url}/api/v1/events?limit=5`)).status).toBe(200);

      // A day's index whose shard starts a moment after the query arrives (one a detector has just created): the query
      // waits for it and answers, rather than 503.
      const late = await fetch(`${fleet.os.url}/${prefix}-events-2026.11.06`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ settings: { 'index.routing.allocation.require._name': 'no-such-node', number_of_replicas: 0 } }),
      });
      expect(late.status, await late.text()).toBe(200);
      const asked = Date.now();
      const answer = fetch(`${q.url}/api/v1/events?limit=5`);
      await new Promise((r) => setTimeout(r, 1500));
      const allocate = await fetch(`${fleet.os.url}/${prefix}-events-2026.11.06/_settings`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ 'index.routing.allocation.require._name': null }),
      });
      expect(allocate.status, await allocate.text()).toBe(200);
      const a = await answer;
      expect(a.status, await a.clone().text()).toBe(200);
      expect(Date.now() - asked).toBeGreaterThanOrEqual(1500); // it did wait for the shard
      process.stdout.write(`a query over an index whose shard started ${1500} ms after it arrived: 200 after ${Date.now() - asked} ms\n`);
      await fetch(`${fleet.os.url}/${prefix}-events-2026.11.06`, { method: 'DELETE' });

      await fleet.os.halt();
      try {
        const a = await fetch(`${q.url}/api/v1/alerts`);
        const body = (await a.json()) as { error: string };
        expect(a.status).toBe(503);
        expect(a.headers.get('retry-after')).toBe('5');
        expect(body.error).toMatch(/^the store is unavailable; retry later: OpenSearch at http:\/\/127\.0\.0\.1:\d+ is unreachable/);
      } finally {
        await fleet.os.start();
      }
      await waitFor(async () => (await fetch(`${q.url}/api/v1/alerts`)).status === 200, 'the API to answer again', 60_000);
      expect((await q.stop()).code).toBe(0);
    } catch (e) {
      fleet.failed(e);
    }
  }, 300_000);
});
