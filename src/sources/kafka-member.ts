import type { Consumer, ConsumerGroupJoinEvent, EachBatchPayload, Kafka } from 'kafkajs';
import type { KafkaConfig } from '../config/kafka.js';
import { log } from '../log.js';

/**
 * The Kafka source's seat in its consumer group: one kafkajs consumer, and a new one when kafkajs gives the old one up.
 *
 * kafkajs rejoins by itself after most group errors, but a group-membership refusal that reaches it wrapped in its
 * retrier's KafkaJSNonRetriableError (the coordinator no longer knows this member, its generation is old, a rebalance
 * is under way) makes it stop the consumer for good (CRASH with `restart: false`). That happens when one batch outlasts
 * the session: a store retrying through an outage. A node that stopped consuming without exiting is the worst outcome,
 * so such a crash builds a new consumer and joins again, after a backoff that doubles up to 30 s while joining fails.
 * The new member starts from the group's committed offsets, which only ever cover stored batches: nothing is skipped.
 */

/** Refusals that say the group has moved on without this member: it joins again, nothing is broken. */
const GROUP_MOVED_ON = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'REBALANCE_IN_PROGRESS', 'FENCED_INSTANCE_ID']);

const FIRST_REJOIN_MS = 1000;
const MAX_REJOIN_MS = 30_000;

/**
 * True when `e`, or what it wraps, is a refusal that says the group has moved on without this member. kafkajs' retrier
 * wraps protocol errors (which carry `type`) in errors that do not, with the original as `cause`.
 */
export function groupMovedOn(e: unknown): boolean {
  for (let c = e, depth = 0; c && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    if (GROUP_MOVED_ON.has((c as { type?: string }).type ?? '')) return true;
  }
  return false;
}

/**
 * Awaits `work`, calling `beat` every `everyMs` meanwhile: kafkajs heartbeats only when asked, so a batch waiting on a
 * slow store would otherwise send none and be dropped from the group once the session runs out. `beat` must not throw.
 */
export async function heartbeatWhile<T>(work: Promise<T>, beat: () => Promise<void>, everyMs: number): Promise<T> {
  const t = setInterval(() => void beat(), everyMs);
  try {
    return await work;
  } finally {
    clearInterval(t);
  }
}

export interface GroupMemberOptions {
  kafka: Kafka;
  config: KafkaConfig;
  /** Handles a fetched batch; `consumer` is the one it came from (commit through it, never through a newer one). */
  eachBatch: (p: EachBatchPayload, consumer: Consumer) => Promise<void>;
  onJoin: (e: ConsumerGroupJoinEvent) => void;
}

export class GroupMember {
  /** New consumers built after kafkajs gave one up. */
  restarts = 0;
  private consumer: Consumer | undefined;
  /** Set when a crash was not a group-membership one: this node no longer consumes. */
  private crashed: Error | undefined;
  /** Set from a group-membership crash until the new consumer has joined. */
  private rejoining: Error | undefined;
  private waitMs = FIRST_REJOIN_MS;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly opts: GroupMemberOptions) {}

  /** Why this member is not consuming, for /readyz; undefined while it is a member (or joining at start). */
  get problem(): string | undefined {
    if (this.crashed) return `kafka consumer stopped: ${this.crashed.message}`;
    if (this.rejoining) return `kafka consumer rejoining group ${this.opts.config.groupId} after: ${this.rejoining.message}`;
    return undefined;
  }

  /** Set when the consumer crashed and is not rebuilt: this node no longer consumes. */
  get failed(): Error | undefined {
    return this.crashed;
  }

  /** Connects, subscribes and starts consuming; throws when the first consumer cannot start. */
  async start(): Promise<void> {
    await this.join();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.consumer?.disconnect();
  }

  private async join(): Promise<void> {
    const c = this.opts.config;
    const consumer = this.opts.kafka.consumer({
      groupId: c.groupId,
      sessionTimeout: c.sessionTimeoutMs,
      heartbeatInterval: c.heartbeatIntervalMs,
      rebalanceTimeout: Math.max(c.sessionTimeoutMs, 30_000),
      maxBytesPerPartition: c.maxBytesPerPartition,
      maxBytes: Math.max(c.maxBytesPerPartition * 8, 10 * 1024 * 1024),
      allowAutoTopicCreation: false,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      if (this.consumer !== consumer) return;
      if (this.rejoining) log.info(`kafka: consumer back in group ${c.groupId} after: ${this.rejoining.message}`);
      this.rejoining = undefined;
      this.waitMs = FIRST_REJOIN_MS;
      this.opts.onJoin(e);
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (this.consumer !== consumer) return;
      const error = e.payload.error;
      // kafkajs restarts the consumer itself after retriable failures (broker restart, coordinator loading): a warning.
      if (e.payload.restart) log.warn(`kafka consumer restarting after: ${error?.message}`, 'kafka:crash');
      else if (groupMovedOn(error) && !this.stopped) {
        this.rejoining = error;
        log.warn(`kafka consumer dropped from group ${c.groupId} (${error.message}); a new one joins in ${this.waitMs} ms`, 'kafka:crash');
        this.scheduleRejoin();
      } else {
        this.crashed = error;
        log.error(`kafka consumer stopped: ${error?.message}; this node no longer consumes ${c.topics.events.join(', ')}`, 'kafka:crash');
      }
    });
    try {
      await consumer.connect();
      for (const topic of c.topics.events) await consumer.subscribe({ topic, fromBeginning: c.fromBeginning });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: c.partitionsConsumedConcurrently,
        eachBatch: (p) => this.opts.eachBatch(p, consumer),
      });
    } catch (e) {
      await consumer.disconnect().catch(() => {});
      throw e;
    }
    if (this.stopped) await consumer.disconnect();
  }

  private scheduleRejoin(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.stopped) return;
      this.restarts++;
      this.join().catch((e: unknown) => {
        this.rejoining = e as Error;
        this.waitMs = Math.min(this.waitMs * 2, MAX_REJOIN_MS);
        log.warn(`kafka consumer cannot rejoin group ${this.opts.config.groupId} (${(e as Error).message}); next try in ${this.waitMs} ms`, 'kafka:crash');
        this.scheduleRejoin();
      });
    }, this.waitMs);
    this.timer.unref?.();
  }
}
