/** Detector-node processes and a producer of the test stream, for the scale-out tests. */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import kafkajs, { type Kafka, type KafkaMessage } from 'kafkajs';
import { defaultKafkaConfig, type KafkaConfig } from '../../src/config/kafka.js';
import type { KafkaSourceStats } from '../../src/sources/kafka.js';
import { KafkaEventsProducer } from '../../src/sinks/kafka.js';
import { waitFor } from '../helpers/events.js';
import type { Stream } from './fixtures.js';

const { Kafka: KafkaClient, logLevel } = kafkajs;

export function quietKafka(brokers: string[], clientId = 'kaudit-test'): Kafka {
  return new KafkaClient({ clientId, brokers, logLevel: logLevel.NOTHING, retry: { retries: 10, initialRetryTime: 200, maxRetryTime: 3000 } });
}

export function testKafkaConfig(brokers: string[], over: Partial<KafkaConfig> = {}): KafkaConfig {
  const d = defaultKafkaConfig();
  return { ...d, brokers, sessionTimeoutMs: 6000, heartbeatIntervalMs: 500, ...over, topics: { ...d.topics, ...over.topics } };
}

export interface NodeProcess {
  child: ChildProcess;
  stats: KafkaSourceStats | undefined;
  assigned: number;
  exited: Promise<number | null>;
  /** Graceful: finish the batch, leave the group, exit. */
  stop(): Promise<number | null>;
  /** SIGKILL: no commit, no LeaveGroup; the group notices after the session timeout. */
  kill(): Promise<void>;
}

/** Starts a detector node (test/kafka/consumer-process.ts from the transpiled build) and waits until it has started. */
export async function startNode(
  build: string,
  settings: { db: string; kafka: Partial<KafkaConfig> & { brokers: string[] }; maxQueuedBatches?: number; crashAfterStored?: number },
): Promise<NodeProcess> {
  const child = fork(join(build, 'test', 'kafka', 'consumer-process.js'), [], {
    env: { ...process.env, KAUDIT_TEST_NODE: JSON.stringify(settings), KAUDIT_LOG_LEVEL: process.env.KAUDIT_LOG_LEVEL ?? 'warn' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const node: NodeProcess = {
    child,
    stats: undefined,
    assigned: 0,
    exited: new Promise((r) => child.once('exit', (code) => r(code))),
    async stop() {
      child.send('stop');
      return node.exited;
    },
    async kill() {
      child.kill('SIGKILL');
      await node.exited;
    },
  };
  await new Promise<void>((resolve, reject) => {
    child.on('message', (m: { type: string; stats?: KafkaSourceStats; assigned?: number }) => {
      if (m.type === 'started') resolve();
      if (m.type === 'stats') {
        node.stats = m.stats;
        node.assigned = m.assigned ?? 0;
      }
    });
    child.once('exit', (code) => reject(new Error(`detector node exited with ${code} before it started`)));
  });
  return node;
}

/**
 * Produces the stream through KafkaEventsProducer (the ingest-only sink), `recordsPerBatch` documents per submit, as the
 * webhook would; a batch that fails (broker down) is retried after a pause, like the apiserver retries its webhook.
 */
export async function produceStream(
  kafka: Kafka,
  config: KafkaConfig,
  stream: Stream,
  opts: { recordsPerBatch?: number; onProgress?: (events: number) => void } = {},
): Promise<{ retries: number }> {
  const producer = new KafkaEventsProducer({ config, kafka });
  await producer.start();
  const per = opts.recordsPerBatch ?? 400;
  let retries = 0;
  let events = 0;
  try {
    for (let i = 0; i < stream.messages.length;) {
      // A webhook batch holds one cluster's events: split the stream into runs of one cluster.
      const cluster = stream.messages[i]!.cluster;
      const group = [];
      while (i < stream.messages.length && group.length < per) {
        const m = stream.messages[i]!;
        if (m.cluster !== cluster && group.length > 0) break;
        group.push(m);
        i++;
      }
      for (;;) {
        try {
          await producer.submit({ source: 'webhook', cluster, records: group.map((m, k) => ({ text: m.value, where: `message ${i - group.length + k}` })) });
          break;
        } catch {
          retries++;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      events += group.reduce((n, m) => n + m.events, 0);
      opts.onProgress?.(events);
    }
  } finally {
    await producer.stop();
  }
  return { retries };
}

/** Reads a whole topic from the beginning: until `n` messages arrived, then `settleMs` more (none more should come). */
export async function readTopic(kafka: Kafka, topic: string, n: number, settleMs = 300): Promise<KafkaMessage[]> {
  const out: KafkaMessage[] = [];
  const consumer = kafka.consumer({ groupId: `reader-${topic}-${Math.random()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => void out.push(message) });
  try {
    await waitFor(() => out.length >= n, `${n} messages in ${topic}`, 30_000);
    await new Promise((r) => setTimeout(r, settleMs));
  } finally {
    await consumer.disconnect();
  }
  return out;
}
