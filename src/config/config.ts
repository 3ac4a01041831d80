import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { parseDetectionConfig, type DetectionConfig } from '../detect/config.js';
import { ConfigError } from '../errors.js';
import { parseKafkaConfig, type KafkaConfig } from './kafka.js';
import { parseSources, type SourceConfig } from './sources.js';
import { isStoreUrl, openSearchAt, parseOpenSearch, type OpenSearchSettings } from './store.js';
import { bool, bytes, duration, int, isObject, section, shown, str } from './values.js';

/**
 * kaudit's configuration: a YAML file, then environment variables (KAUDIT_*), then command-line flags, each
 * overriding the one before. Every field has a default, so kaudit runs with no file at all. `loadConfig` parses and
 * checks all of it once, sections included (`detection`, `kafka`); the rest of kaudit takes the typed values.
 */
export interface TailConfig {
  path: string;
  /** Cluster name stamped on events from this file (default: the top-level `cluster`). */
  cluster?: string;
}

export interface TlsConfig {
  cert: string;
  key: string;
  /** When set, clients must present a certificate signed by this CA. */
  clientCA?: string;
}

export interface RetentionConfig {
  /** Events older than this go (milliseconds; written `90d` in the file). */
  maxAge?: number;
  /** The store is pruned, oldest first, to below this (bytes; written `50GiB`). */
  maxSize?: number;
  intervalSeconds: number;
}

export interface KauditConfig {
  /** Name of the cluster events belong to when a source does not say (default `default`). */
  cluster: string;
  store: {
    /** The SQLite file (the embedded store), when `opensearch` is not set. */
    path: string;
    /** The fleet store: OpenSearch (see README, Fleet store). Set, it replaces the SQLite file. */
    opensearch?: OpenSearchSettings;
    retention: RetentionConfig;
    /** Repeats of one rule, identity and object within this are one alert row (milliseconds; written `10m`). */
    alertGroupWindow: number;
  };
  server: {
    /** HOST:PORT (checked at load; parseListen splits it). */
    listen: string;
    tls?: TlsConfig;
    /** File of bearer tokens, one `TOKEN SCOPE [CLUSTER]` a line (see README). */
    tokensFile?: string;
    /** Serve on a non-loopback address without TLS and tokens. Never in production. */
    insecureAllowUnauthenticatedRemote: boolean;
    /** Upper bound on a query's result size (rows per page). */
    maxResults: number;
  };
  webhook: { maxBodyBytes: number };
  tail: TailConfig[];
  /** Longest audit log line accepted (bytes); longer lines are dead-lettered. */
  maxLineBytes: number;
  redaction: { enabled: boolean };
  ingest: { batchSize: number; maxQueuedBatches: number };
  /** Detection tuning (see detections/README.md). */
  detection: DetectionConfig;
  /** Kafka scale-out (see README); absent = single node. */
  kafka?: KafkaConfig;
  /** Managed clusters' sources (CloudWatch Logs, Firehose, Pub/Sub push): see config/sources.ts. */
  sources: SourceConfig[];
}

export function defaultConfig(): KauditConfig {
  return {
    cluster: 'default',
    store: { path: './data/kaudit.db', retention: { intervalSeconds: 60 }, alertGroupWindow: 10 * 60_000 },
    server: {
      listen: '127.0.0.1:8080',
      insecureAllowUnauthenticatedRemote: false,
      maxResults: 1000,
    },
    webhook: { maxBodyBytes: 12 * 1024 * 1024 },
    tail: [],
    maxLineBytes: 1024 * 1024,
    redaction: { enabled: true },
    ingest: { batchSize: 2000, maxQueuedBatches: 32 },
    detection: {},
    kafka: undefined,
    sources: [],
  };
}

const TOP_KEYS = ['cluster', 'store', 'server', 'webhook', 'tail', 'maxLineBytes', 'redaction', 'ingest', 'detection', 'kafka', 'sources'];

/**
 * The typed config for a parsed YAML document (`null`: an empty file) over the defaults. `env` is only for the
 * kafka section's KAUDIT_KAFKA_* variables; the other KAUDIT_* variables are applied by loadConfig.
 */
export function parseConfig(doc: unknown, env: NodeJS.ProcessEnv = {}): KauditConfig {
  const c = defaultConfig();
  if (doc === null || doc === undefined) doc = {};
  if (!isObject(doc)) throw new ConfigError(`the config must be a mapping of settings at the top level, got ${shown(doc)}`);
  for (const k of Object.keys(doc)) if (!TOP_KEYS.includes(k)) throw new ConfigError(`unknown config key "${k}" (the top level has ${TOP_KEYS.join(', ')})`);
  // A key with nothing after it (`cluster:`, as an empty section) keeps the default: hence `!= null` throughout.
  if (doc.cluster != null) c.cluster = str(doc.cluster, 'cluster');

  const store = section(doc.store, 'store', ['path', 'opensearch', 'retention', 'alertGroupWindow']);
  if (store.path != null) c.store.path = str(store.path, 'store.path');
  c.store.opensearch = parseOpenSearch(store.opensearch);
  const ret = section(store.retention, 'store.retention', ['maxAge', 'maxSize', 'intervalSeconds']);
  if (ret.maxAge != null) c.store.retention.maxAge = duration(ret.maxAge, 'store.retention.maxAge');
  if (ret.maxSize != null) c.store.retention.maxSize = bytes(ret.maxSize, 'store.retention.maxSize', 1);
  if (ret.intervalSeconds != null) c.store.retention.intervalSeconds = positive(ret.intervalSeconds, 'store.retention.intervalSeconds');
  if (store.alertGroupWindow != null) c.store.alertGroupWindow = duration(store.alertGroupWindow, 'store.alertGroupWindow');

  const server = section(doc.server, 'server', ['listen', 'tls', 'tokensFile', 'insecureAllowUnauthenticatedRemote', 'maxResults']);
  if (server.listen != null) c.server.listen = listen(server.listen, 'server.listen');
  if (server.tls != null) {
    const t = section(server.tls, 'server.tls', ['cert', 'key', 'clientCA']);
    c.server.tls = { cert: t.cert == null ? '' : str(t.cert, 'server.tls.cert'), key: t.key == null ? '' : str(t.key, 'server.tls.key') };
    if (t.clientCA != null) c.server.tls.clientCA = str(t.clientCA, 'server.tls.clientCA');
  }
  if (server.tokensFile != null) c.server.tokensFile = str(server.tokensFile, 'server.tokensFile');
  const insecure = server.insecureAllowUnauthenticatedRemote;
  if (insecure != null) c.server.insecureAllowUnauthenticatedRemote = bool(insecure, 'server.insecureAllowUnauthenticatedRemote');
  if (server.maxResults != null) c.server.maxResults = int(server.maxResults, 'server.maxResults', 1);

  const webhook = section(doc.webhook, 'webhook', ['maxBodyBytes']);
  if (webhook.maxBodyBytes != null) c.webhook.maxBodyBytes = bytes(webhook.maxBodyBytes, 'webhook.maxBodyBytes', 1024);

  if (doc.tail != null) c.tail = tails(doc.tail);
  if (doc.maxLineBytes != null) c.maxLineBytes = bytes(doc.maxLineBytes, 'maxLineBytes', 1024);

  const redaction = section(doc.redaction, 'redaction', ['enabled']);
  if (redaction.enabled != null) c.redaction.enabled = bool(redaction.enabled, 'redaction.enabled');

  const ingest = section(doc.ingest, 'ingest', ['batchSize', 'maxQueuedBatches']);
  if (ingest.batchSize != null) c.ingest.batchSize = int(ingest.batchSize, 'ingest.batchSize', 1);
  if (ingest.maxQueuedBatches != null) c.ingest.maxQueuedBatches = int(ingest.maxQueuedBatches, 'ingest.maxQueuedBatches', 1);

  c.detection = parseDetectionConfig(doc.detection);
  c.kafka = parseKafkaConfig(doc.kafka, env);
  if (doc.sources != null) c.sources = parseSources(doc.sources);
  return c;
}

function positive(v: unknown, key: string): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new ConfigError(`${key} must be a number above zero, got ${shown(v)}`);
  return v;
}

function listen(v: unknown, key: string): string {
  const s = str(v, key);
  parseListen(s, key);
  return s;
}

function tails(v: unknown): TailConfig[] {
  if (!Array.isArray(v)) throw new ConfigError(`tail must be a list of {path, cluster}, got ${shown(v)}`);
  return v.map((t, i) => {
    const key = `tail[${i}]`;
    if (!isObject(t) || t.path == null) throw new ConfigError(`${key} needs a path, got ${shown(t)}`);
    section(t, key, ['path', 'cluster']);
    const out: TailConfig = { path: str(t.path, `${key}.path`) };
    if (t.cluster != null) out.cluster = str(t.cluster, `${key}.cluster`);
    return out;
  });
}

/** Environment variables and the config field each sets; each value is checked under the variable's name. */
const ENV: [string, (c: KauditConfig, v: string, name: string) => void][] = [
  ['KAUDIT_CLUSTER', (c, v) => (c.cluster = v)],
  ['KAUDIT_DB', (c, v, n) => setStore(c, v, n)],
  ['KAUDIT_STORE', (c, v, n) => setStore(c, v, n)],
  ['KAUDIT_LISTEN', (c, v, n) => (c.server.listen = listen(v, n))],
  ['KAUDIT_RETENTION_MAX_AGE', (c, v, n) => (c.store.retention.maxAge = duration(v, n))],
  ['KAUDIT_RETENTION_MAX_SIZE', (c, v, n) => (c.store.retention.maxSize = bytes(v, n, 1))],
  ['KAUDIT_TOKENS_FILE', (c, v) => (c.server.tokensFile = v)],
  ['KAUDIT_TLS_CERT', (c, v) => (c.server.tls = { ...(c.server.tls ?? { key: '' }), cert: v })],
  ['KAUDIT_TLS_KEY', (c, v) => (c.server.tls = { ...(c.server.tls ?? { cert: '' }), key: v })],
  ['KAUDIT_TLS_CLIENT_CA', (c, v) => (c.server.tls = { ...(c.server.tls ?? { cert: '', key: '' }), clientCA: v })],
  ['KAUDIT_REDACTION', (c, v) => (c.redaction.enabled = !/^(0|false|off|no)$/i.test(v))],
  ['KAUDIT_MAX_LINE_BYTES', (c, v, n) => (c.maxLineBytes = bytes(v, n, 1024))],
];

export const ENV_VARS = ENV.map(([k]) => k);

/**
 * Points the config at a store target (`--store`, `--db`, KAUDIT_STORE): a URL is OpenSearch (keeping the file's
 * other opensearch settings: auth, TLS, prefix), anything else a SQLite file.
 */
export function setStore(c: KauditConfig, target: string, key: string): void {
  if (isStoreUrl(target)) c.store.opensearch = { ...(c.store.opensearch ?? {}), ...openSearchAt(target, key), ...keep(c.store.opensearch) };
  else {
    c.store.path = target;
    c.store.opensearch = undefined;
  }
}

function keep(o: OpenSearchSettings | undefined): Partial<OpenSearchSettings> {
  if (!o) return {};
  const { url: _url, ...rest } = o;
  return rest;
}

/**
 * Loads the config once: defaults, then the YAML file (if any), then the environment (KAUDIT_*, the kafka section's
 * KAUDIT_KAFKA_* included), checked as a whole. Flags are applied by the caller. Throws ConfigError naming the key.
 */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): KauditConfig {
  let doc: unknown = null;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      // Loaded here, not at the top: most starts have no config file, and the parser is ~70 modules.
      doc = (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text);
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  let cfg: KauditConfig;
  try {
    cfg = parseConfig(doc, env);
  } catch (e) {
    // Where, then what: the error keeps its class (a DetectionConfigError stays one).
    if (file && e instanceof ConfigError) e.message = `${file}: ${e.message}`;
    throw e;
  }
  for (const [name, apply] of ENV) {
    const v = env[name];
    if (v !== undefined && v !== '') apply(cfg, v, name);
  }
  if (cfg.server.tls && (!cfg.server.tls.cert || !cfg.server.tls.key)) {
    throw new ConfigError('server.tls needs both cert and key (or KAUDIT_TLS_CERT and KAUDIT_TLS_KEY)');
  }
  return cfg;
}

/** Splits HOST:PORT (`[::1]:8443` for IPv6; an empty host is 127.0.0.1); `key` names the setting in the error. */
export function parseListen(s: string, key?: string): { host: string; port: number } {
  const at = key ? `${key}: ` : '';
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  if (!m) throw new ConfigError(`${at}bad listen address "${s}": use HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`${at}bad port in "${s}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
