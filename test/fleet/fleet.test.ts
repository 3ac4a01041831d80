/**
 * The fleet of issue 20, all real `kaudit serve` processes on 127.0.0.1 with one real Kafka broker and one real
 * OpenSearch node: an ingest-only webhook node, two detectors (one consumer group, writing to OpenSearch) and a query
 * node (kafka.consume: false, the OpenSearch store). Apiserver-style webhook POSTs for three clusters go to the webhook
 * node; the query node answers the analyst queries for every cluster and its WebSocket feed delivers the alerts the
 * detectors raised. Then a detector is SIGKILLed while a second load is in flight: afterwards every acknowledged event
 * is stored exactly once fleet-wide (counted by auditID and stage in OpenSearch) and no alert is doubled.
 */
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { feed } from '../api/helpers.js';
import { tempDir, waitFor } from '../helpers/events.js';
import { describeWithKafka } from '../kafka/broker.js';
import { fleetServices, postUntilStored } from './harness.js';
import { traffic } from './traffic.js';

const CLUSTERS = ['prod-eu', 'prod-us', 'staging'];

describeWithKafka('a fleet: webhook node, two detectors and a query node on one OpenSearch', () => {
  const services = fleetServices();

  it('answers every analyst query for all clusters, feeds the alerts, and survives a detector SIGKILLed mid-load', async () => {
    try {
      await fleet();
    } catch (e) {
      services.failed(e);
    }
  }, 900_000);

  async function fleet(): Promise<void> {
    const { os, broker, kafka } = services;
    const dir = tempDir();
    const topics = { events: ['fleet-events'], alerts: 'fleet-alerts', deadLetter: 'fleet-dead', state: 'fleet-state' };
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: 'fleet-events', numPartitions: 4 },
        { topic: 'fleet-alerts', numPartitions: 1 },
        { topic: 'fleet-dead', numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const kafkaBase = { brokers: broker.brokers, groupId: 'fleet-detectors', sessionTimeoutMs: 6000, heartbeatIntervalMs: 500 };
    const opensearch = { url: os.url, indexPrefix: 'fleet', replicas: 0 };
    const start = (name: string, config: Record<string, unknown>) => services.start(dir, name, config);
    const webhook = await start('webhook', { store: { path: join(dir, 'webhook.db') }, kafka: { ...kafkaBase, topics, ingestOnly: true } });
    // Every detector and the query node may publish alerts: the shared store elects one of them as the outbox.
    const det = [
      await start('det-1', { store: { opensearch }, kafka: { ...kafkaBase, topics } }),
      await start('det-2', { store: { opensearch }, kafka: { ...kafkaBase, topics } }),
    ];
    const query = await start('query', { store: { opensearch }, kafka: { ...kafkaBase, topics, consume: false } });
    await waitFor(
      async () => ((await det[0]!.metric('kaudit_kafka_assigned_partitions')) ?? 0) + ((await det[1]!.metric('kaudit_kafka_assigned_partitions')) ?? 0) === 4,
      'the detectors to share the 4 partitions',
      90_000,
    );
    const live = feed(`${query.url.replace('http', 'ws')}/api/v1/alerts/stream`);
    await live.opened;

    const acknowledged: Record<string, unknown>[] = [];
    const send = async (events: Record<string, unknown>[], cluster: string) => {
      for (let i = 0; i < events.length; i += 50) {
        const part = events.slice(i, i + 50);
        await postUntilStored(webhook.url, cluster, part);
        acknowledged.push(...part.map((e) => ({ ...e, cluster })));
      }
    };

    // First load: three clusters, 4 users each.
    for (const c of CLUSTERS) await send(traffic(c, 4, 20), c);
    // Asked once: a 503 fails the test. The first reads meet the day's events index a detector has just created; the
    // store waits for its shard to start rather than answer unavailable.
    const get = (path: string) => query.get(path) as Promise<{ items: Record<string, unknown>[] }>;
    // Polled until the whole load is there (the detectors store it in their own time, partition by partition); then
    // every answer must be exact.
    await waitFor(
      async () => ((await query.get('/api/v1/events/count')) as { count: number }).count === acknowledged.length,
      `the first load's ${acknowledged.length} events on the query node`,
      120_000,
    );
    for (const c of CLUSTERS) {
      expect((await get(`/api/v1/analyst/exec?cluster=${c}`)).items).toHaveLength(4);
      expect((await get(`/api/v1/analyst/secret-reads?cluster=${c}`)).items).toHaveLength(4);
      expect((await get(`/api/v1/analyst/rbac-changes?cluster=${c}`)).items).toHaveLength(4);
      const activity = await get(`/api/v1/events?user=${encodeURIComponent(`${c}-dev-1@example.com`)}&cluster=${c}&limit=100`);
      expect(activity.items).toHaveLength(23);
    }
    // The feed of the query node delivers the detectors' exec alerts, for every cluster.
    // Other rules alert too (RBAC changes, Secret reads), and a cluster's alerts may all come before the next's: wait
    // for the 12 execs themselves.
    const execAlerts = () => live.alerts.filter((a) => a.rule === 'pod-exec');
    await waitFor(async () => execAlerts().length >= 12, '12 pod-exec alerts on the query node feed', 120_000);
    expect(execAlerts()).toHaveLength(12);
    expect(new Set(execAlerts().map((a) => a.cluster))).toEqual(new Set(CLUSTERS));

    // One outbox in the fleet. The detector that holds it (else det-1) is the one SIGKILLed below.
    const holders = await Promise.all([...det, query].map(async (n) => (await n.metric('kaudit_kafka_alerts_outbox_holder')) ?? 0));
    expect(holders.reduce((a, b) => a + b, 0)).toBe(1);
    const victim = holders[1] === 1 ? 1 : 0;
    const survivor = 1 - victim;

    // Second load (other users: their execs are alerts of their own, not repeats grouped with the first load's) while
    // a detector is SIGKILLed in the middle of it.
    const second = CLUSTERS.flatMap((c) => traffic(c, 3, 60, 'ops').map((e) => ({ e, c })));
    let killedAt = 0;
    for (let i = 0; i < second.length; i += 50) {
      const part = second.slice(i, i + 50);
      await send(
        part.map((x) => x.e),
        part[0]!.c,
      );
      if (!killedAt && i >= second.length / 3) {
        killedAt = i;
        await det[victim]!.kill();
      }
    }
    expect(det[victim]!.alive()).toBe(false);
    await waitFor(async () => (await det[survivor]!.metric('kaudit_kafka_assigned_partitions')) === 4, 'the survivor to own every partition', 90_000);

    // Every acknowledged event exactly once fleet-wide: count in OpenSearch by (auditID, stage).
    const osCount = async () => {
      await fetch(`${os.url}/fleet-events*/_refresh`, { method: 'POST' });
      const r = (await (
        await fetch(`${os.url}/fleet-events*/_search`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ size: 0, track_total_hits: true, aggs: { ids: { cardinality: { field: 'auditID', precision_threshold: 40000 } } } }),
        })
      ).json()) as { hits: { total: { value: number } }; aggregations: { ids: { value: number } } };
      return { total: r.hits.total.value, distinct: r.aggregations.ids.value };
    };
    await waitFor(async () => (await osCount()).total >= acknowledged.length, `${acknowledged.length} events in OpenSearch`, 180_000);
    await new Promise((r) => setTimeout(r, 3000)); // and no more arrive
    const counted = await osCount();
    expect(counted.total).toBe(acknowledged.length);
    expect(counted.distinct).toBe(acknowledged.length); // one stage each: auditID alone is the key here

    // No alert doubled: one pod-exec alert per exec, each counted once in its group.
    const execs = acknowledged.filter((e) => (e.objectRef as { subresource?: string }).subresource === 'exec');
    const alerts = await waitFor(
      async () => {
        const a = (await get(`/api/v1/alerts?rule=pod-exec&limit=1000`)).items;
        return a.length >= execs.length ? a : undefined;
      },
      `${execs.length} pod-exec alerts`,
      120_000,
    );
    expect(alerts).toHaveLength(execs.length);
    expect(alerts.filter((a) => a.count !== 1)).toEqual([]);
    expect(new Set(alerts.map((a) => `${a.cluster}/${a.auditID}`)).size).toBe(execs.length);
    process.stdout.write(
      `fleet: ${acknowledged.length} events acknowledged, stored once each; det-${victim + 1} SIGKILLed after ${killedAt} of the second load's ${second.length}\n`,
    );
    live.ws.close();
    // The alerts topic: every alert of the store once (ids unique), none missing, across the SIGKILL.
    const stored = (await get(`/api/v1/alerts?limit=10000`)).items.map((a) => `${a.rule as string}/${a.cluster as string}/${a.auditID as string}`);
    const published: string[] = [];
    const reader = kafka.consumer({ groupId: 'fleet-alerts-check' });
    await reader.connect();
    await reader.subscribe({ topic: 'fleet-alerts', fromBeginning: true });
    await reader.run({ eachMessage: async ({ message }) => void published.push(String(message.headers?.['kaudit-alert-id'])) });
    await waitFor(() => published.length >= stored.length, `${stored.length} alerts on the alerts topic`, 120_000).catch((e: unknown) => {
      process.stderr.write(`published ${published.length} of ${stored.length}\n`);
      throw e;
    });
    await new Promise((r) => setTimeout(r, 5000)); // and no copies follow
    await reader.disconnect();
    expect(published.length - new Set(published).size).toBe(0);
    expect([...published].sort()).toEqual([...stored].sort());
    const holdersAfter = await Promise.all([det[survivor]!, query].map(async (n) => (await n.metric('kaudit_kafka_alerts_outbox_holder')) ?? 0));
    expect(holdersAfter.reduce((a, b) => a + b, 0)).toBe(1);
    process.stdout.write(`fleet alerts topic: ${published.length} alerts once each; the outbox was on ${['det-1', 'det-2', 'query'][holders.indexOf(1)]}\n`);
    for (const n of [webhook, det[survivor]!, query]) expect((await n.stop()).code).toBe(0);
  }
});
