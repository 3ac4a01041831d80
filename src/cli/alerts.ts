import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import WebSocket from 'ws';
import { SEVERITIES, type Severity } from '../detect/alert.js';
import type { FeedAlert } from '../sinks/ws-hub.js';
import { parse, UsageError } from './common.js';
import { readTokenFile } from './webhook-config.js';

export const ALERTS_HELP = `Usage: kaudit alerts [--follow] [--server URL] [--token-file F] [filters] [options]

Prints alerts, one a line. Without --follow, the most recent stored ones (oldest first); with --follow, the live
alert feed (WebSocket), resuming after disconnects with no gap and no duplicate, until interrupted.

  --follow, -f          follow the live feed
  --server URL          kaudit's address (default $KAUDIT_SERVER or http://127.0.0.1:8080)
  --token-file F        bearer token with scope read or admin (default: $KAUDIT_TOKEN)
  --ca-file F           CA of kaudit's server certificate
  --client-cert F, --client-key F   client certificate, when kaudit requires one
  --min-severity S      ${SEVERITIES.join(' | ')}
  --rule ID             only this rule (repeatable, or comma-separated)
  --cluster NAME, --namespace NS
  --after ID            with --follow: first the stored alerts after this id (default: only new ones)
  --limit N             without --follow: how many (default 50, at most the server's maxResults)
  --json                print each alert as one JSON line instead of text
`;

export interface ClientTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface FeedFilterArgs {
  severity?: Severity;
  rules?: string[];
  cluster?: string;
  namespace?: string;
}

export interface FollowOptions {
  server: string;
  token?: string;
  tls?: ClientTls;
  filter?: FeedFilterArgs;
  /** Resume point: stored alerts after this id first. Default: the newest stored alert's id (only new alerts). */
  after?: number;
  onAlert: (a: FeedAlert) => void;
  /** Connection news (disconnects, reconnects), for stderr. */
  onStatus?: (msg: string) => void;
  signal?: AbortSignal;
  /** Reconnect backoff: starts at 250 ms, doubles, at most this (default 15 s). */
  maxBackoffMs?: number;
  /** No ping from the server for this long means the connection is dead (default 75 s: 2.5 heartbeats). */
  deadAfterMs?: number;
}

/** A refusal that retrying will not fix (bad credentials, scope, parameters). */
export class FeedRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'FeedRefused';
  }
}

function filterParams(f: FeedFilterArgs | undefined): URLSearchParams {
  const p = new URLSearchParams();
  if (f?.severity) p.set('severity', f.severity);
  if (f?.rules?.length) p.set('rule', f.rules.join(','));
  if (f?.cluster) p.set('cluster', f.cluster);
  if (f?.namespace) p.set('namespace', f.namespace);
  return p;
}

function baseUrl(server: string): URL {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new UsageError(`--server "${server}" is not a URL (e.g. https://kaudit.example.com:8443)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--server must be http:// or https://, not ${u.protocol}`);
  return u;
}

/** An API path under the server URL (which may itself have a path prefix, behind a proxy). */
function apiUrl(base: URL, path: string): URL {
  const u = new URL(base.toString());
  u.pathname = base.pathname.replace(/\/+$/, '') + path;
  return u;
}

/** GET a JSON document from kaudit's HTTP API. */
export function getJson(url: URL, token: string | undefined, tls: ClientTls = {}, timeoutMs = 15_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      {
        method: 'GET',
        headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        ...(url.protocol === 'https:' ? tls : {}),
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(body);
          const msg = (body as { error?: string } | undefined)?.error ?? text.slice(0, 200);
          reject(status >= 400 && status < 500 && status !== 429 ? new FeedRefused(status, `${status}: ${msg}`) : new Error(`${status}: ${msg}`));
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
  });

/**
 * Follows the live alert feed until the signal aborts, reconnecting with `after=<last id seen>` so that every alert
 * is delivered once. Rejects with FeedRefused on a refusal retrying cannot fix.
 */
export async function followAlerts(o: FollowOptions): Promise<void> {
  const base = baseUrl(o.server);
  const status = o.onStatus ?? (() => undefined);
  const maxBackoff = o.maxBackoffMs ?? 15_000;
  let last = o.after;
  let backoff = 250;
  while (last === undefined && !o.signal?.aborted) {
    // Start from the newest stored alert: a disconnect before the first alert then loses nothing either.
    try {
      const u = apiUrl(base, '/api/v1/alerts');
      u.search = filterParams(o.filter).toString();
      u.searchParams.set('limit', '1');
      const page = (await getJson(u, o.token, o.tls)) as { items?: { id: number }[] };
      last = page.items?.[0]?.id ?? 0;
    } catch (e) {
      if (e instanceof FeedRefused) throw e;
      status(`cannot reach ${base.origin} (${(e as Error).message}); retrying in ${backoff} ms`);
      await sleep(backoff, o.signal);
      backoff = Math.min(backoff * 2, maxBackoff);
    }
  }
  while (!o.signal?.aborted) {
    const r = await connectOnce(base, last ?? 0, o, (id) => (last = id));
    if (o.signal?.aborted) break;
    if (r.refused) throw r.refused;
    if (r.opened) backoff = 250;
    const wait = r.code === 4008 ? 0 : backoff;
    status(`feed disconnected (${r.why}); resuming after id ${last} in ${wait} ms`);
    await sleep(wait, o.signal);
    if (!r.opened || r.code !== 4008) backoff = Math.min(backoff * 2, maxBackoff);
  }
}

interface Ended {
  opened: boolean;
  code?: number;
  why: string;
  refused?: FeedRefused;
}

function connectOnce(base: URL, after: number, o: FollowOptions, seen: (id: number) => void): Promise<Ended> {
  return new Promise<Ended>((resolve) => {
    const u = apiUrl(base, '/api/v1/alerts/stream');
    u.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    const p = filterParams(o.filter);
    p.set('after', String(after));
    u.search = p.toString();
    const ws = new WebSocket(u, {
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
      ...(base.protocol === 'https:' ? (o.tls ?? {}) : {}),
      handshakeTimeout: 15_000,
      perMessageDeflate: false,
    });
    let opened = false;
    let lastId = after;
    let settled = false;
    let dead: NodeJS.Timeout | undefined;
    const deadAfter = o.deadAfterMs ?? 75_000;
    const finish = (e: Ended) => {
      if (settled) return;
      settled = true;
      if (dead) clearTimeout(dead);
      o.signal?.removeEventListener('abort', onAbort);
      resolve(e);
    };
    const armDead = () => {
      if (dead) clearTimeout(dead);
      dead = setTimeout(() => {
        ws.terminate();
        finish({ opened, why: `no heartbeat for ${deadAfter} ms` });
      }, deadAfter);
    };
    const onAbort = () => {
      ws.close(1000, 'client done');
      finish({ opened, why: 'stopped' });
    };
    o.signal?.addEventListener('abort', onAbort);
    ws.on('open', () => {
      opened = true;
      armDead();
    });
    ws.on('ping', armDead);
    ws.on('message', (data) => {
      armDead();
      let a: FeedAlert;
      try {
        a = JSON.parse(data.toString()) as FeedAlert;
      } catch {
        return;
      }
      // The server never repeats an id; this guard keeps the output exactly-once even if it did.
      if (typeof a.id !== 'number' || a.id <= lastId) return;
      lastId = a.id;
      seen(a.id);
      o.onAlert(a);
    });
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let msg = text.slice(0, 200);
        try {
          msg = (JSON.parse(text) as { error?: string }).error ?? msg;
        } catch {
          // not JSON
        }
        const st = res.statusCode ?? 0;
        const fatal = st >= 400 && st < 500 && st !== 429 && st !== 408;
        ws.terminate();
        finish({
          opened: false,
          why: `HTTP ${st}: ${msg}`,
          refused: fatal ? new FeedRefused(st, `the alert feed refused the connection: HTTP ${st}: ${msg}`) : undefined,
        });
      });
    });
    ws.on('close', (code, reason) => finish({ opened, code, why: `code ${code}${reason.length ? ` "${reason.toString()}"` : ''}` }));
    ws.on('error', (e) => {
      if (!settled) ws.terminate();
      finish({ opened, why: e.message });
    });
  });
}

/** One alert as one line of text. */
export function formatAlert(a: FeedAlert): string {
  const r = a.objectRef ?? {};
  const res = [r.resource, r.subresource].filter(Boolean).join('/');
  const obj = [r.namespace, r.name].filter(Boolean).join('/');
  const target = [res, obj].filter(Boolean).join(' ');
  return `${a.time} ${a.severity.toUpperCase().padEnd(8)} ${a.rule} cluster=${a.cluster} user=${a.user} ${a.verb}${target ? ' ' + target : ''}: ${a.summary.replace(/\s+/g, ' ')} (id ${a.id})`;
}

function readOptional(file: string | undefined, what: string): Buffer | undefined {
  if (!file) return undefined;
  try {
    return readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export async function runAlerts(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      follow: { type: 'boolean', short: 'f' },
      server: { type: 'string' },
      'token-file': { type: 'string' },
      'ca-file': { type: 'string' },
      'client-cert': { type: 'string' },
      'client-key': { type: 'string' },
      'min-severity': { type: 'string' },
      rule: { type: 'string', multiple: true },
      cluster: { type: 'string' },
      namespace: { type: 'string' },
      after: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help) {
    process.stdout.write(ALERTS_HELP);
    return 0;
  }
  const sev = values['min-severity'];
  if (sev !== undefined && !(SEVERITIES as readonly string[]).includes(sev)) throw new UsageError(`--min-severity must be one of ${SEVERITIES.join(', ')}`);
  if (!!values['client-cert'] !== !!values['client-key']) throw new UsageError('--client-cert and --client-key go together');
  const after = values.after !== undefined ? Number(values.after) : undefined;
  if (after !== undefined && !(Number.isInteger(after) && after >= 0)) throw new UsageError('--after must be an alert id');
  const limit = values.limit !== undefined ? Number(values.limit) : 50;
  if (!(Number.isInteger(limit) && limit >= 1)) throw new UsageError('--limit must be a positive integer');
  const server = values.server ?? process.env.KAUDIT_SERVER ?? 'http://127.0.0.1:8080';
  const token = values['token-file'] ? readTokenFile(values['token-file']) : process.env.KAUDIT_TOKEN || undefined;
  const tls: ClientTls = {
    ca: readOptional(values['ca-file'], 'CA file'),
    cert: readOptional(values['client-cert'], 'client certificate'),
    key: readOptional(values['client-key'], 'client key'),
  };
  const filter: FeedFilterArgs = {
    severity: sev as Severity | undefined,
    rules: values.rule?.flatMap((r) => r.split(',')).filter(Boolean),
    cluster: values.cluster,
    namespace: values.namespace,
  };
  const print = (a: FeedAlert) => process.stdout.write((values.json ? JSON.stringify(a) : formatAlert(a)) + '\n');
  try {
    if (!values.follow) {
      const u = apiUrl(baseUrl(server), '/api/v1/alerts');
      u.search = filterParams(filter).toString();
      u.searchParams.set('limit', String(limit));
      const page = (await getJson(u, token, tls)) as { items: FeedAlert[] };
      for (const a of [...page.items].reverse()) print(a);
      return 0;
    }
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await followAlerts({
        server,
        token,
        tls,
        filter,
        after,
        onAlert: print,
        onStatus: (m) => process.stderr.write(`kaudit alerts: ${m}\n`),
        signal: ac.signal,
      });
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return 0;
  } catch (e) {
    if (e instanceof FeedRefused) {
      process.stderr.write(`kaudit alerts: ${e.message}\n`);
      return 1;
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (
      code &&
      /^(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ECONNRESET|ETIMEDOUT|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|ERR_TLS_CERT_ALTNAME_INVALID)$/.test(
        code,
      )
    ) {
      process.stderr.write(
        `kaudit alerts: cannot reach ${server} (${code}${code.includes('CERT') || code.includes('SIGN') ? '; pass --ca-file with the CA of its certificate' : ''})\n`,
      );
      return 1;
    }
    throw e;
  }
}
