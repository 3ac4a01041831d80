import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { isObject, parseDuration } from './values.js';

/**
 * The `sources:` list of kaudit's config: managed clusters' audit logs, one entry a source, each with the cluster its
 * events belong to (when absent, the cluster the envelope names: the EKS log group, the GKE resource label, the AKS
 * resourceId).
 *
 *   sources:
 *     - type: cloudwatch            # EKS, pulled from CloudWatch Logs
 *       logGroup: /aws/eks/prod/cluster
 *       region: eu-west-1
 *     - type: firehose              # EKS, pushed by a Kinesis Data Firehose HTTP endpoint destination
 *       accessKeyFile: /etc/kaudit/firehose-access-key
 *     - type: pubsub-push           # GKE, pushed by a Pub/Sub push subscription of a log sink's topic
 *       audience: https://kaudit.example.com/api/v1/ingest/pubsub
 *       serviceAccount: pubsub-push@acme-prod.iam.gserviceaccount.com
 *
 * AKS through Event Hubs uses the `kafka:` section (Event Hubs speaks the Kafka protocol), and forwarders post to
 * `/api/v1/ingest/forwarder` with the webhook's credentials: neither needs an entry here.
 */
export type SourceConfig = CloudWatchSourceConfig | FirehoseSourceConfig | PubSubPushSourceConfig;

export interface CloudWatchSourceConfig {
  type: 'cloudwatch';
  logGroup: string;
  cluster?: string;
  region?: string;
  endpoint?: string;
  streamPrefix: string;
  pollMs: number;
  pageSize: number;
}

export interface FirehoseSourceConfig {
  type: 'firehose';
  cluster?: string;
  /** The access key the delivery stream sends in X-Amz-Firehose-Access-Key (from `accessKeyFile`, or `accessKey`). */
  accessKey: string;
  /** Largest request body accepted (Firehose sends up to 64 MiB before compression; default 64 MiB). */
  maxBodyBytes: number;
}

export interface PubSubPushSourceConfig {
  type: 'pubsub-push';
  cluster?: string;
  /** Verify the push's OIDC token (Authorization: Bearer) for this audience; absent = no token check. */
  audience?: string;
  /** The service account the token must be issued to (its `email` claim). */
  serviceAccount?: string;
  /** Where Google's signing keys are fetched (a JWKS document); a file path or URL. */
  jwks: string;
  /** Accepted token issuers. */
  issuers: string[];
}

const KNOWN: Record<SourceConfig['type'], string[]> = {
  cloudwatch: ['type', 'logGroup', 'cluster', 'region', 'endpoint', 'streamPrefix', 'pollInterval', 'pageSize'],
  firehose: ['type', 'cluster', 'accessKey', 'accessKeyFile', 'maxBodyBytes'],
  'pubsub-push': ['type', 'cluster', 'audience', 'serviceAccount', 'jwks', 'issuers'],
};

const CLUSTER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const GOOGLE_JWKS = 'https://www.googleapis.com/oauth2/v3/certs';

function str(v: unknown, path: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`${path} must be a non-empty string`);
  return v;
}

/** Validates `sources:`; secrets named by file are read here, so a missing file fails at start. */
export function parseSources(raw: unknown, readFile: (p: string) => string = (p) => readFileSync(p, 'utf8')): SourceConfig[] {
  if (raw == null) return [];
  if (!Array.isArray(raw)) throw new ConfigError('sources must be a list of {type, ...} (see README: managed clusters)');
  return raw.map((s, i) => {
    const at = `sources[${i}]`;
    if (!isObject(s)) throw new ConfigError(`${at} must be a mapping with a type`);
    const type = s.type as SourceConfig['type'];
    if (!(type in KNOWN)) throw new ConfigError(`${at}.type must be one of ${Object.keys(KNOWN).join(', ')}, got ${JSON.stringify(s.type)}`);
    for (const k of Object.keys(s)) if (!KNOWN[type].includes(k)) throw new ConfigError(`unknown config key "${at}.${k}" for a ${type} source`);
    const cluster = s.cluster === undefined ? undefined : str(s.cluster, `${at}.cluster`);
    if (cluster !== undefined && !CLUSTER.test(cluster))
      throw new ConfigError(`${at}.cluster "${cluster}" is not a valid cluster name (letters, digits, . _ -; at most 63)`);
    if (type === 'cloudwatch') {
      const pageSize = s.pageSize === undefined ? 5000 : Number(s.pageSize);
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) throw new ConfigError(`${at}.pageSize must be an integer from 1 to 10000`);
      return {
        type,
        logGroup: str(s.logGroup, `${at}.logGroup`),
        cluster,
        region: s.region === undefined ? undefined : str(s.region, `${at}.region`),
        endpoint: s.endpoint === undefined ? undefined : str(s.endpoint, `${at}.endpoint`),
        streamPrefix: s.streamPrefix === undefined ? 'kube-apiserver-audit' : str(s.streamPrefix, `${at}.streamPrefix`),
        pollMs: s.pollInterval === undefined ? 5000 : parseDuration(s.pollInterval as string),
        pageSize,
      };
    }
    if (type === 'firehose') {
      let accessKey: string;
      if (s.accessKeyFile !== undefined) {
        const f = str(s.accessKeyFile, `${at}.accessKeyFile`);
        try {
          accessKey = readFile(f).replace(/\r?\n$/, '');
        } catch (e) {
          throw new ConfigError(`cannot read ${at}.accessKeyFile ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      } else accessKey = str(s.accessKey ?? process.env.KAUDIT_FIREHOSE_ACCESS_KEY, `${at}.accessKeyFile (or accessKey, or KAUDIT_FIREHOSE_ACCESS_KEY)`);
      if (accessKey.length < 16) throw new ConfigError(`${at}: the Firehose access key must be at least 16 characters (openssl rand -hex 32)`);
      const maxBodyBytes = s.maxBodyBytes === undefined ? 64 * 1024 * 1024 : Number(s.maxBodyBytes);
      if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024) throw new ConfigError(`${at}.maxBodyBytes must be an integer >= 1024`);
      return { type, cluster, accessKey, maxBodyBytes };
    }
    const issuers =
      s.issuers === undefined ? ['https://accounts.google.com', 'accounts.google.com'] : (s.issuers as unknown[]).map((x, j) => str(x, `${at}.issuers[${j}]`));
    const out: PubSubPushSourceConfig = { type, cluster, jwks: s.jwks === undefined ? GOOGLE_JWKS : str(s.jwks, `${at}.jwks`), issuers };
    if (s.audience !== undefined) out.audience = str(s.audience, `${at}.audience`);
    if (s.serviceAccount !== undefined) out.serviceAccount = str(s.serviceAccount, `${at}.serviceAccount`);
    if (out.serviceAccount && !out.audience) throw new ConfigError(`${at}: serviceAccount needs audience (the token check)`);
    return out;
  });
}

/** For logs: never the secrets. */
export function describeSource(s: SourceConfig): string {
  if (s.type === 'cloudwatch') return `cloudwatch ${s.logGroup}${s.region ? ` (${s.region})` : ''}${s.cluster ? ` as cluster ${s.cluster}` : ''}`;
  if (s.type === 'firehose') return `firehose endpoint /api/v1/ingest/firehose${s.cluster ? ` as cluster ${s.cluster}` : ''} (access key set)`;
  return `pubsub push endpoint /api/v1/ingest/pubsub${s.audience ? ` (OIDC token for ${s.audience})` : ' (no token check)'}`;
}
