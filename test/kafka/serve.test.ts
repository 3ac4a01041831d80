/**
 * The scale-out shape as `kaudit serve` runs it, from config alone: a webhook receiver node in ingest-only mode
 * produces the apiserver's batches to the events topic; a detector node consumes them into its store, raises alerts
 * and publishes them to the alerts topic. Real broker, real HTTP.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServe, type Running } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/config.js';
import { parseKafkaConfig } from '../../src/config/kafka.js';
import { ev, tempDir, waitFor } from '../helpers/events.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { quietKafka } from './harness.js';

describeWithKafka('kaudit serve with a kafka: section (real broker)', () => {
  let broker: Broker;
  const nodes: Running[] = [];
  beforeAll(async () => {
    broker = await startBroker();
  }, 180_000);
  afterAll(async () => {
    for (const n of nodes) await n.stop();
    await broker?.stop();
  }, 60_000);

  it('webhook receiver -> events topic -> detector node -> store and alerts topic', async () => {
    const kafka = quietKafka(broker.brokers);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: ['serve-events', 'serve-alerts', 'serve-dead'].map((topic) => ({ topic, numPartitions: 2 })), waitForLeaders: true });
    await admin.disconnect();
    const dir = tempDir();
    const node = (name: string, kafkaSection: Record<string, unknown>) => {
      const cfg = loadConfig(undefined, {});
      cfg.store.path = join(dir, `${name}.db`);
      cfg.server.listen = '127.0.0.1:0';
      cfg.cluster = 'prod';
      cfg.kafka = parseKafkaConfig(
        {
          brokers: broker.brokers,
          groupId: 'serve-test',
          sessionTimeoutMs: 6000,
          heartbeatIntervalMs: 500,
          topics: { events: ['serve-events'], alerts: 'serve-alerts', deadLetter: 'serve-dead' },
          ...kafkaSection,
        },
        {},
      );
      return cfg;
    };
    const receiver = await startServe(node('receiver', { ingestOnly: true, consume: false }), { detect: false });
    nodes.push(receiver);
    const detector = await startServe(node('detector', { consume: true }));
    nodes.push(detector);

    const exec = ev({
      verb: 'create',
      stage: 'ResponseStarted',
      requestURI: '/api/v1/namespaces/prod/pods/api-0/exec?command=sh&container=api',
      objectRef: { resource: 'pods', subresource: 'exec', namespace: 'prod', name: 'api-0' },
      responseStatus: { code: 101 },
      user: { username: 'mallory', groups: ['system:authenticated'] },
    });
    const items = [ev(), exec, ev(), '{"kind": 0}'].map((e) => (typeof e === 'string' ? JSON.parse(e) : e));
    const res = await fetch(`http://${receiver.address}/api/v1/audit/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }),
    });
    expect(res.status).toBe(200);
    const get = async (path: string): Promise<any> => (await fetch(`http://${detector.address}${path}`)).json();
    await waitFor(async () => (await get('/api/v1/events')).items.length === 3, 'the detector node to store the 3 good events', 60_000);
    const alerts = await waitFor(async () => {
      const a = (await get('/api/v1/alerts?rule=pod-exec')).items;
      return a.length ? a : undefined;
    }, 'a pod-exec alert');
    expect(alerts[0]).toMatchObject({ rule: 'pod-exec', user: 'mallory', cluster: 'prod' });
    expect((await fetch(`http://${detector.address}/readyz`)).status).toBe(200);
    expect(await (await fetch(`http://${detector.address}/metrics`)).text()).toMatch(/kaudit_kafka_/);
    // The receiver stored nothing itself: it only produced.
    expect((await (await fetch(`http://${receiver.address}/api/v1/events`)).json()).items).toHaveLength(0);
    // The alert reached the alerts topic.
    const consumer = kafka.consumer({ groupId: 'serve-test-reader' });
    await consumer.connect();
    await consumer.subscribe({ topic: 'serve-alerts', fromBeginning: true });
    const seen: string[] = [];
    await consumer.run({ eachMessage: async ({ message }) => void seen.push(JSON.parse(message.value!.toString()).rule) });
    await waitFor(() => seen.includes('pod-exec'), 'the alert on the alerts topic', 60_000);
    await consumer.disconnect();
  }, 180_000);
});
