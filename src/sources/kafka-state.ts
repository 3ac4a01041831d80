import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import type { Admin, Consumer, Kafka, Producer } from 'kafkajs';
import { producerDefaults, type KafkaConfig } from '../config/kafka.js';
import type { Detector } from '../detect/alert.js';
import { stateEntries, trimState, type DetectionState } from '../detect/saved-state.js';
import { log } from '../log.js';
import type { PartitionStateStore } from './kafka.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * Detection state that moves with its partition. Events are keyed cluster/user, so an identity's windows (bursts,
 * thresholds, sequences) are fed by one partition; the engine tags each state entry with the partition whose event
 * touched it last. Before a partition's offset commit, this writes that partition's share of the state (gzip'd JSON,
 * with the offset it has counted up to) to a compacted topic, keyed group/topic/partition; the member given the
 * partition next loads it before its first batch, and the member that lost it drops its share. So a burst that
 * straddles a rebalance is counted once, across both detectors.
 *
 * The topic is read by a consumer of its own (its own group, one per process, no commits) that keeps the latest
 * snapshot of each partition of this detector group's events topics in memory, and nothing else: other groups'
 * snapshots (one state topic may serve several groups), keys of other topics, deleted keys (tombstones) and snapshots
 * over kafka.stateMaxBytes (which no member of the group writes) are not held, so memory is bounded by the group's
 * partitions times the cap. A load first waits until that reader has reached the topic's end, so it sees the snapshot
 * the previous owner wrote before its last commit.
 */

/** Bytes a snapshot may take once unzipped, when loading (it is untrusted data). */
const MAX_UNZIPPED = 256 * 1024 * 1024;
/** How long a load waits for the reader to reach the end of the state topic. */
const LOAD_TIMEOUT_MS = 60_000;
const SNAPSHOT_FORMAT = 'kaudit-partition-state';

type StatefulDetector = Required<Pick<Detector, 'saveState' | 'loadState' | 'dropState' | 'stateChanged'>>;

export function hasPartitionState(d: Detector | undefined): d is Detector & StatefulDetector {
  return !!d && !!d.saveState && !!d.loadState && !!d.dropState && !!d.stateChanged;
}

export interface DetectionStateTopicStats {
  saved: number;
  savedBytes: number;
  truncated: number;
  entriesTruncated: number;
  loaded: number;
  /** Loads that found no snapshot (a partition never saved, or a first start). */
  empty: number;
  /** Snapshots found damaged or of another format: the partition starts empty. */
  unreadable: number;
  dropped: number;
}

export class DetectionStateTopic implements PartitionStateStore {
  readonly stats: DetectionStateTopicStats = { saved: 0, savedBytes: 0, truncated: 0, entriesTruncated: 0, loaded: 0, empty: 0, unreadable: 0, dropped: 0 };
  private producer: Producer | undefined;
  private reader: Consumer | undefined;
  private admin: Admin | undefined;
  /** Latest snapshot per partition of this group's events topics, as read from the topic ('oversize': over the cap). */
  private latest = new Map<string, Buffer | 'oversize'>();
  private latestBytes = 0;
  /** Per partition of the state topic: the next offset the reader will read. */
  private readTo = new Map<number, bigint>();
  private readonly topic: string;

  constructor(
    private readonly opts: {
      config: KafkaConfig;
      kafka: Kafka;
      detector: StatefulDetector;
    },
  ) {
    this.topic = opts.config.topics.state;
  }

  private keyOf(partition: string): string {
    return `${this.opts.config.groupId}/${partition}`;
  }

  /** Makes the topic (compacted) when it is missing, and starts the producer and the reader. */
  async start(): Promise<void> {
    const { kafka, config } = this.opts;
    this.admin = kafka.admin();
    await this.admin.connect();
    const topics = await this.admin.listTopics();
    if (!topics.includes(this.topic)) {
      try {
        await this.admin.createTopics({
          topics: [{ topic: this.topic, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }],
          waitForLeaders: true,
        });
        log.info(`kafka: created the compacted detection-state topic ${this.topic}`);
      } catch (e) {
        if (!/already exists/i.test((e as Error).message)) {
          throw new Error(
            `the detection-state topic ${this.topic} does not exist and cannot be created (${(e as Error).message}): create it with cleanup.policy=compact, or set kafka.topics.state to '' (moved partitions then start their windows empty)`,
          );
        }
      }
    }
    this.producer = kafka.producer({ ...producerDefaults(), allowAutoTopicCreation: false, maxInFlightRequests: 1, idempotent: true });
    await this.producer.connect();
    // A group of its own per process: every process reads the whole topic, and commits nothing (it starts at the
    // beginning each time). The broker forgets an empty group without offsets.
    const reader = kafka.consumer({
      groupId: `${config.groupId}.state.${randomUUID()}`,
      sessionTimeout: config.sessionTimeoutMs,
      heartbeatInterval: config.heartbeatIntervalMs,
    });
    this.reader = reader;
    await reader.connect();
    await reader.subscribe({ topic: this.topic, fromBeginning: true });
    await reader.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const key = m.key?.toString();
          if (key !== undefined && this.ours(key)) this.hold(key, m.value);
        }
        const last = batch.lastOffset();
        if (batch.messages.length > 0) this.readTo.set(batch.partition, BigInt(last) + 1n);
      },
    });
  }

  /** Whether a key of the state topic is a partition of this group's events topics: `group/topic/partition`. */
  private ours(key: string): boolean {
    const prefix = `${this.opts.config.groupId}/`;
    if (!key.startsWith(prefix)) return false;
    const rest = key.slice(prefix.length);
    const slash = rest.lastIndexOf('/');
    return slash > 0 && /^\d{1,6}$/.test(rest.slice(slash + 1)) && this.opts.config.topics.events.includes(rest.slice(0, slash));
  }

  /** Keeps a key's latest snapshot: a tombstone forgets it, one over the cap is remembered only as too large. */
  private hold(key: string, value: Buffer | null): void {
    const before = this.latest.get(key);
    if (before instanceof Buffer) this.latestBytes -= before.length;
    if (value === null) this.latest.delete(key);
    else if (value.length > this.opts.config.stateMaxBytes) this.latest.set(key, 'oversize');
    else {
      this.latest.set(key, value);
      this.latestBytes += value.length;
    }
  }

  /** The snapshots held in memory: how many, and their bytes. */
  get held(): { snapshots: number; bytes: number } {
    return { snapshots: this.latest.size, bytes: this.latestBytes };
  }

  /** Waits until the reader has read every snapshot written so far (the topic's end as of now). */
  private async caughtUp(heartbeat: () => Promise<void>): Promise<void> {
    const ends = await this.admin!.fetchTopicOffsets(this.topic);
    const deadline = Date.now() + LOAD_TIMEOUT_MS;
    for (;;) {
      // The last record of a partition is never compacted away, so the reader reaches the end offset itself.
      const behind = ends.filter((e) => BigInt(e.high) > BigInt(e.low) && (this.readTo.get(e.partition) ?? -1n) < BigInt(e.high));
      if (behind.length === 0) return;
      if (Date.now() > deadline) throw new Error(`the reader of ${this.topic} did not reach its end within ${LOAD_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 50));
      await heartbeat();
    }
  }

  async load(partition: string, heartbeat: () => Promise<void>): Promise<bigint | undefined> {
    await this.caughtUp(heartbeat);
    const value = this.latest.get(this.keyOf(partition));
    if (!value) {
      this.stats.empty++;
      return undefined;
    }
    if (value === 'oversize') {
      this.stats.unreadable++;
      log.warn(
        `kafka: the detection state of ${partition} in ${this.topic} is over kafka.stateMaxBytes (${this.opts.config.stateMaxBytes}): not loaded, its windows start empty`,
        'kafka:state',
      );
      return undefined;
    }
    let snap: { format?: unknown; offset?: unknown; state?: unknown };
    try {
      snap = JSON.parse((await gunzipAsync(value, { maxOutputLength: MAX_UNZIPPED })).toString('utf8')) as typeof snap;
    } catch (e) {
      this.stats.unreadable++;
      log.warn(`kafka: the detection state of ${partition} in ${this.topic} is unreadable (${(e as Error).message}); its windows start empty`, 'kafka:state');
      return undefined;
    }
    if (snap?.format !== SNAPSHOT_FORMAT || typeof snap.offset !== 'string' || !/^\d+$/.test(snap.offset)) {
      this.stats.unreadable++;
      log.warn(`kafka: the detection state of ${partition} in ${this.topic} is not a kaudit snapshot; its windows start empty`, 'kafka:state');
      return undefined;
    }
    const r = this.opts.detector.loadState(snap.state, partition);
    this.stats.loaded++;
    log.info(`kafka: detection state of ${partition} loaded (${r.keys} keys, counted up to offset ${snap.offset})`);
    return BigInt(snap.offset);
  }

  async save(partition: string, offset: bigint): Promise<void> {
    const d = this.opts.detector;
    if (!d.stateChanged(partition)) return;
    const state = d.saveState(partition) as DetectionState;
    let value = await this.encode(state, offset);
    const cap = this.opts.config.stateMaxBytes;
    if (value.length > cap) {
      // Over the cap: keep the newest entries of every part (each part is saved oldest first), shrinking until it fits,
      // and at worst none.
      let kept = state;
      let fraction = (cap / value.length) * 0.9;
      for (let i = 0; value.length > cap; i++, fraction *= 0.7) {
        kept = trimState(state, i < 8 ? fraction : 0);
        value = await this.encode(kept, offset);
        if (i >= 8) break;
      }
      this.stats.truncated++;
      this.stats.entriesTruncated += stateEntries(state) - stateEntries(kept);
      log.warn(
        `kafka: the detection state of ${partition} is over kafka.stateMaxBytes (${cap} bytes gzip'd): its oldest entries were left out of the snapshot`,
        'kafka:state',
      );
    }
    await this.producer!.send({ topic: this.topic, acks: -1, messages: [{ key: this.keyOf(partition), value }] });
    this.stats.saved++;
    this.stats.savedBytes += value.length;
  }

  private async encode(state: DetectionState, offset: bigint): Promise<Buffer> {
    // Level 1: half the CPU of the default level for a few percent more bytes (benchmarks/kafka-state.mjs); a snapshot
    // is taken before every commit of a partition whose state changed.
    return gzipAsync(JSON.stringify({ format: SNAPSHOT_FORMAT, offset: String(offset), state }), { level: 1 });
  }

  drop(partition: string): void {
    const n = this.opts.detector.dropState(partition);
    this.stats.dropped++;
    log.info(`kafka: ${partition} moved to another detector: ${n} detection state entries of it dropped here`);
  }

  async stop(): Promise<void> {
    await this.reader?.disconnect();
    await this.producer?.disconnect();
    await this.admin?.disconnect();
  }

  metricsText(): string {
    const g = this.opts.config.groupId.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    const rows: [string, string, number][] = [
      ['kaudit_kafka_state_snapshots_total', 'Partition detection-state snapshots written to the state topic', this.stats.saved],
      ['kaudit_kafka_state_snapshot_bytes_total', 'Bytes of the snapshots written (gzip)', this.stats.savedBytes],
      ['kaudit_kafka_state_truncated_total', 'Snapshots over kafka.stateMaxBytes that left out their oldest entries', this.stats.truncated],
      ['kaudit_kafka_state_entries_truncated_total', 'State entries left out of snapshots to fit kafka.stateMaxBytes', this.stats.entriesTruncated],
      ['kaudit_kafka_state_loads_total', 'Snapshots of partitions given to this member, loaded', this.stats.loaded],
      ['kaudit_kafka_state_loads_empty_total', 'Partitions given to this member with no snapshot (their windows start empty)', this.stats.empty],
      ['kaudit_kafka_state_unreadable_total', 'Snapshots found damaged or of another format (the partition starts empty)', this.stats.unreadable],
      ['kaudit_kafka_state_drops_total', 'Partitions taken from this member whose state it dropped', this.stats.dropped],
    ];
    let out = '';
    for (const [name, help, v] of rows) out += `# HELP ${name} ${help}\n# TYPE ${name} counter\n${name}{group="${g}"} ${v}\n`;
    return out;
  }
}
