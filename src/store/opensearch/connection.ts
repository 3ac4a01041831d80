/**
 * The connection to an OpenSearch cluster (the fleet store): its settings, the official client made from them, and
 * one `request` that turns the client's failures into kaudit's errors. Unreachable, overloaded (429) and failing (5xx)
 * answers, "all shards failed" (503: a new index's shard not yet allocated) and searches answered by only part of
 * their shards are StoreUnavailableError (retriable: the caller's source keeps its data, the API answers 503);
 * anything else is a request error that says what OpenSearch said. Credentials are read from files and never logged.
 */
import { readFileSync } from 'node:fs';
import { Client, errors } from '@opensearch-project/opensearch';
import { KauditError, StoreUnavailableError } from '../../errors.js';
import { safeUrl } from './safe-url.js';

export { safeUrl };

export interface OpenSearchSettings {
  /** `http(s)://host:port` of one node (or a load balancer in front of the cluster). */
  url: string;
  auth?: { username: string; passwordFile: string } | { apiKeyFile: string };
  tls?: { ca?: string; insecure?: boolean };
  /** Every index kaudit makes starts with this (default "kaudit"). */
  indexPrefix: string;
  /** Replicas of each index (default 1; a single-node cluster needs 0). */
  replicas: number;
  /** Primary shards of each day's events index (default 1). */
  shards: number;
}

export function defaultSettings(url: string): OpenSearchSettings {
  return { url, indexPrefix: 'kaudit', replicas: 1, shards: 1 };
}

/** A request OpenSearch refused for a reason that retrying will not change (a bad query, a mapping conflict). */
export class OpenSearchRequestError extends KauditError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Whether a store target names OpenSearch (a URL) rather than a SQLite file (a path). */
export function isOpenSearchUrl(target: string): boolean {
  return /^https?:\/\//i.test(target);
}

function secret(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new KauditError(`store.opensearch: cannot read the ${what} file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export class OpenSearchConnection {
  readonly client: Client;
  readonly where: string;

  constructor(readonly settings: OpenSearchSettings) {
    this.where = safeUrl(settings.url);
    const headers: Record<string, string> = {};
    let auth: { username: string; password: string } | undefined;
    const a = settings.auth;
    if (a && 'apiKeyFile' in a) headers.authorization = `ApiKey ${secret(a.apiKeyFile, 'API key')}`;
    else if (a) auth = { username: a.username, password: secret(a.passwordFile, 'password') };
    const ca = settings.tls?.ca ? readFileSync(settings.tls.ca) : undefined;
    this.client = new Client({
      node: settings.url,
      auth,
      headers,
      ssl: ca || settings.tls?.insecure ? { ca, rejectUnauthorized: !settings.tls?.insecure } : undefined,
      // kaudit's own retry (with the source's backpressure) decides; the client only fails over between nodes.
      maxRetries: 0,
      requestTimeout: 60_000,
      compression: 'gzip',
    });
  }

  /** One request; the answer's body. `ignore`: statuses that are answers, not errors (404 for a get). */
  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    opts: { query?: Record<string, unknown>; ignore?: number[]; ndjson?: string } = {},
  ): Promise<{ status: number; body: T }> {
    try {
      const r = await this.client.transport.request(
        { method, path, body: body as never, bulkBody: opts.ndjson as never, querystring: opts.query },
        { ignore: opts.ignore },
      );
      const partial = shardFailures(path, r.body);
      if (partial) throw new StoreUnavailableError(`OpenSearch at ${this.where} answered ${method} ${path.split('?')[0]} from part of its shards: ${partial}`);
      return { status: r.statusCode ?? 200, body: r.body as T };
    } catch (e) {
      if (e instanceof StoreUnavailableError) throw e;
      throw this.failure(e, `${method} ${path.split('?')[0]}`);
    }
  }

  /** The kaudit error for a failed request. */
  failure(e: unknown, what: string): Error {
    if (e instanceof errors.ResponseError) {
      const status = e.statusCode ?? 0;
      const reason = describeError((e.body as { error?: unknown } | undefined)?.error) || e.message;
      if (status === 429 || status >= 500) return new StoreUnavailableError(`OpenSearch at ${this.where} answered ${status} to ${what}: ${reason}`, e);
      return new OpenSearchRequestError(`OpenSearch at ${this.where} refused ${what} (${status}): ${reason}`, status);
    }
    if (e instanceof errors.OpenSearchClientError) return new StoreUnavailableError(`OpenSearch at ${this.where} is unreachable (${what}): ${e.message}`, e);
    return e as Error;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/**
 * Why a search or count answered from only part of its shards (some not yet allocated, as just after a day's index is
 * created, or on a node that left), or undefined when every shard answered. OpenSearch answers such a search 200 with
 * the shards it could reach: taken as it is, a query would silently miss that index's events.
 */
function shardFailures(path: string, body: unknown): string | undefined {
  if (!/\/_(search|count)(\/|\?|$)/.test(path)) return undefined;
  type Shards = { total?: number; successful?: number; skipped?: number; failed?: number; failures?: { index?: string; reason?: unknown }[] };
  const s = (body as { _shards?: Shards } | undefined)?._shards;
  if (!s) return undefined;
  // A shard with no copy allocated is counted in `total` only: neither successful, skipped nor failed (2.19).
  const missing = (s.total ?? 0) - (s.successful ?? 0) - (s.skipped ?? 0) - (s.failed ?? 0);
  if (!s.failed && missing <= 0) return undefined;
  const f = s.failures?.[0];
  const parts = [s.failed ? `${s.failed} failed` : '', missing > 0 ? `${missing} not allocated` : ''].filter(Boolean).join(', ');
  return `${parts} of ${s.total ?? '?'} shards${f ? ` (${f.index ? `${f.index}: ` : ''}${describeError(f.reason)})` : ''}`;
}

/** OpenSearch's error object (type, reason, caused_by) in one line. */
export function describeError(err: unknown): string {
  if (!err) return '';
  if (typeof err === 'string') return err;
  const o = err as { type?: string; reason?: string; caused_by?: unknown };
  const cause = o.caused_by ? `: ${describeError(o.caused_by)}` : '';
  return `${o.type ?? 'error'}${o.reason ? ` (${o.reason})` : ''}${cause}`;
}
