/**
 * kaudit's producers (the alerts outbox, an ingest-only node's events) when the broker wrote a produce request but
 * its answer never reached kaudit (the connection dropped, the broker stopped): the client retries, and only an
 * idempotent producer keeps the retry from writing the messages a second time. A proxy between kaudit and a real
 * broker forwards every request and swallows the answer to the first Produce, closing the connection, which is
 * exactly that fault, every time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kafka, KafkaMessage } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Alert } from '../../src/detect/alert.js';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { HEADER_ALERT_ID, KafkaAlertOutbox, KafkaEventsProducer } from '../../src/sinks/kafka.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev } from '../helpers/events.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { quietKafka, testKafkaConfig } from './harness.js';

const PRODUCE = 0;

/** Splits a byte stream into Kafka frames (a 4-byte big-endian size, then that many bytes). */
class Frames {
  private buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer, frame: (f: Buffer) => void): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 4) {
      const size = this.buf.readInt32BE(0);
      if (this.buf.length < 4 + size) return;
      frame(this.buf.subarray(0, 4 + size));
      this.buf = this.buf.subarray(4 + size);
    }
  }
}

/** A TCP proxy to the broker that can swallow the response to Produce requests and drop the connection. */
class FaultyProxy {
  private server: Server;
  target = '';
  /** Produce responses still to swallow. */
  dropProduceResponses = 0;
  dropped = 0;
  producesForwarded = 0;
  private sockets = new Set<Socket>();

  constructor() {
    this.server = createServer((client) => this.connection(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as AddressInfo).port;
  }

  private connection(client: Socket): void {
    const [host, port] = this.target.split(':');
    const upstream = createConnection({ host, port: Number(port) });
    this.sockets.add(client).add(upstream);
    const produces = new Set<number>();
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    const requests = new Frames();
    client.on('data', (chunk: Buffer) =>
      requests.push(chunk, (f) => {
        // Request header: size, api_key (int16), api_version (int16), correlation_id (int32), ...
        if (f.readInt16BE(4) === PRODUCE) {
          produces.add(f.readInt32BE(8));
          this.producesForwarded++;
        }
        upstream.write(f);
      }),
    );
    const responses = new Frames();
    upstream.on('data', (chunk: Buffer) =>
      responses.push(chunk, (f) => {
        // Response header: size, correlation_id (int32), ...
        if (produces.has(f.readInt32BE(4)) && this.dropProduceResponses > 0) {
          this.dropProduceResponses--;
          this.dropped++;
          close();
          return;
        }
        client.write(f);
      }),
    );
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

describeWithKafka('producers when a produce answer is lost (real broker, fault-injecting proxy)', () => {
  let broker: Broker;
  let proxy: FaultyProxy;
  let proxyPort: number;
  let kafka: Kafka;
  let dir: string;
  beforeAll(async () => {
    proxy = new FaultyProxy();
    proxyPort = await proxy.listen();
    broker = await startBroker({ proxyPort });
    proxy.target = broker.proxiedTarget!;
    kafka = quietKafka(broker.brokers);
    dir = mkdtempSync(join(tmpdir(), 'kaudit-outbox-faults-'));
  }, 180_000);
  afterAll(async () => {
    await proxy?.close();
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  const createTopic = async (topic: string) => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
  };

  /** Commits `n` exec events (pods web-<from>...) with an alert each, as detection leaves them. */
  const commitExecAlerts = (store: SqliteStore, n: number, from: number) => {
    const redaction = { enabled: true, key: store.redactionKey };
    const events = Array.from({ length: n }, (_, i) =>
      normalise(
        toAuditEvent(ev({ verb: 'create', objectRef: { resource: 'pods', subresource: 'exec', namespace: 'default', name: `web-${from + i}` } })),
        'c1',
        redaction,
      ),
    );
    const alerts: Alert[] = events.map((e, i) => ({
      rule: 'pod-exec',
      title: 'exec',
      severity: 'high',
      tags: [],
      summary: `${e.user} exec`,
      cluster: e.cluster,
      auditID: e.auditID,
      stage: e.stage,
      time: e.time,
      timeMicros: e.timeMicros,
      user: e.user,
      sourceIP: e.sourceIP,
      verb: e.verb,
      objectRef: { resource: 'pods', namespace: 'default', name: `web-${from + i}` },
      groupKey: `pod-exec|${e.auditID}`,
    }));
    expect(store.commitAll(events, { alerts, deadLetters: [] }).alerts).toHaveLength(n);
  };

  /** What the topic holds, read directly from the broker: `idsOf` each message, until `expected` and a second more. */
  const readTopic = async (topic: string, expected: number, idsOf: (m: KafkaMessage) => string[]) => {
    const ids: string[] = [];
    const consumer = kafka.consumer({ groupId: `reader-${topic}` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void ids.push(...idsOf(message)) });
    const deadline = Date.now() + 30_000;
    while (ids.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1000)); // and nothing more
    await consumer.disconnect();
    return ids;
  };
  const alertId = (m: KafkaMessage) => [m.headers![HEADER_ALERT_ID]!.toString()];

  it('writes each alert to the topic once when the broker wrote the batch but its answer was lost', async () => {
    const topic = 'alerts-lost-answer';
    await createTopic(topic);
    // A store with alerts committed, as detection leaves them.
    const path = join(dir, 'k.db');
    const store = new SqliteStore(path);
    commitExecAlerts(store, 20, 0);
    const reader = new SqliteStore(path, { readonly: true });

    // kaudit reaches the broker only through the proxy, which swallows the answer to its first Produce.
    proxy.dropProduceResponses = 1;
    const through = [`127.0.0.1:${proxyPort}`];
    const outbox = new KafkaAlertOutbox({
      config: testKafkaConfig(through, { topics: { events: ['unused'], alerts: topic, deadLetter: '', state: '' } }),
      store: reader,
      sink: new Pipeline({ writer: store }),
      kafka: quietKafka(through, 'outbox'),
      pollMs: 100,
      fromStart: true,
    });
    await outbox.start();
    try {
      const deadline = Date.now() + 60_000;
      while (outbox.published < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(outbox.published).toBe(20);
      // The fault happened: the broker got the batch, kaudit never heard back, and the batch went again.
      expect(proxy.dropped).toBe(1);
      expect(proxy.producesForwarded).toBeGreaterThanOrEqual(2);
    } finally {
      await outbox.stop();
    }

    // Read directly from the broker: every alert, once.
    const ids = await readTopic(topic, 20, alertId);
    expect(ids).toHaveLength(20);
    expect(new Set(ids).size).toBe(20);
    reader.close();
    store.close();
  }, 180_000);

  it('an outbox that produced alerts but never recorded its position: the next one publishes none of them again', async () => {
    const topic = 'alerts-unrecorded';
    const path = join(dir, 'unrecorded.db');
    const store = new SqliteStore(path);
    const commit = (n: number, from: number) => commitExecAlerts(store, n, from);
    commit(20, 0);
    const reader = new SqliteStore(path, { readonly: true });
    const config = testKafkaConfig(broker.brokers, { topics: { events: ['unused'], alerts: topic, deadLetter: '', state: '' } });
    // The first outbox publishes, but every save of its position fails: as if it was killed right after each produce.
    const lost = new KafkaAlertOutbox({
      config,
      store: reader,
      sink: { submit: () => Promise.reject(new Error('killed before the position was stored')) },
      kafka: quietKafka(broker.brokers, 'outbox-1'),
      pollMs: 100,
      fromStart: true,
    });
    await lost.start();
    const deadline = Date.now() + 60_000;
    while (lost.published < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(lost.stats.published).toBe(20);
    await lost.stop();
    expect(await reader.position(`kafka-alerts:${topic}`)).toBeUndefined();

    // The next outbox starts from no position (all 20 again, by the store), reads the topic's end and skips them.
    commit(5, 20);
    const next = new KafkaAlertOutbox({
      config,
      store: reader,
      sink: new Pipeline({ writer: store }),
      kafka: quietKafka(broker.brokers, 'outbox-2'),
      pollMs: 100,
      fromStart: true,
    });
    await next.start();
    try {
      const until = Date.now() + 60_000;
      while (next.published < (await reader.latestAlertId()) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(next.stats.published).toBe(5);
    } finally {
      await next.stop();
    }

    const ids = await readTopic(topic, 25, alertId);
    expect(ids).toHaveLength(25);
    expect(new Set(ids).size).toBe(25);
    reader.close();
    store.close();
  }, 180_000);

  it("writes each event of an ingest-only node's webhook batch to the topic once when its answer was lost", async () => {
    const topic = 'events-lost-answer';
    await createTopic(topic);

    proxy.dropped = 0;
    proxy.producesForwarded = 0;
    proxy.dropProduceResponses = 1;
    const through = [`127.0.0.1:${proxyPort}`];
    const producer = new KafkaEventsProducer({
      config: testKafkaConfig(through, { topics: { events: [topic], alerts: '', deadLetter: '', state: '' } }),
      kafka: quietKafka(through, 'events-producer'),
    });
    await producer.start();
    const events = Array.from({ length: 20 }, (_, i) => ev({ user: { username: `user-${i % 3}`, groups: [] } }));
    try {
      const out = await producer.submit({ source: 'webhook', cluster: 'c1', records: events.map((e, i) => ({ text: JSON.stringify(e), where: `body:${i}` })) });
      expect(out.stored).toBe(20);
      expect(proxy.dropped).toBe(1);
      expect(proxy.producesForwarded).toBeGreaterThanOrEqual(2);
    } finally {
      await producer.stop();
    }

    const ids = await readTopic(topic, 20, (m) => (JSON.parse(m.value!.toString()) as { items: { auditID: string }[] }).items.map((i) => i.auditID));
    expect(ids).toHaveLength(20);
    expect(new Set(ids)).toEqual(new Set(events.map((e) => e.auditID)));
  }, 180_000);
});
