// Kafka client comparison (issue 21): kafkajs (kaudit's client) against the maintained alternatives,
// @confluentinc/kafka-javascript (librdkafka, with a KafkaJS-compatible API) and @platformatic/kafka (pure JavaScript),
// on the same local broker and the same messages. Each client, in a fresh process of its own, consumes the whole topic
// in a new consumer group from the beginning and commits after each batch it handled, twice: without decoding (the
// client alone), then decoding every message with kaudit's decoder (the detector's first step). Prints messages/s,
// events/s, commits and CPU per message (the process's, all threads) for each.
// A client that is not installed is skipped with a line saying so: only kafkajs is a dependency of kaudit; the others
// are installed for the measurement only (`npm install --no-save @platformatic/kafka @confluentinc/kafka-javascript`).
// Usage: node benchmarks/kafka-clients.mjs [--events N] [--clients kafkajs,confluent,platformatic]   (needs `npm run build`, Java 17)
import { execFileSync, fork, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { eventStream } from './lib/generate.mjs';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('..', import.meta.url));
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const PACKAGES = { kafkajs: 'kafkajs', confluent: '@confluentinc/kafka-javascript', platformatic: '@platformatic/kafka' };

/** Whether a client can be loaded here, and its version; else why not. */
function probe(name) {
  try {
    require(PACKAGES[name]);
    // Read from the file: some packages' exports do not include their package.json.
    const pkg = JSON.parse(readFileSync(join(root, 'node_modules', PACKAGES[name], 'package.json'), 'utf8'));
    return { ok: true, version: pkg.version };
  } catch (e) {
    return {
      ok: false,
      why: e.code === 'MODULE_NOT_FOUND' ? `${PACKAGES[name]} is not installed` : `${PACKAGES[name]} does not load: ${e.message.split('\n')[0]}`,
    };
  }
}

if (process.env.KAUDIT_CLIENT_BENCH) await child(JSON.parse(process.env.KAUDIT_CLIENT_BENCH));
else await parent();

async function parent() {
  const { values } = parseArgs({
    options: { events: { type: 'string', default: '100000' }, clients: { type: 'string', default: 'kafkajs,confluent,platformatic' } },
  });
  const N = Number(values.events);
  const script = join(root, 'scripts', 'kafka', 'kafka.sh');
  const check = spawnSync('bash', [script, 'check'], { encoding: 'utf8' });
  if (check.status !== 0) {
    console.log(`kafka client benchmark skipped: ${check.stderr.trim()}`);
    return;
  }
  const clients = [];
  for (const name of values.clients.split(',')) {
    const p = probe(name);
    if (p.ok) clients.push({ name, version: p.version });
    else console.log(`${name}: skipped (${p.why})`);
  }
  const env = Object.fromEntries(
    execFileSync('bash', [script, 'start', '--watch-pid', String(process.pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const brokers = [env.KAFKA_BROKERS];
  const topic = 'bench-clients';
  try {
    // The messages kaudit's ingest-only producer writes: per webhook batch of 500 events, one EventList per identity.
    const { default: kafkajs } = await import('kafkajs');
    const kafka = new kafkajs.Kafka({ clientId: 'bench', brokers, logLevel: kafkajs.logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
    await admin.disconnect();
    const next = eventStream({ seed: 1, rate: 12 });
    const messages = [];
    let bytes = 0;
    for (let i = 0; i < N; i += 500) {
      const byUser = new Map();
      for (let k = i; k < Math.min(N, i + 500); k++) {
        const e = next();
        const key = `bench/${e.user.username}`;
        if (!byUser.has(key)) byUser.set(key, []);
        byUser.get(key).push(JSON.stringify(e));
      }
      for (const [key, items] of byUser) {
        const value = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[${items.join(',')}]}`;
        bytes += value.length;
        messages.push({ key, value });
      }
    }
    const producer = kafka.producer();
    await producer.connect();
    for (let i = 0; i < messages.length; i += 40) await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 40) });
    await producer.disconnect();

    const rows = [];
    for (const decode of [false, true]) {
      for (const c of clients) {
        const settings = {
          client: c.name,
          brokers,
          topic,
          groupId: `bench-${c.name}-${decode ? 'decode' : 'plain'}`,
          messages: messages.length,
          decode,
          dist: join(root, 'dist'),
        };
        const r = await new Promise((resolve, reject) => {
          const p = fork(fileURLToPath(import.meta.url), [], {
            env: { ...process.env, KAUDIT_CLIENT_BENCH: JSON.stringify(settings) },
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          });
          let result;
          const timer = setTimeout(() => p.kill('SIGKILL'), 300_000);
          p.on('message', (m) => (result = m));
          p.on('exit', (code) => {
            clearTimeout(timer);
            if (result && !result.error) resolve(result);
            else reject(new Error(`${c.name}: ${result?.error ?? `exited ${code} without a result`}`));
          });
        }).catch((e) => ({ error: e.message }));
        rows.push({ ...c, decode, ...r });
      }
    }
    console.log(
      `kafka clients: ${fmt(N)} events in ${fmt(messages.length)} EventList messages (${fmt(bytes / messages.length)} B each), one local Kafka ${env.KAFKA_VERSION} broker on the same 2 cores, 4 partitions; a commit after each batch`,
    );
    console.log('client                  version   decode  messages/s    events/s  commits  µs CPU/message  first message after');
    for (const r of rows) {
      if (r.error) {
        console.log(`${r.name.padEnd(22)}  ${r.version.padEnd(8)}  ${r.decode ? 'yes' : 'no '}     failed: ${r.error}`);
        continue;
      }
      const secs = r.wallMs / 1000;
      console.log(
        `${r.name.padEnd(22)}  ${r.version.padEnd(8)}  ${r.decode ? 'yes' : 'no '}  ${fmt(r.messages / secs).padStart(10)}  ${(r.decode ? fmt(r.events / secs) : '-').padStart(10)}  ${String(r.commits).padStart(7)}  ${(r.cpuUs / r.messages).toFixed(1).padStart(14)}  ${(r.startMs / 1000).toFixed(1)} s`,
      );
    }
  } finally {
    execFileSync('bash', [script, 'stop', '--dir', env.KAFKA_DIR], { stdio: 'inherit' });
  }
}

/** One client's run: consume every message once, commit per batch; reports to the parent over IPC. */
async function child(s) {
  const { decodeRecord } = s.decode ? await import(pathToFileURL(join(s.dist, 'events', 'decode.js')).href) : { decodeRecord: undefined };
  let messages = 0;
  let events = 0;
  let commits = 0;
  let first = 0;
  const t0 = performance.now();
  // CPU from the first message on: connecting and joining the group are not what is compared.
  let cpu0;
  const handle = (value) => {
    if (!first) {
      first = performance.now();
      cpu0 = process.cpuUsage();
    }
    messages++;
    if (decodeRecord) for (const d of decodeRecord({ text: value, where: 'm' })) if (!('error' in d)) events++;
  };
  const finish = (stop) => {
    const wallMs = performance.now() - first;
    const c = process.cpuUsage(cpu0);
    process.send({ messages, events, commits, wallMs, startMs: first - t0, cpuUs: c.user + c.system }, () => stop().finally(() => process.exit(0)));
  };
  try {
    if (s.client === 'kafkajs' || s.client === 'confluent') {
      // The same KafkaJS-style code for both: confluent's KafkaJS API takes kafkajs's settings in a `kafkaJS` block.
      let consumer;
      if (s.client === 'kafkajs') {
        const { Kafka, logLevel } = require('kafkajs');
        consumer = new Kafka({ clientId: 'bench', brokers: s.brokers, logLevel: logLevel.NOTHING }).consumer({
          groupId: s.groupId,
          // Fetches large enough for batches of hundreds of messages, as the others make (kaudit's default is 1 MiB).
          maxBytesPerPartition: 8 * 1024 * 1024,
          maxBytes: 32 * 1024 * 1024,
        });
      } else {
        const { KafkaJS } = require('@confluentinc/kafka-javascript');
        consumer = new KafkaJS.Kafka({ kafkaJS: { clientId: 'bench', brokers: s.brokers, logLevel: KafkaJS.logLevel.NOTHING } }).consumer({
          kafkaJS: { groupId: s.groupId, fromBeginning: true, autoCommit: false },
          // Batches as large as kafkajs's (its default is 32 messages).
          'js.consumer.max.batch.size': 1000,
        });
      }
      await consumer.connect();
      await consumer.subscribe(s.client === 'kafkajs' ? { topic: s.topic, fromBeginning: true } : { topics: [s.topic] });
      let done;
      const finished = new Promise((r) => (done = r));
      await consumer.run({
        ...(s.client === 'kafkajs' ? { autoCommit: false } : {}),
        partitionsConsumedConcurrently: 2,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          let last;
          for (const m of batch.messages) {
            handle(m.value);
            last = m.offset;
          }
          if (last === undefined) return;
          resolveOffset(last);
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(BigInt(last) + 1n) }]);
          commits++;
          if (messages >= s.messages) done();
        },
      });
      await finished;
      finish(() => consumer.disconnect());
    } else {
      const { Consumer, MessagesStreamModes } = await import('@platformatic/kafka');
      const consumer = new Consumer({ groupId: s.groupId, clientId: 'bench', bootstrapBrokers: s.brokers, autocommit: false, maxBytes: 10 * 1024 * 1024 });
      const stream = await consumer.consume({ topics: [s.topic], mode: MessagesStreamModes.EARLIEST, autocommit: false });
      // The stream hands messages one at a time: a batch is what arrived since the last commit, at most 500, and the
      // last message of each partition in it is committed (the stream is not read while the commit is under way).
      let pending = new Map();
      let n = 0;
      const commit = async () => {
        const lasts = [...pending.values()];
        pending = new Map();
        n = 0;
        await Promise.all(lasts.map((m) => m.commit()));
        commits += lasts.length ? 1 : 0;
      };
      for await (const m of stream) {
        handle(m.value);
        pending.set(m.partition, m);
        if (++n >= 500 || messages >= s.messages || stream.readableLength === 0) await commit();
        if (messages >= s.messages) break;
      }
      finish(() => consumer.close(true));
    }
  } catch (e) {
    process.send({ error: e.message.split('\n')[0] }, () => process.exit(1));
  }
}
