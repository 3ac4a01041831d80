import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { KafkaConfig as KafkaJsClientConfig, ProducerConfig, SASLOptions } from 'kafkajs';
import { ConfigError } from '../errors.js';
import { FORMATS, isFormat } from '../events/envelopes/index.js';
import { log } from '../log.js';
import { bool, int, isObject, shown, str as nonEmptyStr, strList } from './values.js';

const require = createRequire(import.meta.url);
/**
 * kafkajs, loaded when a Kafka client is first made: this module is imported by every command (it checks the config's
 * kafka section), and loading kafkajs took ~50 ms of the start of commands that never use it (an eighth of `kaudit ingest`'s).
 */
function kafkajs(): typeof import('kafkajs') {
  return require('kafkajs') as typeof import('kafkajs');
}

/**
 * The `kafka:` section of kaudit's config file (absent: single node, no Kafka).
 *
 *   kafka:
 *     brokers: [kafka-1:9093, kafka-2:9093]
 *     clientId: kaudit
 *     tls: { ca: /etc/kaudit/kafka-ca.pem }            # or `tls: true` for the system CAs; cert+key for mTLS
 *     sasl: { mechanism: scram-sha-512, username: kaudit, passwordFile: /run/secrets/kafka-password }
 *     groupId: kaudit-detectors
 *     topics: { events: [kaudit-events], alerts: kaudit-alerts, deadLetter: kaudit-dead-letters }
 *     consume: true        # this node consumes the events topics (a detector)
 *     ingestOnly: false    # this node's webhook produces to the events topic instead of detecting locally
 *
 * Environment: KAUDIT_KAFKA_BROKERS (comma-separated), KAUDIT_KAFKA_CLIENT_ID, KAUDIT_KAFKA_GROUP_ID,
 * KAUDIT_KAFKA_USERNAME, KAUDIT_KAFKA_PASSWORD (never put a password in the file itself if you can avoid it).
 */
export interface KafkaConfig {
  brokers: string[];
  clientId: string;
  tls?: KafkaTlsConfig;
  sasl?: KafkaSaslConfig;
  groupId: string;
  topics: {
    /** Topics consumed by detectors; the first is the one ingest-only nodes produce to. */
    events: string[];
    /** Where alerts are produced, keyed by cluster; '' = none. */
    alerts: string;
    /** Where poison messages go, with the reason in a header; '' = none (they are still kept in the store). */
    deadLetter: string;
    /**
     * Compacted topic of each partition's detection state (open windows, sequences), written before the partition's
     * offset commit and loaded by the detector that is given the partition next; '' = none (a moved partition's
     * windows start empty).
     */
    state: string;
  };
  /** Largest state snapshot of one partition, gzip-compressed (default 900,000 bytes: under the brokers' 1 MB); larger ones drop their oldest entries. */
  stateMaxBytes: number;
  /** Run the consumer group member on this node (default true; false when ingestOnly is set and this is not). */
  consume: boolean;
  /** Webhook batches go to the events topic (acks=all) instead of through the local pipeline. */
  ingestOnly: boolean;
  /**
   * Largest message (and, in ingest-only mode, largest single event) accepted: larger ones are dead-lettered. Default
   * 1,000,000 bytes, inside the brokers' default message.max.bytes (1 MB); raise both together.
   */
  maxMessageBytes: number;
  /** Records per pipeline batch when a fetched Kafka batch is split (default 1000). */
  batchRecords: number;
  /** Partitions processed at once by one consumer (default 2: decode of one overlaps the store write of another). */
  partitionsConsumedConcurrently: number;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /**
   * Bytes fetched per partition per request (default 2 MiB). A consumer processes what a fetch brought before it
   * fetches again, so each fetch's round trip is time the detector does nothing: measured (benchmarks/kafka.mjs,
   * 300,000 events, one detector) 24,000-31,000 events/s at 1 MiB against 41,000-46,000 at 2 MiB, for ~25 MB more
   * peak resident memory (benchmarks/NOTES.md).
   */
  maxBytesPerPartition: number;
  /** A new group starts at the beginning of the topics (default true: no event written before kaudit started is skipped). */
  fromBeginning: boolean;
  /** Ingest-only mode: events produced but not yet acknowledged past which `submit` refuses with OverloadedError. */
  maxInFlightEvents: number;
  compression: 'none' | 'gzip';
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  /**
   * How the events topics' messages are decoded: `auto` (default: native events, or an envelope by shape), `native`,
   * or an envelope's name (`aks` for Azure Event Hubs carrying a diagnostic setting's records).
   */
  format: string;
}

export interface KafkaTlsConfig {
  /** PEM file(s) of CAs to trust instead of the system's. */
  ca?: string | string[];
  /** Client certificate and key (PEM files), for brokers that require mutual TLS. */
  cert?: string;
  key?: string;
  /** Only for tests against a self-signed broker: accept any certificate. */
  insecureSkipVerify?: boolean;
  servername?: string;
}

export const SASL_MECHANISMS = ['scram-sha-256', 'scram-sha-512', 'plain'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

export interface KafkaSaslConfig {
  mechanism: SaslMechanism;
  username: string;
  password?: string;
  /** File holding the password (trailing newline ignored); wins over `password`. */
  passwordFile?: string;
}

export function defaultKafkaConfig(): KafkaConfig {
  return {
    brokers: [],
    clientId: 'kaudit',
    groupId: 'kaudit-detectors',
    topics: { events: ['kaudit-events'], alerts: 'kaudit-alerts', deadLetter: 'kaudit-dead-letters', state: 'kaudit-detection-state' },
    stateMaxBytes: 900_000,
    consume: true,
    ingestOnly: false,
    maxMessageBytes: 1_000_000,
    batchRecords: 1000,
    partitionsConsumedConcurrently: 2,
    sessionTimeoutMs: 30_000,
    heartbeatIntervalMs: 3_000,
    maxBytesPerPartition: 2 * 1024 * 1024,
    fromBeginning: true,
    maxInFlightEvents: 100_000,
    compression: 'none',
    connectionTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    format: 'auto',
  };
}

const KNOWN = new Set(Object.keys(defaultKafkaConfig()).concat(['tls', 'sasl']));

/** Strings here may be empty where that means "none" (topics.alerts: ''); validateKafkaConfig refuses the others. */
function str(v: unknown, key: string): string {
  return nonEmptyStr(v, key, { empty: true });
}

/**
 * Validates the `kafka:` section and applies KAUDIT_KAFKA_* variables. Returns undefined when Kafka is not
 * configured at all (no section and no KAUDIT_KAFKA_BROKERS).
 */
export function parseKafkaConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): KafkaConfig | undefined {
  if (raw == null && !env.KAUDIT_KAFKA_BROKERS) return undefined;
  if (raw != null && !isObject(raw)) throw new ConfigError(`kafka must be a mapping of settings (see README: Scale-out with Kafka), got ${shown(raw)}`);
  const r = (raw ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!KNOWN.has(k)) throw new ConfigError(`unknown config key "kafka.${k}"`);
  const c = defaultKafkaConfig();
  if (r.brokers !== undefined) c.brokers = strList(r.brokers, 'kafka.brokers');
  if (r.clientId !== undefined) c.clientId = str(r.clientId, 'kafka.clientId');
  if (r.groupId !== undefined) c.groupId = str(r.groupId, 'kafka.groupId');
  if (r.topics !== undefined) {
    if (!isObject(r.topics)) throw new ConfigError('kafka.topics must be a mapping of events, alerts, deadLetter, state');
    for (const k of Object.keys(r.topics)) {
      if (!['events', 'alerts', 'deadLetter', 'state'].includes(k)) throw new ConfigError(`unknown config key "kafka.topics.${k}"`);
    }
    if (r.topics.events !== undefined) c.topics.events = strList(r.topics.events, 'kafka.topics.events');
    if (r.topics.alerts !== undefined) c.topics.alerts = r.topics.alerts === null ? '' : str(r.topics.alerts, 'kafka.topics.alerts');
    if (r.topics.deadLetter !== undefined) c.topics.deadLetter = r.topics.deadLetter === null ? '' : str(r.topics.deadLetter, 'kafka.topics.deadLetter');
    if (r.topics.state !== undefined) c.topics.state = r.topics.state === null ? '' : str(r.topics.state, 'kafka.topics.state');
  }
  for (const k of ['consume', 'ingestOnly', 'fromBeginning'] as const) if (r[k] !== undefined) c[k] = bool(r[k], `kafka.${k}`);
  // A webhook receiver that only produces does not also consume, unless asked to.
  if (c.ingestOnly && r.consume === undefined) c.consume = false;
  const ints: [keyof KafkaConfig, number][] = [
    ['maxMessageBytes', 4096],
    ['batchRecords', 1],
    ['partitionsConsumedConcurrently', 1],
    ['sessionTimeoutMs', 1000],
    ['heartbeatIntervalMs', 100],
    ['maxBytesPerPartition', 1024],
    ['maxInFlightEvents', 1],
    ['connectionTimeoutMs', 100],
    ['requestTimeoutMs', 100],
    ['stateMaxBytes', 4096],
  ];
  for (const [k, min] of ints) if (r[k] !== undefined) (c as unknown as Record<string, number>)[k] = int(r[k], `kafka.${k}`, min);
  if (r.format !== undefined) {
    if (typeof r.format !== 'string' || !isFormat(r.format)) throw new ConfigError(`kafka.format must be one of ${FORMATS.join(', ')}`);
    c.format = r.format;
  }
  if (r.compression !== undefined) {
    if (r.compression !== 'none' && r.compression !== 'gzip') throw new ConfigError('kafka.compression must be none or gzip');
    c.compression = r.compression;
  }
  if (r.tls !== undefined && r.tls !== false) {
    if (r.tls === true) c.tls = {};
    else if (isObject(r.tls)) {
      const t = r.tls;
      for (const k of Object.keys(t)) {
        if (!['ca', 'cert', 'key', 'insecureSkipVerify', 'servername'].includes(k)) throw new ConfigError(`unknown config key "kafka.tls.${k}"`);
      }
      c.tls = {};
      if (t.ca !== undefined) c.tls.ca = Array.isArray(t.ca) ? strList(t.ca, 'kafka.tls.ca') : str(t.ca, 'kafka.tls.ca');
      if (t.cert !== undefined) c.tls.cert = str(t.cert, 'kafka.tls.cert');
      if (t.key !== undefined) c.tls.key = str(t.key, 'kafka.tls.key');
      if (t.servername !== undefined) c.tls.servername = str(t.servername, 'kafka.tls.servername');
      if (t.insecureSkipVerify !== undefined) c.tls.insecureSkipVerify = bool(t.insecureSkipVerify, 'kafka.tls.insecureSkipVerify');
      if (!!c.tls.cert !== !!c.tls.key) throw new ConfigError('kafka.tls needs both cert and key for a client certificate');
    } else throw new ConfigError('kafka.tls must be true or a mapping of ca, cert, key');
  }
  if (r.sasl !== undefined && r.sasl !== null) {
    if (!isObject(r.sasl)) throw new ConfigError('kafka.sasl must be a mapping of mechanism, username, password or passwordFile');
    const s = r.sasl;
    for (const k of Object.keys(s)) {
      if (!['mechanism', 'username', 'password', 'passwordFile'].includes(k)) throw new ConfigError(`unknown config key "kafka.sasl.${k}"`);
    }
    const mechanism = String(s.mechanism ?? '').toLowerCase();
    if (!(SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
      throw new ConfigError(`kafka.sasl.mechanism must be one of ${SASL_MECHANISMS.join(', ')}, got ${JSON.stringify(s.mechanism)}`);
    }
    c.sasl = { mechanism: mechanism as SaslMechanism, username: s.username === undefined ? '' : str(s.username, 'kafka.sasl.username') };
    if (s.password !== undefined) c.sasl.password = str(s.password, 'kafka.sasl.password');
    if (s.passwordFile !== undefined) c.sasl.passwordFile = str(s.passwordFile, 'kafka.sasl.passwordFile');
  }

  if (env.KAUDIT_KAFKA_BROKERS) c.brokers = strList(env.KAUDIT_KAFKA_BROKERS, 'KAUDIT_KAFKA_BROKERS');
  if (env.KAUDIT_KAFKA_CLIENT_ID) c.clientId = env.KAUDIT_KAFKA_CLIENT_ID;
  if (env.KAUDIT_KAFKA_GROUP_ID) c.groupId = env.KAUDIT_KAFKA_GROUP_ID;
  if (env.KAUDIT_KAFKA_USERNAME || env.KAUDIT_KAFKA_PASSWORD) {
    if (!c.sasl) throw new ConfigError('KAUDIT_KAFKA_USERNAME/PASSWORD are set but kafka.sasl.mechanism is not configured');
    if (env.KAUDIT_KAFKA_USERNAME) c.sasl.username = env.KAUDIT_KAFKA_USERNAME;
    if (env.KAUDIT_KAFKA_PASSWORD) c.sasl.password = env.KAUDIT_KAFKA_PASSWORD;
  }

  validateKafkaConfig(c);
  return c;
}

export function validateKafkaConfig(c: KafkaConfig): void {
  if (c.brokers.length === 0) throw new ConfigError('kafka.brokers is empty: list at least one HOST:PORT (or set KAUDIT_KAFKA_BROKERS)');
  for (const b of c.brokers) {
    if (!/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(b)) throw new ConfigError(`kafka.brokers: bad address "${b}", use HOST:PORT`);
  }
  if (!c.clientId) throw new ConfigError('kafka.clientId must not be empty');
  if (c.consume && !c.groupId) throw new ConfigError('kafka.groupId must not be empty when kafka.consume is on');
  if ((c.consume || c.ingestOnly) && c.topics.events.length === 0) throw new ConfigError('kafka.topics.events must name at least one topic');
  if (c.ingestOnly && c.consume) {
    // Allowed (one process doing both, for small set-ups and tests), but the webhook no longer detects locally.
  }
  if (c.sasl) {
    if (!c.sasl.username) throw new ConfigError('kafka.sasl.username is empty (or set KAUDIT_KAFKA_USERNAME)');
    if (c.sasl.password === undefined && !c.sasl.passwordFile) {
      throw new ConfigError('kafka.sasl needs passwordFile or password (or set KAUDIT_KAFKA_PASSWORD)');
    }
    if (c.sasl.mechanism === 'plain' && !c.tls) {
      throw new ConfigError('kafka.sasl.mechanism plain sends the password in clear: it needs kafka.tls');
    }
  }
  if (c.heartbeatIntervalMs >= c.sessionTimeoutMs) throw new ConfigError('kafka.heartbeatIntervalMs must be below kafka.sessionTimeoutMs');
}

function readFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** kafkajs client options for a config: reads the TLS and password files (at start, so errors surface then). */
export function kafkaClientConfig(c: KafkaConfig): KafkaJsClientConfig {
  const out: KafkaJsClientConfig = {
    clientId: c.clientId,
    brokers: c.brokers,
    connectionTimeout: c.connectionTimeoutMs,
    requestTimeout: c.requestTimeoutMs,
  };
  if (c.tls) {
    const t = c.tls;
    const cas = t.ca === undefined ? undefined : (Array.isArray(t.ca) ? t.ca : [t.ca]).map((p) => readFile(p, 'kafka.tls.ca'));
    out.ssl = {
      ...(cas ? { ca: cas } : {}),
      ...(t.cert ? { cert: readFile(t.cert, 'kafka.tls.cert'), key: readFile(t.key!, 'kafka.tls.key') } : {}),
      ...(t.servername ? { servername: t.servername } : {}),
      rejectUnauthorized: !t.insecureSkipVerify,
    };
  }
  if (c.sasl) {
    const password = c.sasl.passwordFile ? readFile(c.sasl.passwordFile, 'kafka.sasl.passwordFile').replace(/\r?\n$/, '') : c.sasl.password!;
    out.sasl = { mechanism: c.sasl.mechanism, username: c.sasl.username, password } as SASLOptions;
  }
  return out;
}

/** The config with secrets removed, for logs and `/api/v1/config`-style output. */
export function describeKafkaConfig(c: KafkaConfig): string {
  const auth = c.sasl ? `SASL ${c.sasl.mechanism.toUpperCase()} as ${c.sasl.username}` : 'no SASL';
  return `brokers ${c.brokers.join(',')}, ${c.tls ? 'TLS' : 'plaintext'}, ${auth}, group ${c.groupId}, events ${c.topics.events.join(',')}, alerts ${c.topics.alerts || '-'}, dead letters ${c.topics.deadLetter || '-'}, state ${c.topics.state || '-'}`;
}

/**
 * A kafkajs client for a config, logging through kaudit's log (warnings and errors only, rate-limited per kind so a
 * broker outage does not flood stderr).
 */
export async function createKafkaClient(c: KafkaConfig, overrides: Partial<KafkaJsClientConfig> = {}): Promise<import('kafkajs').Kafka> {
  const { logLevel, Kafka } = kafkajs();
  const logCreator =
    () =>
    ({ namespace, level, log: entry }: { namespace: string; level: number; log: { message: string; [k: string]: unknown } }) => {
      // kafkajs logs every error response of the protocol (a rebalance in progress, a coordinator still loading) at
      // error level although it retries them: those stay at debug; what it gives up on surfaces from the caller.
      if (namespace === 'Connection' && entry.message.startsWith('Response ')) return;
      // A consumer crash and its restart are reported once by KafkaSource (its CRASH listener), with what follows.
      if (namespace === 'Consumer' && /^(Crash|Restarting the consumer)/.test(entry.message)) return;
      // kaudit bounds its idempotent producers' retries on purpose (see KafkaAlertOutbox.start).
      if (namespace === 'Producer' && entry.message.startsWith('Limiting retries for the idempotent producer')) return;
      const where = entry.broker ? ` (broker ${String(entry.broker)})` : '';
      const msg = `kafka ${namespace ?? 'client'}: ${entry.message}${where}${entry.error && entry.error !== entry.message ? `: ${String(entry.error)}` : ''}`;
      if (level === logLevel.ERROR) log.error(msg, `kafka:${namespace}`);
      else if (level === logLevel.WARN) log.warn(msg, `kafka:${namespace}`);
    };
  return new Kafka({ ...kafkaClientConfig(c), logLevel: logLevel.WARN, logCreator, ...overrides });
}

/**
 * Settings every kaudit producer shares: the Java client's murmur2 partitioner (kafkajs 2's default, named here so that
 * kafkajs does not warn about its change from 1.x), so a key lands in the same partition whichever client wrote it.
 */
export function producerDefaults(): ProducerConfig {
  return { createPartitioner: kafkajs().Partitioners.DefaultPartitioner };
}
