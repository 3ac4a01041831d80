#!/usr/bin/env node
// Checks, by experiment, that the installed kafkajs works with a Kafka broker version: every protocol call kaudit
// makes (admin, produce with acks=all, consume in a group, commit and fetch offsets, a rebalance between two group
// members, pause/resume, SCRAM over plaintext and TLS). Starts its own broker with kafka.sh.
//
//   KAUDIT_KAFKA_VERSION=4.1.1 node scripts/kafka/compat.mjs
//
// Prints one line per check and exits 1 when any failed. The findings are written up in scripts/kafka/README.md.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';

const { Kafka, logLevel } = kafkajs;
const script = fileURLToPath(new URL('./kafka.sh', import.meta.url));
const out = execFileSync('bash', [script, 'start', '--secure', '--watch-pid', String(process.pid)], {
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'inherit'],
});
const env = Object.fromEntries(
  out
    .trim()
    .split('\n')
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
);
console.log(`broker: Kafka ${env.KAFKA_VERSION} at ${env.KAFKA_BROKERS}`);

const results = [];
async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok    ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    results.push(false);
    console.log(`FAIL  ${name}: ${err?.name}: ${err?.message}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const waitFor = async (cond, ms, what) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

// Every request kafkajs sends is logged at debug level as `Request Name(key: k, version: v)`: collect them, to show
// which protocol versions kafkajs negotiated with this broker.
const used = new Map();
const census =
  () =>
  ({ log }) => {
    const m = /^Request (\w+)\(key: (\d+), version: (\d+)\)/.exec(log.message ?? '');
    if (m)
      used.set(
        m[1],
        [...new Set([...(used.get(m[1]) ?? []), Number(m[3])])].sort((a, b) => a - b),
      );
  };
const kafka = new Kafka({
  clientId: 'compat',
  brokers: [env.KAFKA_BROKERS],
  logLevel: logLevel.DEBUG,
  logCreator: census,
});
const admin = kafka.admin();
const topic = 'compat-events';
const N = 2000;

try {
  await check('admin: connect, describeCluster (Metadata, ApiVersions)', async () => {
    await admin.connect();
    const c = await admin.describeCluster();
    assert(c.brokers.length === 1, 'one broker expected');
  });
  await check('admin: createTopics (CreateTopics), listTopics', async () => {
    await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
    assert((await admin.listTopics()).includes(topic), 'topic not listed');
  });
  await check('admin: fetchTopicMetadata, describeConfigs', async () => {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    assert(md.topics[0].partitions.length === 4, 'four partitions expected');
    const cfg = await admin.describeConfigs({ resources: [{ type: 2, name: topic }], includeSynonyms: false });
    assert(cfg.resources.length === 1, 'config of one topic expected');
  });

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await check('producer: send with acks=all, keys and headers, gzip (Produce)', async () => {
    await producer.connect();
    for (let b = 0; b < N; b += 500) {
      const messages = [];
      for (let i = b; i < b + 500; i++) messages.push({ key: `c/u${i % 7}`, value: JSON.stringify({ i }), headers: { h: 'v' } });
      await producer.send({ topic, acks: -1, compression: b % 1000 === 0 ? 1 : 0, messages });
    }
  });
  await check('admin: fetchTopicOffsets (ListOffsets)', async () => {
    const offs = await admin.fetchTopicOffsets(topic);
    const total = offs.reduce((s, p) => s + Number(p.high), 0);
    assert(total === N, `expected ${N} messages, high watermarks add to ${total}`);
  });

  const seen = new Set();
  const mk = (_id) => kafka.consumer({ groupId: 'compat-group', sessionTimeout: 10000, heartbeatInterval: 1000, rebalanceTimeout: 10000 });
  const c1 = mk('c1');
  const assigned = { c1: 0, c2: 0 };
  await check('consumer: join group, eachBatch with manual resolve + commit (FindCoordinator, JoinGroup, SyncGroup, Fetch, OffsetCommit)', async () => {
    await c1.connect();
    await c1.subscribe({ topic, fromBeginning: true });
    c1.on(c1.events.GROUP_JOIN, (e) => (assigned.c1 = Object.values(e.payload.memberAssignment).flat().length));
    await c1.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary }) => {
        for (const m of batch.messages) {
          seen.add(JSON.parse(m.value.toString()).i);
          resolveOffset(m.offset);
        }
        await c1.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }]);
        await heartbeat();
        await commitOffsetsIfNecessary();
      },
    });
    await waitFor(() => seen.size === N, 30000, `${N} messages`);
    assert(assigned.c1 === 4, `c1 should own 4 partitions, owns ${assigned.c1}`);
  });
  await check('admin: fetchOffsets for the group (OffsetFetch), describeGroups, listGroups', async () => {
    // The last commit may still be in flight when the last message has been seen.
    let total = 0;
    for (let tries = 0; tries < 50 && total !== N; tries++) {
      if (tries) await new Promise((r) => setTimeout(r, 100));
      const offs = await admin.fetchOffsets({ groupId: 'compat-group', topics: [topic] });
      total = offs[0].partitions.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0); // -1: nothing committed
    }
    assert(total === N, `committed offsets add to ${total}, expected ${N}`);
    const g = await admin.describeGroups(['compat-group']);
    assert(g.groups[0].state === 'Stable', `group state ${g.groups[0].state}`);
    const l = await admin.listGroups();
    assert(
      l.groups.some((x) => x.groupId === 'compat-group'),
      'group not listed',
    );
  });

  const c2 = mk('c2');
  await check('consumer: a second member joins, the group rebalances (Heartbeat REBALANCE_IN_PROGRESS, JoinGroup again)', async () => {
    c2.on(c2.events.GROUP_JOIN, (e) => (assigned.c2 = Object.values(e.payload.memberAssignment).flat().length));
    await c2.connect();
    await c2.subscribe({ topic, fromBeginning: true });
    await c2.run({ eachMessage: async ({ message }) => void seen.add(JSON.parse(message.value.toString()).i + N) });
    await waitFor(() => assigned.c2 === 2 && assigned.c1 === 2, 30000, 'a 2+2 assignment');
    // Committed offsets must hold: c2 starts from them, not from the beginning.
    await new Promise((r) => setTimeout(r, 1500));
    assert(seen.size === N, `c2 re-read ${seen.size - N} committed messages`);
  });
  await check('consumer: pause and resume a topic', async () => {
    c1.pause([{ topic }]);
    c2.pause([{ topic }]);
    await producer.send({ topic, acks: -1, messages: [{ key: 'x', value: JSON.stringify({ i: N }) }] });
    await new Promise((r) => setTimeout(r, 1000));
    assert(!seen.has(N) && !seen.has(2 * N), 'a paused consumer received a message');
    c1.resume([{ topic }]);
    c2.resume([{ topic }]);
    await waitFor(() => seen.has(N) || seen.has(2 * N), 10000, 'the message after resume');
  });
  await check('consumer: a member leaves (LeaveGroup), the other takes all partitions', async () => {
    await c2.disconnect();
    await waitFor(() => assigned.c1 === 4, 30000, 'c1 to own all four partitions again');
  });
  await c1.disconnect();
  await check('admin: resetOffsets, deleteGroups, deleteTopics', async () => {
    await admin.resetOffsets({ groupId: 'compat-group', topic, earliest: true });
    await admin.deleteGroups(['compat-group']);
    await admin.deleteTopics({ topics: [topic] });
  });
  await producer.disconnect();

  for (const [listener, mech, ssl] of [
    ['KAFKA_SASL_BROKERS', 'scram-sha-256', false],
    ['KAFKA_SASL_BROKERS', 'scram-sha-512', false],
    ['KAFKA_SASL_SSL_BROKERS', 'scram-sha-512', true],
  ]) {
    await check(`SASL ${mech.toUpperCase()}${ssl ? ' over TLS' : ''}: produce and read back`, async () => {
      const k = new Kafka({
        clientId: 'compat-sasl',
        brokers: [env[listener]],
        logLevel: logLevel.DEBUG,
        logCreator: census,
        ssl: ssl ? { ca: [readFileSync(env.KAFKA_CA, 'utf8')] } : undefined,
        sasl: { mechanism: mech, username: env.KAFKA_SCRAM_USER, password: env.KAFKA_SCRAM_PASSWORD },
      });
      const p = k.producer();
      await p.connect();
      const t = `sasl-${mech}-${ssl}`;
      await p.send({ topic: t, acks: -1, messages: [{ value: 'hello' }] });
      await p.disconnect();
      const a = k.admin();
      await a.connect();
      const offs = await a.fetchTopicOffsets(t);
      await a.disconnect();
      assert(offs.reduce((s, x) => s + Number(x.high), 0) === 1, 'one message expected');
    });
  }
  await check('SASL with a wrong password is refused', async () => {
    const k = new Kafka({
      clientId: 'compat-bad',
      brokers: [env.KAFKA_SASL_BROKERS],
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      sasl: { mechanism: 'scram-sha-256', username: env.KAFKA_SCRAM_USER, password: 'wrong' },
    });
    const p = k.producer();
    let refused = false;
    try {
      await p.connect();
    } catch (err) {
      refused = /SASL|authentication/i.test(String(err?.message)) || err?.name === 'KafkaJSSASLAuthenticationError';
    }
    assert(refused, 'connect did not fail with an authentication error');
  });
} finally {
  await admin.disconnect().catch(() => {});
  execFileSync('bash', [script, 'stop', '--dir', env.KAFKA_DIR], { stdio: 'inherit' });
}
console.log(
  'protocol versions kafkajs used: ' +
    [...used]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, v]) => `${name} v${v.join(',')}`)
      .join(', '),
);
const failed = results.filter((r) => !r).length;
console.log(`Kafka ${env.KAFKA_VERSION} with kafkajs: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
