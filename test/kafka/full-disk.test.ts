/**
 * The Kafka source with a store whose file system fills up (a real tmpfs, grown with a remount once full): the
 * group's committed offset never passes what is stored, /readyz says why the node is not ready, and once space
 * returns the node consumes on: every event stored exactly once, and the store passes PRAGMA integrity_check.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, afterEach, expect, it } from 'vitest';
import { startServe, type Running } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/config.js';
import { parseKafkaConfig } from '../../src/config/kafka.js';
import { setLogSink } from '../../src/log.js';
import { waitFor } from '../helpers/events.js';
import { describeWithTmpfs } from '../helpers/tmpfs.js';
import { inspectStore, paddedEvents } from '../helpers/store-check.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { quietKafka } from './harness.js';

describeWithKafka('Kafka source, full disk (real broker)', () => {
  describeWithTmpfs('a full disk under a Kafka detector node', (mount) => {
    let broker: Broker;
    let node: Running | undefined;
    beforeAll(async () => {
      broker = await startBroker();
    }, 180_000);
    afterEach(async () => {
      await node?.stop().catch(() => undefined);
      setLogSink((line) => process.stderr.write(line + '\n'));
    });
    afterAll(async () => {
      await broker?.stop();
    }, 60_000);

    it('commits no offset past what is stored, reports not ready, and consumes on once space returns: every event once', async () => {
      const fs = mount(3 << 20);
      setLogSink(() => undefined);
      const kafka = quietKafka(broker.brokers);
      const admin = kafka.admin();
      await admin.connect();
      await admin.createTopics({
        topics: [
          { topic: 'full-events', numPartitions: 1 },
          { topic: 'full-dead', numPartitions: 1 },
        ],
        waitForLeaders: true,
      });
      // 240 messages, each an EventList of 50 events: 12,000 events that compress badly.
      const messages = Array.from({ length: 240 }, (_, m) => paddedEvents(50, `kafka${m}`));
      const producer = kafka.producer();
      await producer.connect();
      for (let i = 0; i < messages.length; i += 10) {
        await producer.send({
          topic: 'full-events',
          messages: messages.slice(i, i + 10).map((items) => ({ value: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }) })),
        });
      }
      await producer.disconnect();

      const cfg = loadConfig(undefined, {});
      cfg.store.path = join(fs.dir, 'k.db');
      cfg.server.listen = '127.0.0.1:0';
      // Parsed as a config file's kafka: section is, so that every default (fetch sizes, timeouts, formats) is set.
      cfg.kafka = parseKafkaConfig(
        {
          brokers: broker.brokers,
          groupId: 'full-test',
          sessionTimeoutMs: 6000,
          heartbeatIntervalMs: 500,
          consume: true,
          topics: { events: ['full-events'], deadLetter: 'full-dead' },
        },
        {},
      );
      node = await startServe(cfg, { detect: false });
      const base = `http://${node.address}`;
      const ready = await waitFor(
        async () => {
          const r = await fetch(`${base}/readyz`);
          return r.status === 503 ? ((await r.json()) as { error: string }) : undefined;
        },
        'the store to fill up',
        90_000,
      );
      expect(ready.error).toMatch(/cannot write .*: full \(SQLITE_FULL/);

      // What the group committed is stored: every event of every message before the committed offset, once.
      const committed = async () => Number((await admin.fetchOffsets({ groupId: 'full-test', topics: ['full-events'] }))[0]!.partitions[0]!.offset);
      const offset = await committed();
      const mid = inspectStore(cfg.store.path);
      expect(mid.integrity).toBe('ok');
      expect(offset).toBeLessThan(messages.length);
      for (const m of messages.slice(0, Math.max(0, offset))) for (const e of m) expect(mid.ids.get(e.auditID as string)).toBe(1);
      expect(mid.total).toBeLessThan(12_000);

      fs.resize(64 << 20);
      await waitFor(() => inspectStore(cfg.store.path).total >= 12_000, 'the node to consume the rest', 120_000);
      await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 'ready again', 20_000);
      await waitFor(async () => (await committed()) === messages.length, 'the offset committed to the end', 30_000);
      await node.stop();
      node = undefined;
      await admin.disconnect();
      const end = inspectStore(cfg.store.path);
      expect(end.integrity).toBe('ok');
      expect(end.total).toBe(12_000);
      expect([...end.ids.values()].every((n) => n === 1)).toBe(true);
      expect(messages.flat().filter((e) => end.ids.get(e.auditID as string) !== 1)).toEqual([]);
    }, 300_000);
  });
});
