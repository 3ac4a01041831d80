/**
 * The fleet's alerts outbox fenced against a zombie holder (issue 20): the holder stalls after it has read alerts to
 * publish and before it produces them (a GC pause, SIGSTOP, a slow store), its role expires, another node takes the
 * outbox over and publishes those alerts; when the stalled holder goes on it must not produce them again. Real broker,
 * real OpenSearch node, two outboxes on two store connections as two nodes have; the stall is the stalled holder's
 * store read held back past the role's lifetime.
 */
import type { Kafka } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { HEADER_ALERT_ID, KafkaAlertOutbox } from '../../src/sinks/kafka.js';
import { OpenSearchStore } from '../../src/store/opensearch/store.js';
import { waitFor } from '../helpers/events.js';
import { startOpenSearch, type OpenSearchNode } from '../opensearch/node.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { makeStream, TestDetector } from './fixtures.js';
import { quietKafka, readTopic, testKafkaConfig } from './harness.js';

const ROLE_TTL_MS = 3000;

describeWithKafka('the alerts outbox of a shared store, fenced', () => {
  let broker: Broker;
  let node: OpenSearchNode;
  let kafka: Kafka;
  beforeAll(async () => {
    [broker, node] = await Promise.all([startBroker(), startOpenSearch()]);
    kafka = quietKafka(broker.brokers);
  }, 300_000);
  afterAll(async () => {
    await Promise.all([broker?.stop(), node?.stop()]);
  }, 120_000);

  it('a holder stalled past its role between reading alerts and producing them does not produce them after its successor', async () => {
    const topic = 'fenced-alerts';
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const settings = { url: node.url, indexPrefix: 'fenced', replicas: 0, shards: 1 };
    const storeA = await OpenSearchStore.open(settings);
    const storeB = await OpenSearchStore.open(settings);
    const pipelineA = new Pipeline({ writer: storeA, detector: new TestDetector() });
    const pipelineB = new Pipeline({ writer: storeB, detector: new TestDetector() });
    // Node A's view of the store, whose next read of alerts to publish is answered only after 3 lifetimes of the role.
    let stallNext = false;
    let stalled = 0;
    const viewA = Object.create(storeA) as OpenSearchStore;
    viewA.committedAlertsAfter = async (after, limit) => {
      const rows = await storeA.committedAlertsAfter(after, limit);
      if (stallNext && rows.length > 0) {
        stallNext = false;
        await new Promise((r) => setTimeout(r, 3 * ROLE_TTL_MS));
        stalled = rows.length;
      }
      return rows;
    };
    const config = testKafkaConfig(broker.brokers, { topics: { events: ['unused'], alerts: topic, deadLetter: '', state: '' } });
    const outbox = (store: OpenSearchStore, pipeline: Pipeline, name: string) =>
      new KafkaAlertOutbox({ config, store, sink: pipeline, bus: pipeline.bus, kafka: quietKafka(broker.brokers, name), pollMs: 100, roleTtlMs: ROLE_TTL_MS });
    const a = outbox(viewA, pipelineA, 'outbox-a');
    const b = outbox(storeB, pipelineB, 'outbox-b');
    const stream = makeStream(2000, { burstEvery: 100 });
    const submit = (from: number, to: number) =>
      pipelineA.submit({
        source: 'test',
        cluster: 'prod-eu',
        records: stream.messages.slice(from, to).map((m, i) => ({ text: m.value, where: `${from + i}` })),
      });
    const half = Math.floor(stream.messages.length / 2);
    try {
      await a.start();
      await waitFor(() => a.holding, 'A to hold the outbox role', 60_000);
      await b.start();
      await submit(0, half);
      await waitFor(async () => a.published > 0 && a.published === (await storeA.latestAlertId()), "the first half's alerts published by A", 60_000);
      expect(b.holding).toBe(false);

      // A reads the second half's alerts and stalls; its role runs out, B takes over and publishes them.
      stallNext = true;
      await submit(half, stream.messages.length);
      await waitFor(() => b.holding, 'B to take the outbox over', 30_000);
      await waitFor(async () => b.published === (await storeB.latestAlertId()), "the second half's alerts published by B", 60_000);
      // A goes on with the alerts it read, and must find that it no longer holds the role.
      await waitFor(() => stalled > 0, 'A to go on after its stall', 30_000);
      await waitFor(() => !a.holding, 'A to see that it lost the role', 60_000);
      await new Promise((r) => setTimeout(r, 2000)); // time for A to have produced, were it not fenced

      const stored = await storeA.latestAlertId();
      const msgs = await readTopic(kafka, topic, stream.expectedAlerts, 2000);
      const ids = msgs.map((m) => m.headers![HEADER_ALERT_ID]!.toString());
      expect(ids.length - new Set(ids).size).toBe(0);
      expect(new Set(ids).size).toBe(stream.expectedAlerts);
      expect(stored).toBeGreaterThan(0);
      expect(a.stats.published + b.stats.published).toBe(stream.expectedAlerts);
      expect(a.metricsText()).toMatch(/^kaudit_kafka_alerts_outbox_holder 0$/m);
      expect(b.metricsText()).toMatch(/^kaudit_kafka_alerts_outbox_holder 1$/m);
      process.stdout.write(
        `outbox fencing: A published ${a.stats.published}, stalled holding ${stalled} rows; B published ${b.stats.published}; ${ids.length} alerts on the topic, once each\n`,
      );
    } finally {
      await b.stop();
      await a.stop();
      await storeA.close();
      await storeB.close();
    }
  }, 300_000);
});
