import type { Admin, Batch, Consumer, ConsumerGroupJoinEvent, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Producer } from 'kafkajs';
import { createKafkaClient, producerDefaults, type KafkaConfig } from '../config/kafka.js';
import { OverloadedError } from '../errors.js';
import { log } from '../log.js';
import type { BatchOutcome, BatchSink, RawBatch, RawRecord } from '../pipeline/pipeline.js';
import { JsonDocumentFramer } from './json-document.js';
import { GroupMember, groupMovedOn, heartbeatWhile } from './kafka-member.js';
import { DocumentError } from './json-splitter.js';

/**
 * Kafka source: one member of a consumer group on the events topics. Each fetched batch of a partition becomes raw
 * batches for the pipeline; the partition's offset is committed only after the pipeline has committed those events to
 * the store (and poison messages are in the dead-letter topic), so a crash loses nothing and the redelivered tail is
 * recognised by its (cluster, auditID, stage) key. When the pipeline is overloaded the partition's fetch is paused and
 * resumed once it has room.
 *
 * Messages: value = one JSON document (an Event, an EventList or an array of events); header `kaudit-cluster` names
 * the cluster (else the configured default); key `cluster/user` (what KafkaEventsProducer writes) keeps every event of
 * one identity in one partition, so stateful rules see all of its events in one consumer.
 */

/** Header naming the cluster of the events in a message. */
export const HEADER_CLUSTER = 'kaudit-cluster';
/** Dead-letter headers: why, and where the message was. */
export const HEADER_REASON = 'kaudit-dead-letter-reason';
export const HEADER_ORIGIN = 'kaudit-origin';
export const HEADER_BAD_ITEMS = 'kaudit-bad-items';

export interface TopicPartition {
  topic: string;
  partition: number;
}

/**
 * Where a detector keeps each partition's detection state while partitions move between detectors (see
 * DetectionStateTopic). Partitions are named `topic/partition`, as RawBatch.partition.
 */
export interface PartitionStateStore {
  /**
   * Loads the partition's saved state into the detector, before the first batch of a partition this member was given;
   * returns the offset the state was saved at (the next offset it had not counted), or undefined when none was saved.
   */
  load(partition: string, heartbeat: () => Promise<void>): Promise<bigint | undefined>;
  /** Saves the partition's state as of `offset` (the next to read), when it changed; called before the offset commit. */
  save(partition: string, offset: bigint): Promise<void>;
  /** Forgets the partition's state: it moved to another member. */
  drop(partition: string): void;
}

export interface KafkaSourceOptions {
  config: KafkaConfig;
  /** The pipeline (or anything with its `submit`). */
  sink: BatchSink;
  /** Cluster for messages without a `kaudit-cluster` header. */
  cluster: string;
  /** A client to share; made from `config` when absent. */
  kafka?: Kafka;
  /**
   * Called after every rebalance with the partitions this member now owns. Detection state of keys in partitions it
   * lost is stale from then on (see README: rebalances and open windows).
   */
  onAssignment?: (assigned: TopicPartition[]) => void;
  /** Keeps each partition's detection state across moves: loaded before its first batch, saved before each commit. */
  partitionState?: PartitionStateStore;
}

export interface KafkaSourceStats {
  messages: number;
  stored: number;
  duplicates: number;
  deadLettered: number;
  pauses: number;
  rebalances: number;
  commits: number;
  batchErrors: number;
}

interface Chunk {
  cluster: string;
  /** Named by the messages' kaudit-cluster header: their envelopes cannot move events to another cluster. */
  fixed: boolean;
  records: RawRecord[];
  messages: KafkaMessage[];
  /** Each message's `where` (`topic/partition@offset`), as its records' `where` begins. */
  wheres: string[];
  lastOffset: string;
  /** Below the offset of the loaded detection state: already counted there, so stored without detection. */
  replayed: boolean;
}

/** How often the lag gauge is refreshed from the broker (ms). */
const LAG_REFRESH_MS = 10_000;

/** How long one batch waits for a full pipeline before it pauses its partition instead (ms). */
const OVERLOAD_WAIT_MS = 2000;

/** A consumer group member feeding the pipeline. `start()` joins; `stop()` finishes the batch in hand and leaves. */
export class KafkaSource {
  readonly stats: KafkaSourceStats = { messages: 0, stored: 0, duplicates: 0, deadLettered: 0, pauses: 0, rebalances: 0, commits: 0, batchErrors: 0 };
  private kafka: Kafka | undefined;
  private member: GroupMember | undefined;
  private producer: Producer | undefined;
  private admin: Admin | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private timers = new Set<NodeJS.Timeout>();
  /** Per `topic/partition`: high watermark seen and next offset committed, for the lag gauge. */
  private lag = new Map<string, { topic: string; partition: number; high: bigint; committed: bigint }>();
  private deadByReason = new Map<string, number>();
  private assigned: TopicPartition[] = [];
  /**
   * Per `topic/partition` this member holds detection state for: the offset the state has counted up to (the next one
   * to read). Absent: not loaded yet (or dropped when the partition moved away).
   */
  private stateAt = new Map<string, bigint>();
  private joinedOnce: Promise<void>;
  private onJoined!: () => void;

  constructor(private readonly opts: KafkaSourceOptions) {
    this.joinedOnce = new Promise((r) => (this.onJoined = r));
  }

  /** Set when the consumer crashed and is not rebuilt: this node no longer consumes. */
  get failed(): Error | undefined {
    return this.member?.failed;
  }

  /** Why this node is not consuming now (stopped for good, or rejoining its group), for /readyz. */
  get problem(): string | undefined {
    return this.member?.problem;
  }

  /** Partitions this member owns since the last rebalance. */
  get assignment(): readonly TopicPartition[] {
    return this.assigned;
  }

  /** Connects, subscribes and starts consuming; resolves once connected (`joined()` waits for the first assignment). */
  async start(): Promise<void> {
    const c = this.opts.config;
    this.kafka = this.opts.kafka ?? (await createKafkaClient(c));
    if (c.topics.deadLetter) {
      // Idempotent, as the other producers: a retried produce whose first answer was lost writes its dead letters once.
      this.producer = this.kafka.producer({ ...producerDefaults(), allowAutoTopicCreation: true, maxInFlightRequests: 1, idempotent: true });
      await this.producer.connect();
    }
    // The lag gauge from fetched batches alone would freeze while a partition is paused or slow: refresh it from the
    // broker's high watermarks and the group's committed offsets every `lagRefreshMs`.
    this.admin = this.kafka.admin();
    await this.admin.connect();
    this.lagTimer = setInterval(() => void this.refreshLag(), LAG_REFRESH_MS);
    this.lagTimer.unref();
    this.member = new GroupMember({
      kafka: this.kafka,
      config: c,
      eachBatch: (p, consumer) => this.handleBatch(p, consumer),
      onJoin: (e) => this.joinedGroup(e),
    });
    await this.member.start();
  }

  private joinedGroup(e: ConsumerGroupJoinEvent): void {
    const c = this.opts.config;
    this.stats.rebalances++;
    const a: TopicPartition[] = [];
    for (const [topic, parts] of Object.entries(e.payload.memberAssignment)) for (const p of parts) a.push({ topic, partition: p });
    this.assigned = a;
    const keep = new Set(a.map((tp) => `${tp.topic}/${tp.partition}`));
    for (const k of this.lag.keys()) if (!keep.has(k)) this.lag.delete(k);
    // Partitions that moved away: their state is the new owner's now (it loads what was saved at the last commit).
    for (const k of [...this.stateAt.keys()]) {
      if (keep.has(k)) continue;
      this.stateAt.delete(k);
      this.opts.partitionState?.drop(k);
    }
    log.info(`kafka: group ${c.groupId} joined, this member owns ${a.map((tp) => `${tp.topic}/${tp.partition}`).join(', ') || 'no partitions'}`);
    this.opts.onAssignment?.(a);
    this.onJoined();
  }

  /** Resolves after the first partition assignment (possibly empty when the group has more members than partitions). */
  joined(): Promise<void> {
    return this.joinedOnce;
  }

  /** Stops fetching, lets the batch in hand finish and commit, leaves the group. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    clearInterval(this.lagTimer);
    await this.member?.stop();
    await this.admin?.disconnect();
    await this.producer?.disconnect();
  }

  private async handleBatch({ batch, resolveOffset, heartbeat, pause, isRunning, isStale }: EachBatchPayload, consumer: Consumer): Promise<void> {
    const { topic, partition } = batch;
    const key = `${topic}/${partition}`;
    const high = BigInt(batch.highWatermark);
    const entry = this.lag.get(key) ?? { topic, partition, high, committed: BigInt(batch.firstOffset() ?? '0') };
    entry.high = high;
    this.lag.set(key, entry);

    // Detection state of a partition this member was just given (or that another member moved on meanwhile) is loaded
    // before its first batch; messages below the state's offset are already counted in it.
    let replayBelow: bigint | undefined;
    const ps = this.opts.partitionState;
    if (ps && batch.messages.length > 0) {
      const first = BigInt(batch.messages[0]!.offset);
      let at = this.stateAt.get(key);
      if (at === undefined || first > at) {
        if (at !== undefined) ps.drop(key);
        let saved: bigint | undefined;
        try {
          saved = await ps.load(key, heartbeat);
        } catch (e) {
          log.error(`kafka: cannot load the detection state of ${key}: ${(e as Error).message}; will retry`, 'kafka:state');
          this.stats.batchErrors++;
          this.backoff(pause, 'state unavailable', 1000);
          return;
        }
        // A state saved before `first` is that of `first`: saves are skipped while nothing changes the state.
        at = saved === undefined || saved < first ? first : saved;
        this.stateAt.set(key, at);
      }
      if (first < at) replayBelow = at;
    }

    const chunks = this.chunk(batch, replayBelow);
    const sink = this.opts.sink;
    type Result = { ok: BatchOutcome } | { err: unknown };
    const submitted: { chunk: Chunk; outcome: Promise<BatchOutcome>; result?: Result }[] = [];
    let settled = 0;
    const settleNext = async () => {
      const s = submitted[settled++]!;
      try {
        // Heartbeating while the store takes its time (retrying through an outage): a batch slower than the session
        // would otherwise find this member dropped from the group.
        s.result = { ok: await heartbeatWhile(s.outcome, beat, this.opts.config.heartbeatIntervalMs) };
      } catch (e) {
        s.result = { err: e };
      }
    };
    let waited = 0;
    let full = false;
    // Heartbeats while a batch takes long keep this member in the group. One that reports a rebalance stops further
    // submits: what is stored is still committed below (if the group still lets us), the rest goes to the new owner.
    let rebalancing = false;
    const beat = async () => {
      try {
        await heartbeat();
      } catch {
        rebalancing = true;
      }
    };
    for (const chunk of chunks) {
      if (!isRunning() || isStale() || this.stopped || rebalancing) break;
      // Backpressure, in order: while the sink is full, wait for this batch's own earlier chunks; when it is full of
      // other sources' work, wait a little (heartbeating); past that, pause this partition's fetch (below).
      while (sink.overloaded && !full) {
        if (settled < submitted.length) {
          await settleNext();
          await beat();
        } else if (waited >= OVERLOAD_WAIT_MS) full = true;
        else {
          await new Promise((r) => setTimeout(r, 20));
          waited += 20;
          await beat();
        }
      }
      if (full) break;
      const raw: RawBatch = {
        source: `kafka:${key}`,
        // A kaudit-cluster header (fixed), else the envelope's cluster (an AKS resourceId) or the configured one.
        cluster: chunk.cluster,
        clusterFixed: chunk.fixed,
        records: chunk.records,
        format: this.opts.config.format,
        checkpoint: { source: `kafka:${key}`, position: String(BigInt(chunk.lastOffset) + 1n) },
        ...(ps ? { partition: key } : {}),
        ...(chunk.replayed ? { replayed: true } : {}),
      };
      let outcome: Promise<BatchOutcome>;
      try {
        outcome = sink.submit(raw);
      } catch (e) {
        outcome = Promise.reject(e);
      }
      outcome.catch(() => {}); // settled below in order; this only keeps an early rejection from being "unhandled"
      submitted.push({ chunk, outcome });
    }
    while (settled < submitted.length) {
      await settleNext();
      await beat();
    }

    // Results in order: offsets advance only over a prefix of chunks that are stored.
    let done = 0;
    let lastOffset: string | undefined;
    const dead: { message: KafkaMessage; reasons: string[] }[] = [];
    let stop: unknown;
    for (const { chunk, result } of submitted) {
      if (!result || 'err' in result) {
        stop = stop ?? (result as { err: unknown } | undefined)?.err;
        continue; // later chunks may have been stored too; they are redelivered and recognised as duplicates
      }
      if (stop) continue;
      const o = result.ok;
      done++;
      lastOffset = chunk.lastOffset;
      this.stats.messages += chunk.messages.length;
      this.stats.stored += o.stored;
      this.stats.duplicates += o.duplicates;
      if (o.bad.length) dead.push(...this.deadOf(chunk, o.bad));
    }
    if (submitted.length < chunks.length && !stop && full) stop = new OverloadedError();

    try {
      if (dead.length) await this.deadLetter(topic, partition, dead);
    } catch (e) {
      // Without the dead letters safely written, do not move past them: fetch the batch again later.
      log.error(
        `kafka: cannot write ${dead.length} dead letters from ${key} to ${this.opts.config.topics.deadLetter}: ${(e as Error).message}; will retry`,
        'kafka:dead-letter',
      );
      this.stats.batchErrors++;
      this.backoff(pause, 'dead-letter topic unavailable', 1000);
      return;
    }

    if (lastOffset !== undefined && ps) {
      const at = this.stateAt.get(key);
      // Taken away during the batch: the new owner may have loaded the state already; leave it and the offset to it.
      if (at === undefined) return;
      const next = BigInt(lastOffset) + 1n;
      try {
        // Before the commit, so that the state saved matches the committed offset; without it, no commit.
        await ps.save(key, next > at ? next : at);
      } catch (e) {
        log.error(`kafka: cannot save the detection state of ${key}: ${(e as Error).message}; the batch will be fetched again`, 'kafka:state');
        this.stats.batchErrors++;
        this.backoff(pause, 'state unavailable', 1000);
        return;
      }
      if (next > at) this.stateAt.set(key, next);
    }

    if (lastOffset !== undefined) {
      resolveOffset(lastOffset);
      const next = BigInt(lastOffset) + 1n;
      try {
        await consumer.commitOffsets([{ topic, partition, offset: String(next) }]);
      } catch (e) {
        // A batch slower than the session finds the group moved on: the commit is refused (wrapped by kafkajs' retrier,
        // the refusal is the error's cause). Thrown out of here, kafkajs would stop this consumer for good; the stored
        // batch is redelivered to whoever owns the partition after the rejoin, and its events are recognised by their key.
        if (!groupMovedOn(e)) throw e;
        log.warn(
          `kafka: the commit of ${key} at ${next} was refused (${(e as Error).message}); the group rejoins and the batch is fetched again`,
          'kafka:commit',
        );
        this.stats.batchErrors++;
        return;
      }
      this.stats.commits++;
      entry.committed = next;
    }

    if (stop) {
      const overloaded = stop instanceof OverloadedError;
      if (!overloaded) {
        this.stats.batchErrors++;
        log.error(`kafka: ingest of ${key} from offset ${chunks[done]?.messages[0]?.offset} failed: ${(stop as Error).message}; will retry`, 'kafka:batch');
      }
      // Unresolved messages are fetched again after the resume.
      this.backoff(pause, overloaded ? 'overloaded' : 'error', overloaded ? 50 : 1000);
      return;
    }
    await heartbeat();
  }

  /** Lag of every owned partition from the broker: high watermark minus the group's committed offset. */
  async refreshLag(): Promise<void> {
    if (!this.admin || this.stopped || this.assigned.length === 0) return;
    const c = this.opts.config;
    try {
      const topics = [...new Set(this.assigned.map((tp) => tp.topic))];
      const committed = await this.admin.fetchOffsets({ groupId: c.groupId, topics });
      for (const topic of topics) {
        const highs = await this.admin.fetchTopicOffsets(topic);
        const done = committed.find((t) => t.topic === topic)?.partitions ?? [];
        for (const tp of this.assigned) {
          if (tp.topic !== topic) continue;
          const h = highs.find((x) => x.partition === tp.partition);
          if (!h) continue;
          const d = done.find((x) => x.partition === tp.partition);
          // No committed offset yet: the group starts at the low watermark (fromBeginning) or at the end.
          const start = d && Number(d.offset) >= 0 ? BigInt(d.offset) : c.fromBeginning ? BigInt(h.low) : BigInt(h.high);
          const key = `${topic}/${tp.partition}`;
          const e = this.lag.get(key) ?? { topic, partition: tp.partition, high: 0n, committed: 0n };
          e.high = BigInt(h.high);
          if (start > e.committed || !this.lag.has(key)) e.committed = start;
          this.lag.set(key, e);
        }
      }
    } catch (e) {
      log.debug(`kafka: lag refresh failed: ${(e as Error).message}`);
    }
  }

  /** Pauses this partition's fetch and resumes it when the sink has room again (or after a delay, for errors). */
  private backoff(pause: () => () => void, why: string, delayMs: number): void {
    this.stats.pauses++;
    const resume = pause();
    const sink = this.opts.sink;
    let wait = delayMs;
    const tick = () => {
      this.timers.delete(t);
      if (this.stopped) return;
      if (why === 'overloaded' && sink.overloaded) {
        wait = Math.min(wait * 2, 1000);
        t = setTimeout(tick, wait);
        this.timers.add(t);
        return;
      }
      resume();
    };
    let t = setTimeout(tick, wait);
    this.timers.add(t);
  }

  /**
   * Splits a fetched batch into pipeline batches: runs of one cluster, of about `batchRecords` records each, split where
   * the messages the detection state has already counted (below `replayBelow`) end.
   */
  private chunk(batch: Batch, replayBelow?: bigint): Chunk[] {
    const c = this.opts.config;
    const frame = c.format === 'auto' || c.format === 'native';
    const out: Chunk[] = [];
    let cur: Chunk | undefined;
    for (const m of batch.messages) {
      const named = headerString(m.headers, HEADER_CLUSTER);
      const cluster = named || this.opts.cluster;
      const fixed = !!named;
      const replayed = replayBelow !== undefined && BigInt(m.offset) < replayBelow;
      if (!cur || cur.cluster !== cluster || cur.fixed !== fixed || cur.replayed !== replayed || cur.records.length >= c.batchRecords) {
        cur = { cluster, fixed, records: [], messages: [], wheres: [], lastOffset: m.offset, replayed };
        out.push(cur);
      }
      const where = `${batch.topic}/${batch.partition}@${m.offset}`;
      const size = m.value?.length ?? 0;
      if (m.value === null || size === 0) cur.records.push({ where, error: 'empty message (no value)' });
      else if (size > c.maxMessageBytes) cur.records.push({ where, error: `message of ${size} bytes is over kafka.maxMessageBytes (${c.maxMessageBytes})` });
      else if (frame) messageRecords(m.value, where, cur.records);
      else cur.records.push({ where, text: m.value });
      cur.messages.push(m);
      cur.wheres.push(where);
      cur.lastOffset = m.offset;
    }
    return out;
  }

  private deadOf(chunk: Chunk, bad: BatchOutcome['bad']): { message: KafkaMessage; reasons: string[] }[] {
    const byWhere = new Map<string, string[]>();
    for (const b of bad) {
      // An item is located inside its message ("topic/0@12 item 3", "topic/0@12 records[3] properties.log"): the
      // message is the part before the first space (topics have no spaces).
      const sp = b.where.indexOf(' ');
      const where = sp < 0 ? b.where : b.where.slice(0, sp);
      let l = byWhere.get(where);
      if (!l) byWhere.set(where, (l = []));
      l.push(b.reason);
    }
    const out: { message: KafkaMessage; reasons: string[] }[] = [];
    for (let i = 0; i < chunk.messages.length; i++) {
      const reasons = byWhere.get(chunk.wheres[i]!);
      if (reasons) out.push({ message: chunk.messages[i]!, reasons });
    }
    return out;
  }

  private async deadLetter(topic: string, partition: number, dead: { message: KafkaMessage; reasons: string[] }[]): Promise<void> {
    for (const d of dead) {
      const kind = reasonKind(d.reasons[0]!);
      this.deadByReason.set(kind, (this.deadByReason.get(kind) ?? 0) + 1);
    }
    this.stats.deadLettered += dead.length;
    const dlq = this.opts.config.topics.deadLetter;
    if (!dlq || !this.producer) return;
    await this.producer.send({
      topic: dlq,
      acks: -1,
      messages: dead.map(({ message, reasons }) => {
        const tooBig = reasonKind(reasons[0]!) === 'too_large';
        return {
          key: message.key,
          // A message over the limit is not copied: the dead-letter topic would refuse it too. Its origin says where it is.
          value: tooBig ? null : message.value,
          headers: {
            ...copyHeaders(message.headers),
            [HEADER_REASON]: reasons.length > 1 ? `${reasons[0]} (and ${reasons.length - 1} more bad items)` : reasons[0]!,
            [HEADER_ORIGIN]: `${topic}/${partition}@${message.offset}`,
            [HEADER_BAD_ITEMS]: String(reasons.length),
          },
        };
      }),
    });
  }

  /** Prometheus text lines: consumer lag per partition, dead letters by reason, and the source's counters. */
  metricsText(): string {
    const g = this.opts.config.groupId;
    let out =
      '# HELP kaudit_kafka_consumer_lag Messages in the partition not yet committed by this member (high watermark - committed offset)\n# TYPE kaudit_kafka_consumer_lag gauge\n';
    for (const l of this.lag.values()) {
      const lag = l.high > l.committed ? l.high - l.committed : 0n;
      out += `kaudit_kafka_consumer_lag{group="${esc(g)}",topic="${esc(l.topic)}",partition="${l.partition}"} ${lag}\n`;
    }
    out += '# HELP kaudit_kafka_dead_letters_total Poison messages moved to the dead-letter topic, by reason\n# TYPE kaudit_kafka_dead_letters_total counter\n';
    for (const [reason, n] of this.deadByReason) out += `kaudit_kafka_dead_letters_total{group="${esc(g)}",reason="${reason}"} ${n}\n`;
    const counters: [string, string, number][] = [
      ['kaudit_kafka_messages_consumed_total', 'Messages consumed and committed', this.stats.messages],
      ['kaudit_kafka_consumer_pauses_total', 'Times a partition fetch was paused (pipeline full or an error)', this.stats.pauses],
      ['kaudit_kafka_consumer_rebalances_total', 'Group joins (each rebalance) of this member', this.stats.rebalances],
      ['kaudit_kafka_consumer_commits_total', 'Offset commits', this.stats.commits],
      ['kaudit_kafka_consumer_batch_errors_total', 'Batches that failed and will be fetched again', this.stats.batchErrors],
      [
        'kaudit_kafka_consumer_restarts_total',
        'Consumers built anew after the group dropped this member (a batch outlasted the session)',
        this.member?.restarts ?? 0,
      ],
    ];
    for (const [name, help, v] of counters) out += `# HELP ${name} ${help}\n# TYPE ${name} counter\n${name}{group="${esc(g)}"} ${v}\n`;
    out += `# HELP kaudit_kafka_assigned_partitions Partitions this member owns\n# TYPE kaudit_kafka_assigned_partitions gauge\nkaudit_kafka_assigned_partitions{group="${esc(g)}"} ${this.assigned.length}\n`;
    return out;
  }
}

function esc(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Low-cardinality label for a dead letter's reason. */
export function reasonKind(reason: string): string {
  if (reason.startsWith('empty message')) return 'empty';
  if (reason.includes('maxMessageBytes')) return 'too_large';
  if (reason.startsWith('not JSON')) return 'not_json';
  return 'not_an_event';
}

/**
 * A message's records. An EventList (what KafkaEventsProducer writes: one per identity per webhook batch) is split into
 * its items, each keeping its own bytes as the stored raw form; decoded whole, every event of it was serialised again
 * for the store, which was the largest cost of a detector after the parse (see benchmarks/NOTES.md, Kafka). Anything
 * else (one Event, an array, an envelope's document, or a message that does not frame) stays one record, for the
 * decoder to read or refuse with its own reason, as before.
 */
export function messageRecords(value: Buffer, where: string, out: RawRecord[]): void {
  const items: RawRecord[] = [];
  const framer = new JsonDocumentFramer(where, (r) => items.push(r));
  try {
    framer.push(value);
    const end = framer.end();
    if (end.mode === 'list' && end.header.error === undefined) {
      // The whole message is in hand: every item takes the list's fields as they are at its end.
      for (const r of items) {
        r.list = end.header;
        out.push(r);
      }
      return;
    }
  } catch (e) {
    if (!(e instanceof DocumentError)) throw e;
  }
  out.push({ where, text: value });
}

export function headerString(h: IHeaders | undefined, name: string): string | undefined {
  const v = h?.[name];
  if (v === undefined) return undefined;
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : one.toString();
}

function copyHeaders(h: IHeaders | undefined): IHeaders {
  const out: IHeaders = {};
  if (h) for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = v;
  return out;
}
