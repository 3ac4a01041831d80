/**
 * The detection-state topic against a real broker, in one process: snapshots capped (newest entries kept, counted),
 * saved only when the partition's state changed, loaded by another member, damaged ones refused; and a KafkaSource
 * whose loaded state is ahead of the committed offset stores the redelivered messages without detecting them again.
 */
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createDetector } from '../../src/detect/index.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { KafkaSource, type PartitionStateStore } from '../../src/sources/kafka.js';
import { DetectionStateTopic } from '../../src/sources/kafka-state.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev, tempDir, waitFor } from '../helpers/events.js';
import { ev as normalised } from '../detect/helpers.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { quietKafka, testKafkaConfig } from './harness.js';

const beat = async () => {};

describeWithKafka('detection-state topic (real broker)', () => {
  let broker: Broker;
  let kafka: Kafka;
  beforeAll(async () => {
    broker = await startBroker();
    kafka = quietKafka(broker.brokers);
  }, 180_000);
  afterAll(async () => {
    await broker?.stop();
  }, 60_000);

  it('caps a snapshot (newest entries kept, counted), skips unchanged ones, and another member loads it', async () => {
    const config = testKafkaConfig(broker.brokers, {
      groupId: 'cap',
      topics: { events: ['cap-events'], alerts: '', deadLetter: '', state: 'cap-state' },
      stateMaxBytes: 4096,
    });
    const a = await createDetector();
    // 3,000 identities with one denial each: 3,000 open windows of forbidden-burst in partition cap-events/0.
    await a.detect(
      Array.from({ length: 3000 }, (_, i) => normalised({ verb: 'list', code: 403, user: `user-${i}`, objectRef: { resource: 'pods' }, at: `+${i}s` })),
      'cap-events/0',
    );
    const topicA = new DetectionStateTopic({ config, kafka, detector: a });
    await topicA.start();
    try {
      await topicA.save('cap-events/0', 3000n);
      expect(topicA.stats.saved).toBe(1);
      expect(topicA.stats.truncated).toBe(1);
      expect(topicA.stats.entriesTruncated).toBeGreaterThan(0);
      expect(topicA.stats.savedBytes).toBeLessThanOrEqual(4096);
      expect(topicA.metricsText()).toMatch(/^kaudit_kafka_state_truncated_total\{group="cap"\} 1$/m);
      // Nothing changed since: no second snapshot.
      await topicA.save('cap-events/0', 3001n);
      expect(topicA.stats.saved).toBe(1);
    } finally {
      await topicA.stop();
    }

    const b = await createDetector();
    const topicB = new DetectionStateTopic({ config, kafka, detector: b });
    await topicB.start();
    try {
      expect(await topicB.load('cap-events/0', beat)).toBe(3000n);
      expect(await topicB.load('cap-events/1', beat)).toBeUndefined();
      expect(topicB.stats).toMatchObject({ loaded: 1, empty: 1 });
      const kept = JSON.stringify(b.saveState('cap-events/0'));
      // The newest windows made it, the oldest were left out.
      expect(kept).toContain('"user-2999"');
      expect(kept).not.toContain('"user-0"');
    } finally {
      await topicB.stop();
    }
  }, 120_000);

  it('a damaged snapshot is refused with a counter: the partition starts empty', async () => {
    const config = testKafkaConfig(broker.brokers, { groupId: 'junk', topics: { events: ['junk-events'], alerts: '', deadLetter: '', state: 'junk-state' } });
    const d = await createDetector();
    const topic = new DetectionStateTopic({ config, kafka, detector: d });
    await topic.start();
    try {
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({ topic: 'junk-state', messages: [{ key: 'junk/junk-events/0', value: 'not gzip' }] });
      await producer.disconnect();
      expect(await topic.load('junk-events/0', beat)).toBeUndefined();
      expect(topic.stats.unreadable).toBe(1);
      expect(topic.metricsText()).toMatch(/^kaudit_kafka_state_unreadable_total\{group="junk"\} 1$/m);
    } finally {
      await topic.stop();
    }
  }, 120_000);

  it("holds only this group's snapshots of its own topics, within the cap, and forgets deleted keys", async () => {
    const config = testKafkaConfig(broker.brokers, {
      groupId: 'mine',
      topics: { events: ['mine-events'], alerts: '', deadLetter: '', state: 'shared-state' },
      stateMaxBytes: 4096,
    });
    const d = await createDetector();
    // A snapshot of this group's to copy: one identity's open window in mine-events/0.
    await d.detect([normalised({ verb: 'list', code: 403, user: 'eve', objectRef: { resource: 'pods' } })], 'mine-events/0');
    const writer = new DetectionStateTopic({ config, kafka, detector: d });
    await writer.start();
    await writer.save('mine-events/0', 10n);
    await writer.stop();
    const consumer = kafka.consumer({ groupId: 'peek-shared-state' });
    await consumer.connect();
    await consumer.subscribe({ topic: 'shared-state', fromBeginning: true });
    let snapshot: Buffer | undefined;
    await consumer.run({ eachMessage: async ({ message }) => void (snapshot ??= message.value ?? undefined) });
    await waitFor(() => snapshot, 'the snapshot written');
    await consumer.disconnect();

    // One state topic shared by several groups (and a stray key or two): 200 snapshots of other groups and topics.
    const producer = kafka.producer();
    await producer.connect();
    const foreign = [];
    for (let i = 0; i < 50; i++) {
      foreign.push({ key: `other/mine-events/${i}`, value: snapshot! }); // another group, same topic
      foreign.push({ key: `mine/other-events/${i}`, value: snapshot! }); // this group's name, a topic it does not read
      foreign.push({ key: `mine/x/mine-events/${i}`, value: snapshot! }); // the group "mine/x"
      foreign.push({ key: `mine/mine-events/${i}x`, value: snapshot! });
    }
    await producer.send({ topic: 'shared-state', messages: foreign });
    // This group's: partition 1 over the cap, partition 2 written and deleted.
    await producer.send({
      topic: 'shared-state',
      messages: [
        { key: 'mine/mine-events/1', value: Buffer.alloc(5000, 1) },
        { key: 'mine/mine-events/2', value: snapshot! },
        { key: 'mine/mine-events/2', value: null },
      ],
    });
    await producer.disconnect();

    const reader = new DetectionStateTopic({ config, kafka, detector: await createDetector() });
    await reader.start();
    try {
      expect(await reader.load('mine-events/0', beat)).toBe(10n);
      // Held: partition 0's snapshot and the note that partition 1's is too large; nothing of the 200 others.
      expect(reader.held).toEqual({ snapshots: 2, bytes: snapshot!.length });
      expect(await reader.load('mine-events/1', beat)).toBeUndefined();
      expect(await reader.load('mine-events/2', beat)).toBeUndefined();
      expect(reader.stats).toMatchObject({ loaded: 1, unreadable: 1, empty: 1 });
    } finally {
      await reader.stop();
    }
  }, 120_000);

  it('messages below the loaded state offset are stored but not detected again', async () => {
    const topic = 'replay-events';
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    // Five exec requests into five pods (pod-exec fires on each, in an alert group of its own); the state loaded for
    // the partition has counted the first three.
    const execs = Array.from({ length: 5 }, (_, i) =>
      ev({
        verb: 'create',
        stage: 'ResponseStarted',
        requestURI: `/api/v1/namespaces/prod/pods/api-${i}/exec?command=sh&container=api`,
        objectRef: { resource: 'pods', subresource: 'exec', namespace: 'prod', name: `api-${i}` },
        responseStatus: { code: 101 },
      }),
    );
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: execs.map((e) => ({ key: 'prod/alice', value: JSON.stringify(e) })) });
    await producer.disconnect();

    const db = join(tempDir(), 'k.db');
    const store = new SqliteStore(db);
    const pipeline = new Pipeline({ writer: store, detector: await createDetector() });
    const calls: string[] = [];
    const state: PartitionStateStore = {
      async load(p) {
        calls.push(`load ${p}`);
        return 3n;
      },
      async save(p, offset) {
        calls.push(`save ${p} ${offset}`);
      },
      drop(p) {
        calls.push(`drop ${p}`);
      },
    };
    const source = new KafkaSource({
      config: testKafkaConfig(broker.brokers, { groupId: 'replay', topics: { events: [topic], alerts: '', deadLetter: '', state: '' } }),
      sink: pipeline,
      cluster: 'prod',
      kafka,
      partitionState: state,
    });
    await source.start();
    try {
      await waitFor(() => source.stats.commits > 0 && source.stats.messages === 5, 'the five messages committed', 60_000);
      expect(store.db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(5);
      const alerted = store.db.prepare("SELECT audit_id FROM alerts WHERE rule = 'pod-exec' ORDER BY audit_id").pluck().all();
      expect(alerted).toEqual(execs.slice(3).map((e) => e.auditID));
      // Loaded before the first batch, saved (with the offset reached) before the commit.
      expect(calls[0]).toBe(`load ${topic}/0`);
      expect(calls).toContain(`save ${topic}/0 5`);
    } finally {
      await source.stop();
      store.close();
    }
  }, 120_000);
});
