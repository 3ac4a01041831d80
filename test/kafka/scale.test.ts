/**
 * Scale-out against a real broker: 100,000 events through the events topic into a consumer group of two detector
 * processes sharing one store. One process is SIGKILLed mid-stream; in a second run the broker itself is stopped and
 * restarted mid-stream. Either way every event is stored exactly once, and every alert is raised, stored and published
 * to the alerts topic exactly once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { HEADER_ALERT_ID, KafkaAlertOutbox } from '../../src/sinks/kafka.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { buildForChildren, removeBuild } from './build.js';
import { makeStream } from './fixtures.js';
import { produceStream, quietKafka, startNode, testKafkaConfig, type NodeProcess } from './harness.js';

const TOTAL = Number(process.env.KAUDIT_KAFKA_TEST_EVENTS ?? 100_000);

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describeWithKafka('scale-out over Kafka (100,000 events, two detector processes)', () => {
  let broker: Broker;
  let build: string;
  const dirs: string[] = [];
  beforeAll(async () => {
    build = buildForChildren();
    broker = await startBroker();
  }, 180_000);
  afterAll(async () => {
    await broker?.stop();
    removeBuild();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }, 60_000);

  async function scenario(name: string, disrupt: (nodes: NodeProcess[]) => Promise<void>, opts: { disruptAt: number; crashAfterStored?: number }) {
    const dir = mkdtempSync(join(tmpdir(), `kaudit-kafka-${name}-`));
    dirs.push(dir);
    const db = join(dir, 'k.db');
    new SqliteStore(db).close(); // schema and redaction key exist before two processes open the file
    const topics = { events: [`events-${name}`], alerts: `alerts-${name}`, deadLetter: `dead-${name}`, state: '' };
    const kafka = quietKafka(broker.brokers);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: topics.events[0]!, numPartitions: 4 },
        { topic: topics.alerts, numPartitions: 2 },
        { topic: topics.deadLetter, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();

    const stream = makeStream(TOTAL);
    const kafkaSettings = { brokers: broker.brokers, groupId: `detectors-${name}`, topics, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500 };
    const nodes = [
      await startNode(build, { db, kafka: kafkaSettings, crashAfterStored: opts.crashAfterStored }),
      await startNode(build, { db, kafka: kafkaSettings }),
    ];

    // The alerts outbox runs here, once for the shared store, as an API/feed node would.
    const reader = new SqliteStore(db, { readonly: true });
    const positionWriter = new SqliteStore(db);
    const outbox = new KafkaAlertOutbox({
      config: testKafkaConfig(broker.brokers, { topics }),
      store: reader,
      sink: new Pipeline({ writer: positionWriter }),
      kafka: quietKafka(broker.brokers, 'outbox'),
      pollMs: 200,
      fromStart: true,
    });
    await outbox.start();

    const count = () => reader.db.prepare('SELECT count(*) FROM events').pluck().get() as number;
    try {
      await until(() => nodes.every((n) => n.assigned > 0), 'both detector processes to own partitions', 60_000);
      const t0 = Date.now();
      const producing = produceStream(kafka, testKafkaConfig(broker.brokers, { topics }), stream);
      await until(() => count() >= TOTAL * opts.disruptAt, `${opts.disruptAt * 100}% of the events stored`, 120_000);
      const storedAtDisruption = count();
      await disrupt(nodes);
      const { retries } = await producing;
      await until(() => count() >= TOTAL, `all ${TOTAL} events stored (have ${count()})`, 240_000);
      const alertRows = () => reader.db.prepare('SELECT count(*) FROM alerts').pluck().get() as number;
      await until(
        () => alertRows() >= stream.expectedAlerts && outbox.published >= (reader.db.prepare('SELECT max(id) FROM alerts').pluck().get() as number),
        'the outbox to publish every alert',
        60_000,
      );
      const seconds = (Date.now() - t0) / 1000;

      // Every event exactly once.
      expect(count()).toBe(TOTAL);
      expect(reader.db.prepare('SELECT count(DISTINCT audit_id) FROM events').pluck().get()).toBe(TOTAL);
      expect(reader.db.prepare('SELECT count(*) FROM dead_letters').pluck().get()).toBe(0);
      // Every alert exactly once in the store.
      const byRule = reader.db.prepare('SELECT rule, count(*) AS n, sum(count) AS c FROM alerts GROUP BY rule ORDER BY rule').all() as {
        rule: string;
        n: number;
        c: number;
      }[];
      expect(byRule.reduce((s, r) => s + r.n, 0)).toBe(stream.expectedAlerts);
      for (const r of byRule) expect(r.c).toBe(r.n); // no alert was counted twice into a group either

      // And exactly once in the alerts topic.
      const ids = new Map<string, number>();
      const consumer = kafka.consumer({ groupId: `alerts-reader-${name}` });
      await consumer.connect();
      await consumer.subscribe({ topic: topics.alerts, fromBeginning: true });
      let seen = 0;
      await consumer.run({
        eachMessage: async ({ message }) => {
          seen++;
          const id = message.headers?.[HEADER_ALERT_ID]?.toString() ?? '';
          ids.set(id, (ids.get(id) ?? 0) + 1);
        },
      });
      await until(() => seen >= stream.expectedAlerts, 'the alerts topic to be read', 60_000);
      await new Promise((r) => setTimeout(r, 500));
      await consumer.disconnect();
      expect(ids.size).toBe(stream.expectedAlerts);
      expect([...ids.values()].filter((n) => n > 1)).toEqual([]);

      const live = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
      const dup = live.reduce((s, n) => s + (n.stats?.duplicates ?? 0), 0);
      if (opts.crashAfterStored !== undefined) expect(dup).toBeGreaterThan(0); // the crashed batch was delivered again
      process.stdout.write(
        `kafka ${name}: ${TOTAL} events in ${seconds.toFixed(1)} s (${Math.round(TOTAL / seconds)} events/s), disrupted at ${storedAtDisruption} stored, ` +
          `${dup} redelivered duplicates skipped, ${stream.expectedAlerts} alerts, ${retries} producer retries\n`,
      );
      for (const n of live) expect(await n.stop()).toBe(0);
    } finally {
      for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
      await outbox.stop();
      reader.close();
      positionWriter.close();
    }
  }

  it('one of two consumers is SIGKILLed mid-stream: every event stored once, no alert lost or doubled', async () => {
    await scenario(
      'kill',
      async (nodes) => {
        await nodes[0]!.kill();
        // The survivor takes over the dead member's partitions after the session timeout.
        await until(() => nodes[1]!.assigned === 4, 'the surviving consumer to own all 4 partitions', 60_000);
      },
      { disruptAt: 0.3 },
    );
  }, 420_000);

  it('a consumer dies between the store commit and the offset commit: the batch is redelivered, stored once, alerted once', async () => {
    await scenario(
      'crash',
      async (nodes) => {
        await nodes[0]!.exited; // it SIGKILLs itself right after a store commit, before committing the offset
        await until(() => nodes[1]!.assigned === 4, 'the surviving consumer to own all 4 partitions', 60_000);
      },
      { disruptAt: 0.1, crashAfterStored: Math.floor(TOTAL * 0.2) },
    );
  }, 420_000);

  it('the broker stops and restarts mid-stream: consumers resume, every event stored once', async () => {
    await scenario(
      'restart',
      async () => {
        await broker.restart({ downMs: 3000 });
      },
      { disruptAt: 0.3 },
    );
  }, 420_000);
});
