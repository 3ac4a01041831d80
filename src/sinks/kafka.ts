import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Kafka, Message, Producer } from 'kafkajs';
import type { Alert } from '../detect/alert.js';
import { createKafkaClient, describeKafkaConfig, producerDefaults, type KafkaConfig } from '../config/kafka.js';
import { OverloadedError } from '../errors.js';
import { log } from '../log.js';
import type { BatchOutcome, BatchSink, RawBatch, RawRecord } from '../pipeline/pipeline.js';
import { retry, retryDelayMs } from '../retry.js';
import type { AlertBus } from '../pipeline/alert-bus.js';
import { decoderFor } from '../events/decode.js';
import type { StoreReader } from '../store/store.js';
import { HEADER_BAD_ITEMS, HEADER_CLUSTER, HEADER_ORIGIN, HEADER_REASON, KafkaSource, type KafkaSourceOptions } from '../sources/kafka.js';
import { DetectionStateTopic, hasPartitionState } from '../sources/kafka-state.js';
import { HEADER_ALERT_SEQ, publishedAtEnd } from './kafka-published.js';
import type { Detector } from '../detect/alert.js';

/** Header carrying an alert's stable identity (rule/cluster/auditID): consumers of the alerts topic dedupe on it. */
export const HEADER_ALERT_ID = 'kaudit-alert-id';

/** An EventList message is split past this many bytes: brokers refuse messages over 1 MB by default. */
const MAX_MESSAGE_BYTES = 512 * 1024;

/** The partition key of an event: every event of one identity lands in one partition, hence one detector. */
export function eventKey(cluster: string, user: string): string {
  return `${cluster}/${user}`;
}

/**
 * Ingest-only mode: `kaudit serve`'s webhook hands its batches here instead of to the pipeline. A batch's events are
 * grouped by identity into EventList messages on the events topic, keyed by cluster and user, and `submit` resolves
 * only once Kafka has acknowledged every message with acks=all, so the apiserver gets its 200 only for events that
 * are durable in Kafka. Records that are not audit events, or events over kafka.maxMessageBytes, are reported as bad
 * (the webhook answers for them) and written to the dead-letter topic with the reason, in the same acknowledged send.
 */
export class KafkaEventsProducer implements BatchSink {
  private kafka: Kafka | undefined;
  private producer: Producer | undefined;
  private inFlight = 0;
  readonly stats = { produced: 0, messages: 0, bad: 0, deadLettered: 0, overloaded: 0, failures: 0 };
  private readonly topic: string;

  constructor(private readonly opts: { config: KafkaConfig; kafka?: Kafka }) {
    const t = opts.config.topics.events[0];
    if (!t) throw new Error('kafka.topics.events is empty: ingest-only mode needs a topic to produce to');
    this.topic = t;
  }

  async start(): Promise<void> {
    this.kafka = this.opts.kafka ?? (await createKafkaClient(this.opts.config));
    // One request in flight per broker: kafkajs's retries then cannot reorder one identity's events.
    // A misnamed topic is a configuration error: say so at start, not as a failed webhook batch later.
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const existing = new Set(await admin.listTopics());
      const missing = [this.topic, this.opts.config.topics.deadLetter].filter((t) => t && !existing.has(t));
      if (missing.length) throw new Error(`topic ${missing.join(' and ')} does not exist: create it, or fix kafka.topics.events / kafka.topics.deadLetter`);
    } finally {
      await admin.disconnect();
    }
    // Idempotent: a produce the broker wrote but could not answer is retried by kafkajs, and without producer ids and
    // sequence numbers the retry wrote the batch's events a second time (consumers skip them as duplicates, but the
    // topic carried them twice).
    this.producer = this.kafka.producer({
      ...producerDefaults(),
      allowAutoTopicCreation: false,
      maxInFlightRequests: 1,
      idempotent: true,
      retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 5000 },
    });
    await this.producer.connect();
  }

  /** True when a new batch would be refused (too many events awaiting Kafka's acknowledgement). */
  get overloaded(): boolean {
    return this.inFlight >= this.opts.config.maxInFlightEvents;
  }

  async submit(batch: RawBatch): Promise<BatchOutcome> {
    if (!this.producer) throw new Error('KafkaEventsProducer.submit before start()');
    if (this.overloaded) {
      this.stats.overloaded++;
      throw new OverloadedError('Kafka has not yet acknowledged enough earlier events; retry later');
    }
    // One message per identity per batch: an EventList of that cluster/user's events, in order. Fewer, larger messages
    // cost Kafka and kafkajs far less than one per event, and a batch's events of one identity stay together.
    // Per key (cluster and identity): the cluster (an envelope's, unless the batch's is fixed) and the event texts.
    const byKey = new Map<string, { cluster: string; texts: string[] }>();
    const bad: BatchOutcome['bad'] = [];
    // Bad records go to the dead-letter topic: on an ingest-only node there is no store to keep them in.
    const dead = new Map<RawRecord, string[]>();
    const limit = this.opts.config.maxMessageBytes;
    let events = 0;
    const reject = (r: RawRecord, reason: string) => {
      bad.push({ where: r.where, reason });
      const l = dead.get(r);
      if (l) l.push(reason);
      else dead.set(r, [reason]);
    };
    const decoder = decoderFor(batch.format);
    for (const r of batch.records) {
      for (const d of decoder.decode(r)) {
        if ('error' in d) {
          reject(r, d.error);
          continue;
        }
        let text: string;
        try {
          text = d.text ?? JSON.stringify(d.event);
        } catch {
          // Nested deeper than the stack allows to serialise again (an item of a pretty-printed body has no text).
          reject(r, 'JSON nested too deeply to forward');
          continue;
        }
        const size = Buffer.byteLength(text);
        if (size > limit) {
          reject(r, `event of ${size} bytes is over kafka.maxMessageBytes (${limit})`);
          continue;
        }
        // An envelope naming the event's cluster overrides the batch's (the consumer reads it from the header).
        const cluster = batch.clusterFixed ? batch.cluster : (d.cluster ?? batch.cluster);
        const key = eventKey(cluster, d.event.user.username ?? '');
        let l = byKey.get(key);
        if (!l) byKey.set(key, (l = { cluster, texts: [] }));
        l.texts.push(text);
        events++;
      }
    }
    const messages: Message[] = [];
    const batchHeaders = { [HEADER_CLUSTER]: batch.cluster };
    // Split below the limit (and at 512 KiB, for the brokers' 1 MB default), counting bytes, not characters.
    const maxPart = Math.min(MAX_MESSAGE_BYTES, limit - 100);
    for (const [key, { cluster, texts }] of byKey) {
      const headers = cluster === batch.cluster ? batchHeaders : { [HEADER_CLUSTER]: cluster };
      let part: string[] = [];
      let size = 0;
      const flush = () => {
        messages.push({ key, value: `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[${part.join(',')}]}`, headers });
        part = [];
        size = 0;
      };
      for (const t of texts) {
        const n = Buffer.byteLength(t) + 1;
        if (part.length > 0 && size + n > maxPart) flush();
        part.push(t);
        size += n;
      }
      flush();
    }
    const dlq = this.opts.config.topics.deadLetter;
    const deadMessages: Message[] = [];
    if (dlq) {
      for (const [r, reasons] of dead) {
        let raw: string | Buffer | null = null;
        try {
          raw = r.text ?? (r.value !== undefined ? JSON.stringify(r.value) : null);
        } catch {
          // Too deep to serialise again: the dead letter goes with its reason and no value.
        }
        const rawBytes = raw === null ? 0 : Buffer.byteLength(raw);
        deadMessages.push({
          key: batch.cluster,
          value: raw !== null && rawBytes <= limit ? raw : null,
          headers: {
            ...batchHeaders,
            [HEADER_REASON]: reasons.length > 1 ? `${reasons[0]} (and ${reasons.length - 1} more bad items)` : reasons[0]!,
            [HEADER_ORIGIN]: `${batch.source} ${r.where}`,
            [HEADER_BAD_ITEMS]: String(reasons.length),
          },
        });
      }
    }
    this.stats.bad += bad.length;
    if (messages.length > 0 || deadMessages.length > 0) {
      this.inFlight += events;
      try {
        const compression = this.opts.config.compression === 'gzip' ? 1 : 0;
        const topicMessages = [];
        if (messages.length) topicMessages.push({ topic: this.topic, messages });
        if (deadMessages.length) topicMessages.push({ topic: dlq, messages: deadMessages });
        await this.producer.sendBatch({ acks: -1, compression, topicMessages });
      } catch (e) {
        this.stats.failures++;
        throw new Error(`Kafka did not acknowledge ${events} events for ${this.topic}: ${(e as Error).message}`);
      } finally {
        this.inFlight -= events;
      }
      this.stats.produced += events;
      this.stats.messages += messages.length;
      this.stats.deadLettered += deadMessages.length;
    }
    return { stored: events, duplicates: 0, bad, alerts: [] };
  }

  async stop(): Promise<void> {
    await this.producer?.disconnect();
  }

  metricsText(): string {
    return (
      counter('kaudit_kafka_events_produced_total', 'Audit events produced to the events topic and acknowledged (acks=all)', this.stats.produced) +
      counter('kaudit_kafka_events_produce_failures_total', 'Webhook batches Kafka did not acknowledge', this.stats.failures) +
      counter(
        'kaudit_kafka_events_dead_lettered_total',
        'Webhook records that are not audit events (or too large), written to the dead-letter topic',
        this.stats.deadLettered,
      ) +
      counter('kaudit_kafka_events_overloaded_total', 'Webhook batches refused while too many events awaited acknowledgement', this.stats.overloaded) +
      `# HELP kaudit_kafka_events_in_flight Events sent and not yet acknowledged\n# TYPE kaudit_kafka_events_in_flight gauge\nkaudit_kafka_events_in_flight ${this.inFlight}\n`
    );
  }
}

/** The Kafka message for an alert: JSON, keyed by cluster so one cluster's alerts stay in order. */
export function alertMessage(a: Alert): Message {
  return {
    key: a.cluster,
    value: JSON.stringify(a),
    headers: { [HEADER_ALERT_ID]: alertId(a), [HEADER_CLUSTER]: a.cluster },
  };
}

/** Stable identity of an alert: the store keeps at most one alert per rule and event (its alerts_once index). */
export function alertId(a: Pick<Alert, 'rule' | 'cluster' | 'auditID'>): string {
  return `${a.rule}/${a.cluster}/${a.auditID}`;
}

export interface KafkaAlertOutboxOptions {
  config: KafkaConfig;
  /** A (read-only) connection to the store the alerts are committed in. */
  store: StoreReader;
  /** Where the outbox's position is committed: the pipeline (an empty batch with a checkpoint). */
  sink: BatchSink;
  /** Wakes the outbox as soon as alerts are committed; without it, it polls every `pollMs`. */
  bus?: AlertBus;
  kafka?: Kafka;
  pollMs?: number;
  /** Alerts per produce request (default 500). */
  batch?: number;
  /** On first start (no position stored), publish the alerts already in the store too (default false: only new ones). */
  fromStart?: boolean;
  /** How long the fleet's outbox role lasts unless renewed (a shared store; default 15 s). */
  roleTtlMs?: number;
}

/** How long the outbox role of a shared store lasts unless its holder renews it (ms). */
const ROLE_TTL_MS = 15_000;

/**
 * Alerts to the alerts topic, from the store rather than from memory: a transactional outbox. The alerts table is read
 * in id (= commit) order from the outbox's position, produced with acks=all, and only then is the position advanced
 * (committed through the pipeline into the same store). A crash anywhere loses no alert: at worst the alerts after the
 * last stored position are produced again, with the same `kaudit-alert-id` header for consumers to drop.
 *
 * One outbox publishes a store's alerts. A store that several processes share (the fleet store: every detector and
 * query node may run an outbox) elects it: the outbox role (store.holdRole) is held by one process at a time and
 * renewed while it runs; the others wait, and take it over, from the position its holder saved, when it stops or its
 * role expires (a holder SIGKILLed: after roleTtlMs).
 */
export class KafkaAlertOutbox {
  private kafka: Kafka | undefined;
  private producer: Producer | undefined;
  private position = 0;
  private running = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  readonly stats = { published: 0, failures: 0 };
  readonly source: string;
  /** This process's name as a holder of the fleet's outbox role. */
  private readonly holder = `${hostname()}:${process.pid}:${randomUUID()}`;
  /** When this outbox last took or renewed the role (0: it does not hold it). */
  private heldAt = 0;
  /** The end of the topic must be read before the next produce (see publishedAtEnd); then, the ids found there. */
  private recheck = true;
  private atEnd = new Set<number>();

  constructor(private readonly opts: KafkaAlertOutboxOptions) {
    if (!opts.config.topics.alerts) throw new Error('kafka.topics.alerts is empty: nothing to publish alerts to');
    this.source = `kafka-alerts:${opts.config.topics.alerts}`;
  }

  /** True while this process runs the store's outbox (always, on a store no other process writes). */
  get holding(): boolean {
    return !this.opts.store.holdRole || this.heldAt > 0;
  }

  /**
   * Takes or renews the outbox role of a shared store (renewed every third of its lifetime). Taking it over reads the
   * position its last holder saved. False while another process holds it, or the store cannot say.
   */
  private async hold(): Promise<boolean> {
    const holdRole = this.opts.store.holdRole?.bind(this.opts.store);
    if (!holdRole) return true;
    const ttl = this.opts.roleTtlMs ?? ROLE_TTL_MS;
    const now = Date.now();
    if (this.heldAt > 0 && now - this.heldAt < ttl / 3) return true;
    let held = false;
    try {
      held = await holdRole(this.role, this.holder, ttl);
    } catch (e) {
      log.warn(`kafka alerts: cannot take or renew the outbox role: ${(e as Error).message}`, 'kafka:alerts-role');
    }
    // A lease that ran out before this renewal may have been another node's meanwhile (it took over and let go, or
    // still holds it and this renewal failed): taken afresh, from the saved position and the topic's end.
    const took = held && (this.heldAt === 0 || now - this.heldAt >= ttl);
    if (took) this.recheck = true;
    if (!held && this.heldAt > 0) log.info(`kafka alerts: no longer the fleet's outbox for ${this.opts.config.topics.alerts}`);
    this.heldAt = held ? now : 0;
    if (took) {
      const stored = await this.opts.store.position(this.source).catch(() => undefined);
      if (stored !== undefined && Number(stored) > this.position) this.position = Number(stored);
      log.info(`kafka alerts: this node is the fleet's outbox for ${this.opts.config.topics.alerts}, from alert id ${this.position}`);
    }
    return held;
  }

  /**
   * True when this node may publish now: the role is its own (renewed through the store if a third of its lifetime has
   * passed, as after any stall) and renewed less than half a lifetime ago, so no other node can have taken it over.
   */
  private async leaseHeld(): Promise<boolean> {
    if (!this.opts.store.holdRole) return true;
    if (!(await this.hold())) return false;
    // Just taken afresh: the rows in hand were read from an older position; read them again.
    if (this.recheck) return false;
    return Date.now() - this.heldAt < (this.opts.roleTtlMs ?? ROLE_TTL_MS) / 2;
  }

  private get role(): string {
    return `kafka-alerts-outbox:${this.opts.config.topics.alerts}`;
  }

  async start(): Promise<void> {
    this.kafka = this.opts.kafka ?? (await createKafkaClient(this.opts.config));
    // Idempotent: a produce request the broker wrote but could not answer (it stopped, the connection dropped) is
    // retried by kafkajs, and without producer ids and sequence numbers the retry wrote the alerts a second time. Its
    // retries are bounded (~1 minute) so that `stop` is never held up by a broker that stays away; past them the loop
    // below retries with the same alerts, which can then be written twice (same kaudit-alert-id header).
    this.producer = this.kafka.producer({
      ...producerDefaults(),
      allowAutoTopicCreation: true,
      maxInFlightRequests: 1,
      idempotent: true,
      retry: { retries: 15, initialRetryTime: 200, maxRetryTime: 5000 },
    });
    await this.producer.connect();
    const stored = await this.opts.store.position(this.source);
    if (stored !== undefined) this.position = Number(stored);
    else if (!this.opts.fromStart) this.position = await this.maxId();
    this.unsubscribe = this.opts.bus?.subscribe(() => this.wake?.());
    this.running = true;
    this.loop = this.run();
  }

  /** Id of the last alert known to be in Kafka. */
  get published(): number {
    return this.position;
  }

  private maxId(): Promise<number> {
    return this.opts.store.latestAlertId();
  }

  private async run(): Promise<void> {
    const limit = this.opts.batch ?? 500;
    let failures = 0;
    while (!this.stopped) {
      if (!(await this.hold())) {
        await this.sleep((this.opts.roleTtlMs ?? ROLE_TTL_MS) / 3);
        continue;
      }
      let rows: { id: number; body: string }[];
      try {
        rows = await this.opts.store.committedAlertsAfter(this.position, limit);
      } catch (e) {
        log.warn(`kafka alerts: cannot read the store: ${(e as Error).message}`, 'kafka:alerts');
        rows = [];
      }
      if (rows.length === 0) {
        failures = 0;
        await this.sleep(this.opts.pollMs ?? 1000);
        continue;
      }
      const topic = this.opts.config.topics.alerts;
      if (this.recheck) {
        try {
          this.atEnd = await publishedAtEnd(this.kafka!, topic, limit);
          this.recheck = false;
        } catch (e) {
          log.warn(`kafka alerts: cannot read the end of ${topic} (${(e as Error).message}); will retry`, 'kafka:alerts');
          await this.sleep(1000);
          continue;
        }
      }
      // Produced before, by this outbox or the fleet's last one, and not recorded in the position: not again.
      const fresh = rows.filter((r) => !this.atEnd.has(r.id));
      // Fencing: a holder that stalled since it last renewed (a GC pause, SIGSTOP, a slow read above) may have been
      // replaced, and its successor may have published these rows already. Produce only on a lease that is surely
      // still this node's, checked (and renewed if due) right before the produce.
      if (fresh.length > 0 && !(await this.leaseHeld())) continue;
      try {
        if (fresh.length > 0)
          await this.producer!.send({
            topic,
            acks: -1,
            messages: fresh.map((r) => {
              const m = alertMessage({ ...(JSON.parse(r.body) as Alert), id: r.id });
              return { ...m, headers: { ...m.headers, [HEADER_ALERT_SEQ]: String(r.id) } };
            }),
          });
      } catch (e) {
        // Part of it may be in the topic: read the end again before the retry.
        this.recheck = true;
        this.stats.failures++;
        failures++;
        log.error(
          `kafka alerts: producing ${rows.length} alerts to ${this.opts.config.topics.alerts} failed: ${(e as Error).message}; will retry`,
          'kafka:alerts',
        );
        await this.sleep(retryDelayMs(failures, { initialMs: 500, maxMs: 30_000 }));
        continue;
      }
      failures = 0;
      this.position = rows[rows.length - 1]!.id;
      this.stats.published += fresh.length;
      await this.savePosition();
    }
  }

  private async savePosition(): Promise<void> {
    // Best effort: an unsaved position only means some alerts are produced again after a restart. A full pipeline
    // (retriable) is waited out for a while; anything else is reported once.
    const checkpoint = { source: this.source, position: String(this.position) };
    try {
      await retry(() => this.opts.sink.submit({ source: this.source, cluster: '', records: [], checkpoint }), {
        retries: 19,
        initialMs: 50,
        maxMs: 1000,
        stopped: () => this.stopped,
        sleep: (ms) => this.sleep(ms),
      });
    } catch (e) {
      if (!this.stopped) log.warn(`kafka alerts: cannot store the outbox position: ${(e as Error).message}`, 'kafka:alerts');
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(this.timer);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      this.timer = setTimeout(done, ms);
    });
  }

  /** Publishes what is committed so far (up to the current last alert), then stops (and lets the fleet's role go). */
  async stop(): Promise<void> {
    if (!this.running) return;
    const target = this.holding ? await this.maxId().catch(() => this.position) : 0;
    for (let i = 0; i < 100 && this.position < target && this.stats.failures < 1000; i++) {
      this.wake?.();
      await new Promise((r) => setTimeout(r, 50));
    }
    this.stopped = true;
    this.wake?.();
    await this.loop;
    if (this.heldAt > 0) await this.opts.store.holdRole?.(this.role, this.holder, 0).catch(() => undefined);
    this.heldAt = 0;
    this.unsubscribe?.();
    await this.producer?.disconnect();
    this.running = false;
  }

  metricsText(): string {
    return (
      counter('kaudit_kafka_alerts_published_total', 'Alerts produced to the alerts topic (acks=all)', this.stats.published) +
      counter('kaudit_kafka_alerts_publish_failures_total', 'Failed attempts to produce alerts (retried)', this.stats.failures) +
      `# HELP kaudit_kafka_alerts_outbox_holder 1 while this node publishes the store's alerts (a shared store elects one node)\n# TYPE kaudit_kafka_alerts_outbox_holder gauge\nkaudit_kafka_alerts_outbox_holder ${this.holding ? 1 : 0}\n` +
      `# HELP kaudit_kafka_alerts_unpublished Alerts committed in the store and not yet in the alerts topic\n# TYPE kaudit_kafka_alerts_unpublished gauge\nkaudit_kafka_alerts_unpublished ${this.holding ? Math.max(0, this.maxIdSafe() - this.position) : 0}\n`
    );
  }

  /** The store's newest alert id as last read: a metrics scrape is synchronous, the store's answer is not. */
  private knownMaxId = 0;
  private maxIdSafe(): number {
    this.maxId().then(
      (id) => (this.knownMaxId = id),
      () => undefined,
    );
    return Math.max(this.knownMaxId, this.position);
  }
}

function counter(name: string, help: string, v: number): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} counter\n${name} ${v}\n`;
}

/** Everything a `kaudit serve` node runs for Kafka, per its config; see startKafkaServices. */
export interface KafkaServices {
  /** Where the webhook hands its batches: the events producer in ingest-only mode, else the pipeline. */
  webhookSink: BatchSink;
  source?: KafkaSource;
  /** The compacted topic carrying each partition's detection state between detectors. */
  state?: DetectionStateTopic;
  producer?: KafkaEventsProducer;
  outbox?: KafkaAlertOutbox;
  /** Prometheus text of all of them, for /metrics (Metrics.addRenderer). */
  metricsText(): string;
  /** Why this node is not fit to serve, for /readyz; undefined when it is. */
  problem(): string | undefined;
  /** Stops consuming (the batch in hand is committed), publishes the alerts committed so far, stops producing. */
  stop(): Promise<void>;
}

/**
 * Starts a node's Kafka roles from its `kafka:` config: the consumer group member feeding `pipeline` (consume), the
 * events producer that replaces the pipeline behind the webhook (ingestOnly), and the alerts outbox from `store`
 * (when an alerts topic is set and this node detects). One client is shared by all.
 */
export async function startKafkaServices(o: {
  config: KafkaConfig;
  pipeline: BatchSink & { readonly bus: AlertBus };
  /** A (read-only) connection to this node's store, for the outbox. */
  store: StoreReader;
  /** Cluster for consumed messages without a `kaudit-cluster` header. */
  cluster: string;
  kafka?: Kafka;
  onAssignment?: KafkaSourceOptions['onAssignment'];
  /** The pipeline's detector: with a state topic configured, its windows move with their partitions. */
  detector?: Detector;
}): Promise<KafkaServices> {
  const c = o.config;
  const kafka = o.kafka ?? (await createKafkaClient(c));
  const started: { stop(): Promise<void> }[] = [];
  let producer: KafkaEventsProducer | undefined;
  let source: KafkaSource | undefined;
  let state: DetectionStateTopic | undefined;
  let outbox: KafkaAlertOutbox | undefined;
  try {
    if (c.ingestOnly) {
      producer = new KafkaEventsProducer({ config: c, kafka });
      await producer.start();
      started.push(producer);
    }
    if (c.consume && c.topics.state && hasPartitionState(o.detector)) {
      state = new DetectionStateTopic({ config: c, kafka, detector: o.detector });
      await state.start();
      started.push(state);
    }
    if (c.consume) {
      source = new KafkaSource({ config: c, sink: o.pipeline, cluster: o.cluster, kafka, onAssignment: o.onAssignment, partitionState: state });
      await source.start();
      started.push(source);
    }
    if (c.topics.alerts && !(c.ingestOnly && !c.consume)) {
      outbox = new KafkaAlertOutbox({ config: c, store: o.store, sink: o.pipeline, bus: o.pipeline.bus, kafka });
      await outbox.start();
      started.push(outbox);
    }
  } catch (e) {
    for (const s of started.reverse()) await s.stop().catch(() => {});
    throw new Error(`kafka: cannot start (${describeKafkaConfig(c)}): ${(e as Error).message}`);
  }
  log.info(
    `kafka: ${[producer && 'webhook -> events topic (ingest-only)', source && `consuming as group ${c.groupId}`, state && `detection state -> ${c.topics.state}`, outbox && `alerts -> ${c.topics.alerts}`].filter(Boolean).join(', ')}; ${describeKafkaConfig(c)}`,
  );
  return {
    webhookSink: producer ?? o.pipeline,
    source,
    state,
    producer,
    outbox,
    metricsText: () => (source?.metricsText() ?? '') + (state?.metricsText() ?? '') + (producer?.metricsText() ?? '') + (outbox?.metricsText() ?? ''),
    problem: () => source?.problem,
    async stop() {
      await source?.stop();
      await state?.stop();
      await outbox?.stop();
      await producer?.stop();
    },
  };
}
