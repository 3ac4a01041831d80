/**
 * The connection to an OpenSearch cluster (the fleet store): its settings, the official client made from them, and
 * one `request` that turns the client's failures into kaudit's errors. Unreachable, overloaded (429) and failing (5xx)
 * answers, "all shards failed" (503: a new index's shard not yet allocated) and searches answered by only part of
 * their shards are StoreUnavailableError (retriable: the caller's source keeps its data, the API answers 503);
 * anything else is a request error that says what OpenSearch said. Credentials are read from files and never logged.
 *
 * A read that meets shards not yet started (a day's index a detector has just created, as at midnight UTC) waits for
 * them, a few seconds at most, and is asked once more before it fails: an analyst should not see a 503 for an index
 * that is a second old. A shard that stays unassigned still fails the read after that wait.
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

/** How long a read waits for the shards of the indices it reads to start before it is refused. */
const SHARDS_STARTING_WAIT = '5s';

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

  /**
   * One request; the answer's body. `ignore`: statuses that are answers, not errors (404 for a get). A search,
   * count or point-in-time open whose indices' shards have not started yet waits for them once (see above).
   */
  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    opts: { query?: Record<string, unknown>; ignore?: number[]; ndjson?: string } = {},
  ): Promise<{ status: number; body: T }> {
    try {
      return await this.once<T>(method, path, body, opts);
    } catch (e) {
      const reads = readTarget(path);
      if (reads === undefined || !shardsNotStarted(e)) throw e;
      await this.shardsStarted(reads);
      return this.once<T>(method, path, body, opts);
    }
  }

  /**
   * Waits (boundedly) until no shard of `indices` is initializing and every primary has started: what a search over a
   * just-created index needs. Never throws: the read asked again says what is wrong.
   */
  private async shardsStarted(indices: string): Promise<void> {
    await this.client.transport
      .request(
        {
          method: 'GET',
          path: `/_cluster/health/${indices}`,
          querystring: { wait_for_status: 'yellow', wait_for_no_initializing_shards: 'true', timeout: SHARDS_STARTING_WAIT },
        },
        { ignore: [404, 408] },
      )
      .catch(() => undefined);
  }

  private async once<T>(
    method: string,
    path: string,
    body: unknown,
    opts: { query?: Record<string, unknown>; ignore?: number[]; ndjson?: string },
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

/** The indices a search, count or point-in-time open names in its path; undefined for any other request. */
function readTarget(path: string): string | undefined {
  const m = /^\/([^_/][^/]*)\/_(search|count)(\/point_in_time)?(\?|$)/.exec(path);
  // A search within a point in time names no index, and needs no wait: the point in time opened on started shards.
  return m?.[1];
}

/** A read refused because shards of its indices have not started: "all shards failed", or answered from part of them. */
function shardsNotStarted(e: unknown): boolean {
  if (!(e instanceof StoreUnavailableError)) return false;
  return /from part of its shards|all shards failed|no_shard_available|unavailable_shards/i.test(e.message);
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
