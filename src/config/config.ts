import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { durationMs } from '../events/duration.js';
import { DetectionConfigError, parseDetectionConfig } from '../detect/config.js';
import { parseKafkaConfig } from './kafka.js';
import { parseSources } from './sources.js';

/**
 * kaudit's configuration: a YAML file, then environment variables (KAUDIT_*), then command-line flags, each
 * overriding the one before. Every field has a default, so kaudit runs with no file at all.
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

export interface KauditConfig {
  /** Name of the cluster events belong to when a source does not say (default `default`). */
  cluster: string;
  store: {
    path: string;
    retention: { maxAge?: string; maxSize?: string; intervalSeconds: number };
    alertGroupWindow: string;
  };
  server: {
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
  /** Detection tuning (see detections/README.md): passed through to the detection engine. */
  detection: Record<string, unknown>;
  /** Kafka scale-out (see README); absent = single node. */
  kafka?: Record<string, unknown>;
  /** Managed clusters' sources (CloudWatch Logs, Firehose, Pub/Sub push): see config/sources.ts. */
  sources: unknown[];
}

export function defaultConfig(): KauditConfig {
  return {
    cluster: 'default',
    store: { path: './data/kaudit.db', retention: { intervalSeconds: 60 }, alertGroupWindow: '10m' },
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

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge of plain objects; arrays and scalars replace. Unknown top-level keys are reported, not ignored. */
function merge(into: Record<string, unknown>, from: Record<string, unknown>, path: string, known: Record<string, unknown> | undefined): void {
  for (const [k, v] of Object.entries(from)) {
    const p = path ? `${path}.${k}` : k;
    if (known && !(k in known) && path === '') throw new ConfigError(`unknown config key "${p}"`);
    if (isObject(into[k])) {
      // A section: a key with nothing under it (`store:` and only comments) leaves the defaults; a scalar or a list
      // where a mapping belongs is an error here, not a TypeError later.
      if (v === null || v === undefined) continue;
      if (!isObject(v)) throw new ConfigError(`config key "${p}" must be a mapping of settings, got ${Array.isArray(v) ? 'a list' : JSON.stringify(v)}`);
      merge(into[k] as Record<string, unknown>, v, p, undefined);
    } else into[k] = v;
  }
}

/** Parses sizes like `10GB`, `512MiB`, `1048576`. */
export function parseBytes(s: string | number): number {
  if (typeof s === 'number') return s;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$/i.exec(s);
  if (!m) throw new ConfigError(`bad size "${s}": use a number of bytes or e.g. 512MB, 10GiB`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const mult: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3, tb: 1e12, tib: 1024 ** 4 };
  return Math.round(Number(m[1]) * mult[unit]!);
}

/** Parses durations like `30d`, `12h`, `10m`, `45s`, `500ms` into milliseconds. */
export function parseDuration(s: string | number): number {
  if (typeof s === 'number') return s;
  const ms = durationMs(s);
  if (ms === undefined) throw new ConfigError(`bad duration "${s}": use e.g. 500ms, 45s, 10m, 12h, 30d`);
  return Math.round(ms);
}

/** Environment variables and the config field each sets. */
const ENV: [string, (c: KauditConfig, v: string) => void][] = [
  ['KAUDIT_CLUSTER', (c, v) => (c.cluster = v)],
  ['KAUDIT_DB', (c, v) => (c.store.path = v)],
  ['KAUDIT_LISTEN', (c, v) => (c.server.listen = v)],
  ['KAUDIT_RETENTION_MAX_AGE', (c, v) => (c.store.retention.maxAge = v)],
  ['KAUDIT_RETENTION_MAX_SIZE', (c, v) => (c.store.retention.maxSize = v)],
  ['KAUDIT_TOKENS_FILE', (c, v) => (c.server.tokensFile = v)],
  ['KAUDIT_TLS_CERT', (c, v) => (c.server.tls = { ...(c.server.tls ?? { key: '' }), cert: v })],
  ['KAUDIT_TLS_KEY', (c, v) => (c.server.tls = { ...(c.server.tls ?? { cert: '' }), key: v })],
  ['KAUDIT_TLS_CLIENT_CA', (c, v) => (c.server.tls = { ...(c.server.tls ?? { cert: '', key: '' }), clientCA: v })],
  ['KAUDIT_REDACTION', (c, v) => (c.redaction.enabled = !/^(0|false|off|no)$/i.test(v))],
  ['KAUDIT_MAX_LINE_BYTES', (c, v) => (c.maxLineBytes = parseBytes(v))],
];

export const ENV_VARS = ENV.map(([k]) => k);

/** Loads the config: defaults, then the YAML file (if any), then the environment. Flags are applied by the caller. */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): KauditConfig {
  const cfg = defaultConfig();
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    if (doc != null) {
      if (!isObject(doc)) throw new ConfigError(`config file ${file} must hold a mapping at the top level`);
      try {
        merge(cfg as unknown as Record<string, unknown>, doc, '', cfg as unknown as Record<string, unknown>);
      } catch (e) {
        throw new ConfigError(`${file}: ${(e as Error).message}`);
      }
    }
  }
  for (const [name, apply] of ENV) {
    const v = env[name];
    if (v !== undefined && v !== '') apply(cfg, v);
  }
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(c: KauditConfig): void {
  parseListen(c.server.listen);
  if (c.store.retention.maxAge) parseDuration(c.store.retention.maxAge);
  if (c.store.retention.maxSize) parseBytes(c.store.retention.maxSize);
  parseDuration(c.store.alertGroupWindow);
  if (!Array.isArray(c.tail)) throw new ConfigError('tail must be a list of {path, cluster}');
  for (const [i, t] of c.tail.entries()) {
    if (!isObject(t) || typeof t.path !== 'string') throw new ConfigError(`tail[${i}] needs a path`);
  }
  if (c.server.tls && (!c.server.tls.cert || !c.server.tls.key)) throw new ConfigError('server.tls needs both cert and key');
  try {
    parseKafkaConfig(c.kafka, {});
  } catch (e) {
    throw new ConfigError(`kafka: ${(e as Error).message}`);
  }
  try {
    parseSources(c.sources);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`sources: ${(e as Error).message}`);
  }
  try {
    parseDetectionConfig(c.detection);
  } catch (e) {
    if (e instanceof DetectionConfigError) throw new ConfigError(e.message);
    throw e;
  }
}

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  if (!m) throw new ConfigError(`bad listen address "${s}": use HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`bad port in "${s}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
