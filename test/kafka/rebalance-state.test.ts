/**
 * Detection windows across a real rebalance: `kaudit serve` detector processes (each with its own SQLite store, the
 * bundled rules) in one consumer group on a real broker. Twelve identities each send six denied requests, a partition
 * then moves (a second detector joins, or one of two is SIGKILLed), and each identity sends four more: the
 * forbidden-burst rule (ten denials by one user within 5 minutes) must fire exactly once per identity across the
 * detectors, also for the identities whose partition moved between their sixth and seventh denial. Without the state
 * topic (the last test) the moved identities' bursts are missed, so the first two could fail.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Kafka } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KafkaEventsProducer } from '../../src/sinks/kafka.js';
import { tempDir, waitFor } from '../helpers/events.js';
import { type Broker, describeWithKafka, startBroker } from './broker.js';
import { quietKafka, testKafkaConfig } from './harness.js';
import { startServeProcess, type ServeProcess } from './serve-process.js';

const IDENTITIES = 12;
const PARTITIONS = 4;
const BASE_MS = Date.UTC(2026, 10, 3, 9, 0, 0);

/** Denial `k` (0-9) of identity `i`: one every 10 s of event time, each identity in its own minute range. */
function denial(i: number, k: number): Record<string, unknown> {
  const ms = BASE_MS + i * 3_600_000 + k * 10_000;
  const t = new Date(ms).toISOString().replace('Z', '000Z');
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: `00000000-0000-4000-9000-${String(i * 100 + k).padStart(12, '0')}`,
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/team-a/configmaps',
    verb: 'list',
    user: { username: `burst-${i}@example.com`, groups: ['system:authenticated'] },
    sourceIPs: ['198.51.100.7'],
    userAgent: 'kubectl/v1.31.0',
    objectRef: { resource: 'configmaps', namespace: 'team-a', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 403 },
    requestReceivedTimestamp: t,
    stageTimestamp: t,
    annotations: { 'authorization.k8s.io/decision': 'forbid', 'authorization.k8s.io/reason': '' },
  };
}

const cluster = (i: number) => (i % 2 === 0 ? 'prod-eu' : 'prod-us');

describeWithKafka('detection windows move with their partition (real rebalance, kaudit serve processes)', () => {
  let broker: Broker;
  let kafka: Kafka;
  const running: ServeProcess[] = [];
  beforeAll(async () => {
    broker = await startBroker();
    kafka = quietKafka(broker.brokers);
  }, 180_000);
  afterAll(async () => {
    for (const p of running) await p.kill();
    await broker?.stop();
  }, 60_000);

  async function scenario(
    name: string,
    opts: { stateTopic: boolean; initial: string[] },
    move: (start: (n: string) => Promise<ServeProcess>, nodes: ServeProcess[]) => Promise<void>,
  ) {
    const dir = tempDir();
    const topics = { events: [`rb-events-${name}`], alerts: '', deadLetter: `rb-dead-${name}`, state: opts.stateTopic ? `rb-state-${name}` : '' };
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: topics.events[0]!, numPartitions: PARTITIONS },
        { topic: topics.deadLetter, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    const groupId = `rb-${name}`;
    const nodes: ServeProcess[] = [];
    const start = async (node: string) => {
      const p = await startServeProcess(dir, node, {
        cluster: 'default',
        store: { path: join(dir, `${node}.db`) },
        kafka: { brokers: broker.brokers, groupId, topics, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500 },
      });
      running.push(p);
      nodes.push(p);
      return p;
    };
    const assigned = async (p: ServeProcess) => (p.alive() ? ((await p.metric('kaudit_kafka_assigned_partitions')) ?? 0) : 0);
    const owners = async () => Promise.all(nodes.map(assigned));
    /** Every partition's offset is committed up to its end: the detectors are done, and (before each commit) saved their state. */
    const committed = async () => {
      const ends = await admin.fetchTopicOffsets(topics.events[0]!);
      const [done] = await admin.fetchOffsets({ groupId, topics: topics.events });
      return ends.every((e) => done!.partitions.find((p) => p.partition === e.partition)?.offset === e.high);
    };
    const produce = async (from: number, to: number) => {
      const producer = new KafkaEventsProducer({ config: testKafkaConfig(broker.brokers, { topics }), kafka });
      await producer.start();
      for (let i = 0; i < IDENTITIES; i++) {
        const records = [];
        for (let k = from; k < to; k++) records.push({ text: JSON.stringify(denial(i, k)), where: `identity ${i} denial ${k}` });
        await producer.submit({ source: 'webhook', cluster: cluster(i), clusterFixed: true, records });
      }
      await producer.stop();
    };
    const fromStores = <T>(sql: string): T[] =>
      nodes.flatMap((n) => {
        const db = new Database(join(dir, `${n.name}.db`), { readonly: true });
        try {
          return (db.prepare(sql).all() as T[]).map((r) => ({ ...r, node: n.name }));
        } finally {
          db.close();
        }
      });

    const spread = async () => {
      const o = await owners();
      const live = nodes.filter((n) => n.alive()).length;
      return o.reduce((s, n) => s + n, 0) === PARTITIONS && o.filter((n, i) => n > 0 && nodes[i]!.alive()).length === live;
    };
    try {
      for (const n of opts.initial) await start(n);
      await waitFor(spread, 'the partitions spread over the detectors', 60_000);
      await produce(0, 6);
      await waitFor(committed, 'the first six denials of every identity committed', 60_000);

      await move(start, nodes);
      await waitFor(spread, 'the partitions spread over the live detectors', 60_000);
      await produce(6, 10);
      await waitFor(committed, 'the last four denials of every identity committed', 60_000);

      const events = fromStores<{ id: string }>('SELECT hex(audit_id) AS id FROM events');
      expect(new Set(events.map((e) => e.id)).size).toBe(IDENTITIES * 10);
      // No alert of any rule twice, in one store or across them.
      const all = fromStores<{ rule: string; audit_id: string; count: number }>('SELECT rule, audit_id, count FROM alerts');
      expect(all.filter((a) => a.count !== 1)).toEqual([]);
      expect(new Set(all.map((a) => `${a.rule}/${a.audit_id}`)).size).toBe(all.length);
      const bursts = fromStores<{ user: string; node: string }>("SELECT user FROM alerts WHERE rule = 'forbidden-burst'");
      // The identities each store holds events of.
      const users = fromStores<{ user: string; node: string }>('SELECT DISTINCT d.value AS user FROM events e JOIN dict d ON d.id = e.user');
      return { bursts, users, nodes };
    } finally {
      await admin.disconnect();
    }
  }

  it('a second detector joins mid-burst: every burst fires exactly once, moved ones in the new detector', async () => {
    const { bursts, nodes } = await scenario('join', { stateTopic: true, initial: ['a'] }, async (start) => {
      await start('b');
    });
    expect(bursts.map((b) => b.user).sort()).toEqual(Array.from({ length: IDENTITIES }, (_, i) => `burst-${i}@example.com`).sort());
    // b took over some partitions, and the bursts of the identities in them, whose first six denials a counted.
    expect(bursts.filter((b) => b.node === 'b').length).toBeGreaterThan(0);
    expect(await nodes[1]!.metric('kaudit_kafka_state_loads_total')).toBeGreaterThan(0);
    expect(await nodes[0]!.metric('kaudit_kafka_state_drops_total')).toBeGreaterThan(0);
    for (const n of nodes) expect((await n.stop()).code).toBe(0);
  }, 300_000);

  it('one of two detectors is SIGKILLed mid-burst: the survivor completes its bursts, each fires exactly once', async () => {
    const { bursts, users, nodes } = await scenario('kill', { stateTopic: true, initial: ['a', 'b'] }, async (_start, nodes) => {
      await nodes[0]!.kill();
    });
    expect(nodes[0]!.alive()).toBe(false);
    expect(bursts.map((b) => b.user).sort()).toEqual(Array.from({ length: IDENTITIES }, (_, i) => `burst-${i}@example.com`).sort());
    // Every burst completed after the kill, so in b: also those of the identities whose first six denials a counted.
    expect(bursts.every((b) => b.node === 'b')).toBe(true);
    expect(users.filter((u) => u.node === 'a').length).toBeGreaterThan(0);
    expect(await nodes[1]!.metric('kaudit_kafka_state_loads_total')).toBeGreaterThan(0);
    expect((await nodes[1]!.stop()).code).toBe(0);
  }, 300_000);

  it('without a state topic, the bursts of the identities that moved are missed (what the tests above guard against)', async () => {
    const { bursts, nodes } = await scenario('none', { stateTopic: false, initial: ['a'] }, async (start) => {
      await start('b');
    });
    expect(bursts.length).toBeLessThan(IDENTITIES);
    expect(bursts.filter((b) => b.node === 'b')).toEqual([]);
    for (const n of nodes) expect((await n.stop()).code).toBe(0);
  }, 300_000);
});
