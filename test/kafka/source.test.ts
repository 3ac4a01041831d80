/**
 * The Kafka source, sinks and config against a real broker, in one process: poison messages, backpressure, the
 * ingest-only producer's acknowledgement, the alert outbox, SCRAM over plaintext and TLS.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createKafkaClient, parseKafkaConfig, type KafkaConfig } from '../../src/config/kafka.js';
import type { Alert } from '../../src/detect/alert.js';
import type { NormalisedEvent } from '../../src/events/types.js';
import { OverloadedError } from '../../src/errors.js';
import { Pipeline, type BatchOutcome, type RawBatch } from '../../src/pipeline/pipeline.js';
import { HEADER_BAD_ITEMS, HEADER_CLUSTER, HEADER_ORIGIN, HEADER_REASON, KafkaSource } from '../../src/sources/kafka.js';
import { HEADER_ALERT_ID, KafkaAlertOutbox, KafkaEventsProducer, startKafkaServices } from '../../src/sinks/kafka.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { makeStream, TestDetector } from './fixtures.js';
import { quietKafka, readTopic, testKafkaConfig } from './harness.js';

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let seq = 0;
function names(prefix: string) {
  seq++;
  return { events: [`${prefix}-events-${seq}`], alerts: `${prefix}-alerts-${seq}`, deadLetter: `${prefix}-dead-${seq}`, state: '' };
}

async function createTopic(kafka: Kafka, topic: string, numPartitions = 2): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
  await admin.disconnect();
}

describeWithKafka('Kafka source and sinks (real broker)', () => {
  let broker: Broker;
  let kafka: Kafka;
  let dir: string;
  beforeAll(async () => {
    broker = await startBroker({ secure: true });
    kafka = quietKafka(broker.brokers);
    dir = mkdtempSync(join(tmpdir(), 'kaudit-kafka-source-'));
  }, 180_000);
  afterAll(async () => {
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  async function setup(topics: KafkaConfig['topics'], over: Partial<KafkaConfig> = {}, pipelineOpts: { maxQueuedBatches?: number; slowMs?: number } = {}) {
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: topics.events[0]!, numPartitions: 2 },
        { topic: topics.deadLetter, numPartitions: 1 },
        { topic: topics.alerts, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const store = new SqliteStore(join(dir, `${topics.events[0]}.db`));
    const inner = new TestDetector();
    const detector = pipelineOpts.slowMs
      ? { detect: async (e: readonly NormalisedEvent[]): Promise<Alert[]> => (await new Promise((r) => setTimeout(r, pipelineOpts.slowMs)), inner.detect(e)) }
      : inner;
    const pipeline = new Pipeline({ writer: store, detector, maxQueuedBatches: pipelineOpts.maxQueuedBatches });
    const config = testKafkaConfig(broker.brokers, { groupId: `g-${topics.events[0]}`, topics, ...over });
    const source = new KafkaSource({ config, sink: pipeline, cluster: 'fallback', kafka: quietKafka(broker.brokers, 'source') });
    return { store, pipeline, config, source, count: () => store.db.prepare('SELECT count(*) FROM events').pluck().get() as number };
  }

  it('dead-letters poison messages with their reason, stores every good event, and keeps the partition moving', async () => {
    const topics = names('poison');
    const s = await setup(topics, { maxMessageBytes: 4096 });
    const good = makeStream(300, { burstEvery: 100 });
    const producer = kafka.producer();
    await producer.connect();
    const poison = [
      { value: 'this is not json {', reason: /^not JSON/ },
      { value: JSON.stringify({ kind: 'Pod', apiVersion: 'v1', metadata: { name: 'x' } }), reason: /not an audit event/ },
      { value: JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', auditID: 'x' }), reason: /lacks/ },
      { value: 'x'.repeat(5000), reason: /over kafka\.maxMessageBytes/ },
      { value: null, reason: /^empty message/ },
    ];
    // Poison spread among the good messages, all with the same key so they share a partition with good ones.
    const messages: { key: string; value: string | null; headers: Record<string, string> }[] = good.messages.map((m) => ({
      key: `${m.cluster}/${m.user}`,
      value: m.value,
      headers: { [HEADER_CLUSTER]: m.cluster },
    }));
    poison.forEach((p, i) => messages.splice(20 + i * 40, 0, { key: 'prod-eu/user-0@example.com', value: p.value, headers: { [HEADER_CLUSTER]: 'prod-eu' } }));
    // And an EventList with one bad item among good ones: the good items are stored, the message is dead-lettered once.
    const mixed = JSON.parse(good.messages[0]!.value) as Record<string, unknown>;
    const mixedList = {
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1',
      items: [
        { ...mixed, auditID: '00000000-0000-4000-8000-ffffffffff01' },
        { kind: 'Event', verb: 'get' },
      ],
    };
    messages.push({ key: 'prod-eu/user-1@example.com', value: JSON.stringify(mixedList), headers: { [HEADER_CLUSTER]: 'prod-eu' } });
    await producer.send({ topic: topics.events[0]!, acks: -1, messages });
    await producer.disconnect();

    await s.source.start();
    try {
      await until(() => s.count() === good.events + 1, `all ${good.events + 1} good events stored (have ${s.count()})`);
      const dead = await readTopic(kafka, topics.deadLetter, poison.length + 1);
      expect(dead).toHaveLength(poison.length + 1);
      for (const p of poison) {
        const d = dead.find(
          (m) =>
            p.reason.test(m.headers![HEADER_REASON]!.toString()) &&
            m.headers![HEADER_BAD_ITEMS]!.toString() === '1' &&
            !m.value?.toString().includes('EventList'),
        );
        expect(d, `dead letter for ${p.reason}`).toBeDefined();
        // The message itself is kept, except one over the size limit (the topic would refuse it too).
        expect(d!.value?.toString() ?? null).toBe(p.reason.source.includes('maxMessageBytes') ? null : p.value);
        expect(d!.headers![HEADER_ORIGIN]!.toString()).toMatch(new RegExp(`^${topics.events[0]}/\\d@\\d+$`));
      }
      const m = dead.find((d) => d.headers![HEADER_BAD_ITEMS]!.toString() === '1' && d.value?.toString().includes('EventList'));
      expect(m?.headers![HEADER_REASON]!.toString()).toMatch(/lacks/);
      // The store keeps them too (dead_letters), and the partition moved past them: nothing left uncommitted.
      expect(s.store.db.prepare('SELECT count(*) FROM dead_letters').pluck().get()).toBe(poison.length + 1);
      await until(
        () => /kaudit_kafka_consumer_lag\{[^}]*\} 0\n/.test(s.source.metricsText()) && !/kaudit_kafka_consumer_lag\{[^}]*\} [1-9]/.test(s.source.metricsText()),
        'lag 0 on every partition',
      );
      const text = s.source.metricsText();
      expect(text).toMatch(/kaudit_kafka_dead_letters_total\{group="[^"]+",reason="not_json"\} 1/);
      expect(text).toMatch(/reason="too_large"\} 1/);
      expect(text).toMatch(/reason="empty"\} 1/);
      expect(text).toMatch(/reason="not_an_event"\} 3/);
      expect(s.store.db.prepare('SELECT count(*) FROM alerts').pluck().get()).toBe(good.expectedAlerts);
    } finally {
      await s.source.stop();
      s.store.close();
    }
  }, 120_000);

  it('pauses the fetch while the pipeline is full and resumes: nothing lost, nothing twice', async () => {
    const topics = names('overload');
    const s = await setup(topics, { batchRecords: 10, partitionsConsumedConcurrently: 2 }, { maxQueuedBatches: 1, slowMs: 5 });
    // The pipeline is also kept full by "another source" for 3 s: longer than a batch waits, so the fetch must pause.
    let fullUntil = 0;
    const sink = {
      get overloaded() {
        return Date.now() < fullUntil || s.pipeline.overloaded;
      },
      submit(b: RawBatch): Promise<BatchOutcome> {
        if (fullUntil === 0) fullUntil = Date.now() + 3000;
        if (Date.now() < fullUntil) return Promise.reject(new OverloadedError('full'));
        return s.pipeline.submit(b);
      },
    };
    const source = new KafkaSource({ config: s.config, sink, cluster: 'fallback', kafka: quietKafka(broker.brokers, 'source') });
    const stream = makeStream(3000);
    const producer = kafka.producer();
    await producer.connect();
    for (let i = 0; i < stream.messages.length; i += 500) {
      await producer.send({
        topic: topics.events[0]!,
        acks: -1,
        messages: stream.messages.slice(i, i + 500).map((m) => ({ key: `${m.cluster}/${m.user}`, value: m.value, headers: { [HEADER_CLUSTER]: m.cluster } })),
      });
    }
    await producer.disconnect();
    await source.start();
    const lagSum = () => [...source.metricsText().matchAll(/^kaudit_kafka_consumer_lag\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    try {
      // While paused, the lag gauge (refreshed from the broker) shows the backlog.
      await until(() => source.stats.pauses > 0, 'a pause');
      await source.refreshLag();
      expect(lagSum()).toBeGreaterThan(stream.messages.length / 2);
      await until(
        () => s.count() === stream.events && source.stats.messages === stream.messages.length,
        `all ${stream.events} events stored (have ${s.count()}, stats ${JSON.stringify(source.stats)})`,
        90_000,
      );
      expect(source.stats.pauses).toBeGreaterThan(0);
      expect(source.stats.duplicates).toBe(0);
      expect(source.stats.messages).toBe(stream.messages.length);
      await source.refreshLag();
      expect(lagSum()).toBe(0);
      expect(s.store.db.prepare('SELECT count(*) FROM alerts').pluck().get()).toBe(stream.expectedAlerts);
    } finally {
      await source.stop();
      s.store.close();
    }
  }, 120_000);

  it('ingest-only: submit resolves only after Kafka acknowledged (acks=all), and waits out a broker outage', async () => {
    const topics = names('ingest');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: topics.events[0]!, numPartitions: 2 },
        { topic: topics.deadLetter, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const producer = new KafkaEventsProducer({ config: testKafkaConfig(broker.brokers, { topics }), kafka: quietKafka(broker.brokers, 'ingest') });
    await producer.start();
    const stream = makeStream(50, { burstEvery: 20 });
    const batch = (from: number, to: number): RawBatch => ({
      source: 'webhook',
      cluster: 'prod-eu',
      records: stream.messages.slice(from, to).map((m, i) => ({ text: m.value, where: `item ${from + i}` })),
    });
    try {
      const first = await producer.submit({ ...batch(0, 10), records: [...batch(0, 10).records, { text: '{"kind":"Event"}', where: 'item bad' }] });
      expect(first.bad).toEqual([{ where: 'item bad', reason: expect.stringMatching(/lacks|neither/) }]);
      // An ingest-only node has no store: the bad record is in the dead-letter topic, acknowledged with the batch.
      const [deadOne] = await readTopic(kafka, topics.deadLetter, 1);
      expect(deadOne!.value!.toString()).toBe('{"kind":"Event"}');
      expect(deadOne!.headers![HEADER_REASON]!.toString()).toMatch(/lacks|neither/);
      expect(deadOne!.headers![HEADER_ORIGIN]!.toString()).toBe('webhook item bad');

      // With the broker down, the webhook's batch is not acknowledged...
      await broker.halt();
      let settled: BatchOutcome | Error | undefined;
      const pending = producer.submit(batch(10, stream.messages.length)).then(
        (o) => (settled = o),
        (e: Error) => (settled = e),
      );
      await new Promise((r) => setTimeout(r, 2500));
      expect(settled).toBeUndefined();
      // ...until Kafka has it.
      await broker.start();
      await pending;
      // kafkajs may give up before the broker is back; then the webhook answers 5xx and the apiserver retries.
      if (settled instanceof Error) await producer.submit(batch(10, stream.messages.length));
      const msgs = await readTopic(kafka, topics.events[0]!, 1);
      await until(async () => {
        const offs = await quietKafka(broker.brokers)
          .admin()
          .fetchTopicOffsets(topics.events[0]!)
          .catch(() => []);
        return offs.length > 0;
      }, 'topic offsets');
      const events = msgs.flatMap((m) => (JSON.parse(m.value!.toString()) as { items: unknown[] }).items);
      expect(new Set(events.map((e) => (e as { auditID: string }).auditID)).size).toBe(stream.events);
      for (const m of msgs) {
        expect(m.headers![HEADER_CLUSTER]!.toString()).toBe('prod-eu');
        expect(m.key!.toString()).toMatch(/^prod-eu\/user-\d+@example\.com$/);
      }
    } finally {
      await producer.stop();
    }
  }, 120_000);

  it('ingest-only: an item nested deeper than can be serialised again is dead-lettered, its batch mates forwarded', async () => {
    const topics = names('deep');
    await createTopic(kafka, topics.events[0]!, 1);
    await createTopic(kafka, topics.deadLetter, 1);
    const producer = new KafkaEventsProducer({ config: testKafkaConfig(broker.brokers, { topics }), kafka: quietKafka(broker.brokers, 'deep') });
    await producer.start();
    try {
      const [good] = makeStream(1, { burstEvery: 1000 }).messages;
      // An item of a pretty-printed body comes parsed, without text of its own: forwarding must serialise it again.
      const deep = JSON.parse(good!.value.slice(0, -1) + ',"requestObject":' + '['.repeat(200_000) + ']'.repeat(200_000) + '}') as Record<string, unknown>;
      deep.auditID = '00000000-0000-4000-8000-0000000dee99';
      const out = await producer.submit({
        source: 'webhook',
        cluster: 'c',
        records: [
          { value: deep, where: 'item deep' },
          { text: good!.value, where: 'item good' },
        ],
      });
      expect(out).toMatchObject({ stored: 1, bad: [{ where: 'item deep', reason: 'JSON nested too deeply to forward' }] });
      const [msg] = await readTopic(kafka, topics.events[0]!, 1);
      expect(msg!.value!.toString()).toContain(JSON.parse(good!.value).auditID);
      const [dead] = await readTopic(kafka, topics.deadLetter, 1);
      expect(dead!.value).toBeNull();
      expect(dead!.headers![HEADER_REASON]!.toString()).toBe('JSON nested too deeply to forward');
    } finally {
      await producer.stop();
    }
  }, 60_000);

  it('ingest-only: a missing topic is reported at start', async () => {
    const producer = new KafkaEventsProducer({
      config: testKafkaConfig(broker.brokers, { topics: { events: ['no-such-topic'], alerts: '', deadLetter: '', state: '' } }),
      kafka: quietKafka(broker.brokers, 'missing'),
    });
    await expect(producer.start()).rejects.toThrow(/topic no-such-topic does not exist/);
  }, 60_000);

  it('ingest-only: refuses with OverloadedError while too many events await acknowledgement', async () => {
    const topics = names('inflight');
    await createTopic(kafka, topics.events[0]!);
    const producer = new KafkaEventsProducer({
      config: testKafkaConfig(broker.brokers, { topics: { ...topics, deadLetter: '' }, maxInFlightEvents: 5 }),
      kafka: quietKafka(broker.brokers, 'inflight'),
    });
    await producer.start();
    const stream = makeStream(20, { burstEvery: 1000 });
    try {
      const a = producer.submit({ source: 'webhook', cluster: 'c', records: stream.messages.slice(0, 10).map((m, i) => ({ text: m.value, where: `${i}` })) });
      await expect(producer.submit({ source: 'webhook', cluster: 'c', records: [{ text: stream.messages[10]!.value, where: 'x' }] })).rejects.toBeInstanceOf(
        OverloadedError,
      );
      await a;
      await expect(producer.submit({ source: 'webhook', cluster: 'c', records: [{ text: stream.messages[10]!.value, where: 'x' }] })).resolves.toMatchObject({
        stored: 1,
      });
      expect(producer.metricsText()).toMatch(/kaudit_kafka_events_overloaded_total 1/);
    } finally {
      await producer.stop();
    }
  }, 60_000);

  it('publishes committed alerts to the alerts topic keyed by cluster, once, and resumes from its stored position', async () => {
    const topics = names('outbox');
    const s = await setup(topics);
    const stream = makeStream(1000, { burstEvery: 250 });
    const reader = new SqliteStore(join(dir, `${topics.events[0]}.db`), { readonly: true });
    const outbox = () =>
      new KafkaAlertOutbox({
        config: s.config,
        store: reader,
        sink: s.pipeline,
        bus: s.pipeline.bus,
        kafka: quietKafka(broker.brokers, 'outbox'),
        pollMs: 100,
      });
    let o = outbox();
    await o.start();
    try {
      const half = Math.floor(stream.messages.length / 2);
      const submit = (from: number, to: number) =>
        s.pipeline.submit({
          source: 'test',
          cluster: 'prod-eu',
          records: stream.messages.slice(from, to).map((m, i) => ({ text: m.value, where: `${from + i}` })),
        });
      await submit(0, half);
      await until(
        () => o.published > 0 && o.published === (reader.db.prepare('SELECT max(id) FROM alerts').pluck().get() as number),
        'the first half published',
      );
      await o.stop();
      // Alerts committed while no outbox runs are published by the next one, from the stored position.
      await submit(half, stream.messages.length);
      o = outbox();
      await o.start();
      await until(() => o.published === (reader.db.prepare('SELECT max(id) FROM alerts').pluck().get() as number), 'the second half published');
      const msgs = await readTopic(kafka, topics.alerts, stream.expectedAlerts);
      expect(msgs).toHaveLength(stream.expectedAlerts);
      expect(new Set(msgs.map((m) => m.headers![HEADER_ALERT_ID]!.toString())).size).toBe(stream.expectedAlerts);
      for (const m of msgs) {
        const a = JSON.parse(m.value!.toString()) as Alert;
        expect(m.key!.toString()).toBe(a.cluster);
        expect(a.id).toBeGreaterThan(0);
      }
      expect(o.metricsText()).toMatch(/kaudit_kafka_alerts_unpublished 0/);
    } finally {
      await o.stop();
      reader.close();
      s.store.close();
    }
  }, 120_000);

  it('startKafkaServices: an ingest-only node and a detector node, webhook batches to alerts on the alerts topic', async () => {
    const topics = names('services');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: topics.events[0]!, numPartitions: 2 },
        { topic: topics.alerts, numPartitions: 1 },
        { topic: topics.deadLetter, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const raw = { brokers: broker.brokers, groupId: `g-${topics.events[0]}`, topics, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500 };
    const ingestCfg = parseKafkaConfig({ ...raw, ingestOnly: true }, {})!;
    const detectCfg = parseKafkaConfig(raw, {})!;
    expect(ingestCfg.consume).toBe(false);

    const path = join(dir, `${topics.events[0]}.db`);
    const writer = new SqliteStore(path);
    const reader = new SqliteStore(path, { readonly: true });
    const pipeline = new Pipeline({ writer, detector: new TestDetector() });
    const receiver = await startKafkaServices({
      config: ingestCfg,
      pipeline: new Pipeline({}),
      store: reader,
      cluster: 'x',
      kafka: quietKafka(broker.brokers, 'receiver'),
    });
    const detectorNode = await startKafkaServices({ config: detectCfg, pipeline, store: reader, cluster: 'x', kafka: quietKafka(broker.brokers, 'detector') });
    try {
      expect(receiver.producer).toBeDefined();
      expect(receiver.source).toBeUndefined();
      expect(receiver.outbox).toBeUndefined();
      expect(receiver.webhookSink).toBe(receiver.producer);
      expect(detectorNode.webhookSink).toBe(pipeline);
      const stream = makeStream(2000, { burstEvery: 200 });
      for (let i = 0; i < stream.messages.length; i += 400) {
        await receiver.webhookSink.submit({
          source: 'webhook',
          cluster: 'prod-eu',
          records: stream.messages.slice(i, i + 400).map((m, k) => ({ text: m.value, where: `${i + k}` })),
        });
      }
      const msgs = await readTopic(kafka, topics.alerts, stream.expectedAlerts);
      expect(new Set(msgs.map((m) => m.headers![HEADER_ALERT_ID]!.toString())).size).toBe(stream.expectedAlerts);
      expect(reader.db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(stream.events);
      const text = detectorNode.metricsText();
      for (const family of ['kaudit_kafka_consumer_lag', 'kaudit_kafka_dead_letters_total', 'kaudit_kafka_alerts_published_total'])
        expect(text).toContain(`# TYPE ${family} `);
      expect(receiver.metricsText()).toMatch(new RegExp(`kaudit_kafka_events_produced_total ${stream.events}\n`));
      expect(detectorNode.problem()).toBeUndefined();
    } finally {
      await receiver.stop();
      await detectorNode.stop();
      reader.close();
      writer.close();
    }
  }, 120_000);

  for (const [mechanism, listener] of [
    ['scram-sha-256', 'saslBrokers'],
    ['scram-sha-512', 'saslSslBrokers'],
  ] as const) {
    it(`connects with SASL ${mechanism.toUpperCase()}${listener === 'saslSslBrokers' ? ' over TLS' : ''} from the config file's settings`, async () => {
      const sec = broker.secure!;
      await createTopic(kafka, `sasl-${mechanism}`);
      const pwFile = join(dir, 'kafka-password');
      writeFileSync(pwFile, sec.password + '\n');
      const cfg = parseKafkaConfig(
        {
          brokers: sec[listener],
          sasl: { mechanism: mechanism.toUpperCase(), username: sec.username, passwordFile: pwFile },
          ...(listener === 'saslSslBrokers' ? { tls: { ca: sec.caFile } } : {}),
          topics: { events: [`sasl-${mechanism}`], deadLetter: null },
        },
        {},
      )!;
      const client = await createKafkaClient(cfg);
      const producer = new KafkaEventsProducer({ config: cfg, kafka: client });
      await producer.start();
      const stream = makeStream(5, { burstEvery: 1000 });
      await expect(
        producer.submit({ source: 'webhook', cluster: 'c', records: stream.messages.map((m, i) => ({ text: m.value, where: `${i}` })) }),
      ).resolves.toMatchObject({ stored: 5 });
      await producer.stop();

      const bad = await createKafkaClient({ ...cfg, sasl: { ...cfg.sasl!, passwordFile: undefined, password: 'wrong' } }, { retry: { retries: 0 } });
      const p2 = bad.producer();
      await expect(p2.connect()).rejects.toThrow(/SASL|authentication/i);
    }, 60_000);
  }
});
