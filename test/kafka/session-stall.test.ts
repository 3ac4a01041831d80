/**
 * A detector whose store stalls for longer than its Kafka session (issue 20: OpenSearch away, a bulk write retrying for
 * 11-13 s against a 6 s session). Real broker, real SQLite store behind the real pipeline; only the store's answer is
 * held back, as a store retrying through an outage holds it. The member must stay in (or get back into) the group and
 * keep consuming, commit nothing past what is stored, and end with every produced event stored once and every alert
 * raised once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs, { type Kafka } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from '../helpers/events.js';
import { StoreUnavailableError } from '../../src/errors.js';
import { Pipeline, type BatchOutcome, type BatchSink, type RawBatch } from '../../src/pipeline/pipeline.js';
import { HEADER_CLUSTER, KafkaSource } from '../../src/sources/kafka.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { makeStream, TestDetector, type Stream } from './fixtures.js';
import { quietKafka, testKafkaConfig } from './harness.js';

/**
 * The pipeline, with the answer to chosen submits held back `ms` and then given (a slow store) or replaced by
 * StoreUnavailableError (a store that gave up retrying). The batch itself reaches the store only when it is let through.
 */
class StallingSink implements BatchSink {
  private next: { ms: number; fail: boolean }[] = [];
  stalled = 0;
  stalling = false;
  /** Partition (`topic/p`) and first offset of the last batch held. */
  held: { partition: number; offset: bigint } | undefined;
  constructor(private readonly inner: Pipeline) {}
  get overloaded(): boolean {
    return this.inner.overloaded;
  }
  stallNext(ms: number, fail: boolean): void {
    this.next.push({ ms, fail });
  }
  async submit(b: RawBatch): Promise<BatchOutcome> {
    const s = this.next.shift();
    if (!s) return this.inner.submit(b);
    this.stalling = true;
    const at = /\/(\d+)@(\d+)/.exec(b.records[0]!.where)!;
    this.held = { partition: Number(at[1]), offset: BigInt(at[2]!) };
    await new Promise((r) => setTimeout(r, s.ms));
    this.stalling = false;
    this.stalled++;
    if (s.fail) throw new StoreUnavailableError('the store did not answer (test stall)');
    return this.inner.submit(b);
  }
}

describeWithKafka('a Kafka detector whose store stalls longer than its session', () => {
  let broker: Broker;
  let kafka: Kafka;
  let dir: string;
  beforeAll(async () => {
    broker = await startBroker();
    kafka = quietKafka(broker.brokers);
    dir = mkdtempSync(join(tmpdir(), 'kaudit-kafka-stall-'));
  }, 180_000);
  afterAll(async () => {
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  async function produce(topic: string, stream: Stream, from: number, to: number): Promise<void> {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({
      topic,
      acks: -1,
      messages: stream.messages.slice(from, to).map((m) => ({ key: `${m.cluster}/${m.user}`, value: m.value, headers: { [HEADER_CLUSTER]: m.cluster } })),
    });
    await producer.disconnect();
  }

  it('keeps consuming after stalls of 15 s on a 6 s session, commits nothing unstored, stores every event once', async () => {
    const topic = 'stall-events';
    const groupId = 'stall-detectors';
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const store = new SqliteStore(join(dir, 'stall.db'));
    const pipeline = new Pipeline({ writer: store, detector: new TestDetector() });
    const sink = new StallingSink(pipeline);
    const config = testKafkaConfig(broker.brokers, {
      groupId,
      sessionTimeoutMs: 6000,
      heartbeatIntervalMs: 500,
      batchRecords: 50,
      fromBeginning: true,
      topics: { events: [topic], alerts: '', deadLetter: '', state: '' },
    });
    const source = new KafkaSource({ config, sink, cluster: 'fallback', kafka: quietKafka(broker.brokers, 'stall-source') });
    const stream = makeStream(3000, { burstEvery: 100 });
    const count = () => store.db.prepare('SELECT count(*) FROM events').pluck().get() as number;
    const committed = async () => {
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
      return t!.partitions.map((p) => `${p.partition}:${p.offset}`).sort();
    };
    const third = Math.floor(stream.messages.length / 3);
    try {
      await produce(topic, stream, 0, third);
      await source.start();
      await waitFor(() => count() > 0 && source.stats.commits > 0, 'the first batches stored and committed', 60_000);

      // 1. A store that gives up after 15 s (an outage outlasting the bulk retries): the batch fails and is fetched again.
      sink.stallNext(15_000, true);
      await produce(topic, stream, third, 2 * third);
      await waitFor(() => sink.stalling, 'the stall to begin', 60_000);
      await waitFor(() => !sink.stalling, 'the stall to end', 30_000);
      await waitFor(() => source.stats.batchErrors >= 1, 'the held batch to fail', 60_000);
      // Nothing past the held batch's first offset is committed on its partition.
      const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const heldAt = t!.partitions.find((p) => p.partition === sink.held!.partition)!;
      expect(BigInt(heldAt.offset)).toBeLessThanOrEqual(sink.held!.offset);
      expect(source.problem).toBeUndefined();

      // 2. A store that answers after 15 s (slow, not down): stored, then committed.
      sink.stallNext(15_000, false);
      await produce(topic, stream, 2 * third, stream.messages.length);
      await waitFor(() => sink.stalled >= 2, 'the second stall to end', 60_000);

      await waitFor(() => count() === stream.events, `all ${stream.events} events stored (have ${count()})`, 120_000);
      const lagSum = () => [...source.metricsText().matchAll(/^kaudit_kafka_consumer_lag\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
      await waitFor(async () => (await source.refreshLag(), lagSum() === 0), 'everything committed', 60_000);
      expect(source.problem).toBeUndefined();
      // The heartbeats sent while the store held the batches kept this member in the group: it never had to join again.
      expect(source.stats.rebalances).toBe(1);
      expect(source.metricsText()).toMatch(/^kaudit_kafka_consumer_restarts_total\{[^}]*\} 0$/m);
      // Every event once (the store's key makes a redelivered one a duplicate, never a second row) and every alert once.
      expect(store.db.prepare('SELECT count(DISTINCT audit_id) FROM events').pluck().get()).toBe(stream.events);
      expect(store.db.prepare('SELECT count(*) FROM alerts').pluck().get()).toBe(stream.expectedAlerts);
      // The group's committed offsets are at the end of each partition.
      const ends = (await admin.fetchTopicOffsets(topic)).map((p) => `${p.partition}:${p.high}`).sort();
      expect(await committed()).toEqual(ends);
      process.stdout.write(`session stall: ${stream.events} events stored once, stats ${JSON.stringify(source.stats)}\n`);
    } finally {
      await source.stop();
      await admin.disconnect();
      store.close();
    }
  }, 300_000);

  it('a consumer kafkajs gives up on with a group-membership error is built anew and rejoins; every event stored once', async () => {
    const topic = 'crash-events';
    const groupId = 'crash-detectors';
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const store = new SqliteStore(join(dir, 'crash.db'));
    const pipeline = new Pipeline({ writer: store, detector: new TestDetector() });
    // The one thing injected: a batch handler throwing what kafkajs' retrier makes of a refused commit (the refusal
    // wrapped in KafkaJSNonRetriableError). kafkajs' own runner then crashes the consumer with `restart: false`, as it
    // did before the fix when a batch outlasted its session; everything after that is kafkajs and the broker.
    const refusal = new kafkajs.KafkaJSProtocolError(
      Object.assign(new Error('The coordinator is not aware of this member'), { type: 'UNKNOWN_MEMBER_ID', code: 25, retriable: false }),
    );
    // Its types leave out the `cause` the runtime takes (and kafkajs' retrier passes).
    const Wrapped = kafkajs.KafkaJSNonRetriableError as unknown as new (e: Error, m: { cause: Error }) => Error;
    let inject = false;
    const client = quietKafka(broker.brokers, 'crash-source');
    const consumerOf = client.consumer.bind(client);
    client.consumer = (cfg) => {
      const consumer = consumerOf(cfg);
      const run = consumer.run.bind(consumer);
      consumer.run = (o) =>
        run({
          ...o,
          eachBatch: async (p) => {
            if (inject) {
              inject = false;
              throw new Wrapped(refusal, { cause: refusal });
            }
            return o!.eachBatch!(p);
          },
        });
      return consumer;
    };
    const config = testKafkaConfig(broker.brokers, {
      groupId,
      batchRecords: 50,
      fromBeginning: true,
      topics: { events: [topic], alerts: '', deadLetter: '', state: '' },
    });
    const source = new KafkaSource({ config, sink: pipeline, cluster: 'fallback', kafka: client });
    const stream = makeStream(2000, { burstEvery: 100 });
    const count = () => store.db.prepare('SELECT count(*) FROM events').pluck().get() as number;
    const restarts = () => Number(/^kaudit_kafka_consumer_restarts_total\{[^}]*\} (\d+)$/m.exec(source.metricsText())?.[1]);
    const half = Math.floor(stream.messages.length / 2);
    try {
      await produce(topic, stream, 0, half);
      await source.start();
      await waitFor(() => count() > 0 && source.stats.commits > 0, 'the first batches stored and committed', 60_000);
      inject = true;
      await produce(topic, stream, half, stream.messages.length);
      // Down while the new consumer waits its backoff: /readyz says so.
      await waitFor(() => source.problem !== undefined, 'the crash to be reported', 60_000);
      expect(source.problem).toMatch(/^kafka consumer rejoining group crash-detectors after: The coordinator is not aware of this member/);
      await waitFor(() => restarts() === 1 && source.problem === undefined, 'a new consumer in the group', 60_000);
      expect(source.failed).toBeUndefined();

      await waitFor(() => count() === stream.events, `all ${stream.events} events stored (have ${count()})`, 120_000);
      const ends = (await admin.fetchTopicOffsets(topic)).map((p) => `${p.partition}:${p.high}`).sort();
      await waitFor(
        async () => {
          const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
          return (
            t!.partitions
              .map((p) => `${p.partition}:${p.offset}`)
              .sort()
              .join() === ends.join()
          );
        },
        'the new member to commit to the end',
        60_000,
      );
      expect(store.db.prepare('SELECT count(DISTINCT audit_id) FROM events').pluck().get()).toBe(stream.events);
      expect(store.db.prepare('SELECT count(*) FROM alerts').pluck().get()).toBe(stream.expectedAlerts);
      expect(restarts()).toBe(1);
      process.stdout.write(`consumer rebuilt after a crash: ${stream.events} events stored once, stats ${JSON.stringify(source.stats)}\n`);
    } finally {
      await source.stop();
      await admin.disconnect();
      store.close();
    }
  }, 300_000);
});
