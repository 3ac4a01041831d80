import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';

/** Header carrying an alert's id in the store (its commit order), which the outbox publishes in increasing order. */
export const HEADER_ALERT_SEQ = 'kaudit-alert-seq';

/** How long reading the topic's tail may take before the outbox gives up for now and tries again (ms). */
const TAIL_TIMEOUT_MS = 30_000;

/**
 * The store ids of the alerts at the end of the alerts topic: the last `depth` messages of each partition. The outbox
 * saves its position in the store after each produce, so what it produced and could not record (it was killed in
 * between, or a produce that failed had reached the broker after all) is within its last produce of at most `depth`
 * alerts. Before it publishes again from a saved position (at start, when it takes the fleet's outbox over, after a
 * failed produce) it reads these and skips them, so no alert goes to the topic twice.
 *
 * Read by a consumer of a group of its own (random, committing nothing; the broker forgets it once empty).
 */
export async function publishedAtEnd(kafka: Kafka, topic: string, depth: number): Promise<Set<number>> {
  const admin = kafka.admin();
  await admin.connect();
  let ends: { partition: number; low: string; high: string }[];
  try {
    // Not made yet: nothing was published (the outbox's producer makes it with its first alerts).
    if (!(await admin.listTopics()).includes(topic)) return new Set();
    ends = (await admin.fetchTopicOffsets(topic)).filter((o) => BigInt(o.high) > BigInt(o.low));
  } finally {
    await admin.disconnect();
  }
  const seen = new Set<number>();
  if (ends.length === 0) return seen;
  const left = new Map(ends.map((o) => [o.partition, BigInt(o.high)]));
  const consumer = kafka.consumer({ groupId: `kaudit-outbox-tail.${randomUUID()}`, allowAutoTopicCreation: false });
  await consumer.connect();
  let timer: NodeJS.Timeout | undefined;
  try {
    await consumer.subscribe({ topic, fromBeginning: false });
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const seq = Number(message.headers?.[HEADER_ALERT_SEQ]?.toString());
        if (Number.isSafeInteger(seq)) seen.add(seq);
        const high = left.get(partition);
        if (high !== undefined && BigInt(message.offset) + 1n >= high) left.delete(partition);
        if (left.size === 0) done();
      },
    });
    for (const o of ends) {
      const from = BigInt(o.high) - BigInt(depth);
      consumer.seek({ topic, partition: o.partition, offset: String(from > BigInt(o.low) ? from : BigInt(o.low)) });
    }
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`reading the last ${depth} alerts of ${topic} took over ${TAIL_TIMEOUT_MS / 1000} s`)), TAIL_TIMEOUT_MS);
    });
    await Promise.race([finished, timedOut]);
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
  return seen;
}
