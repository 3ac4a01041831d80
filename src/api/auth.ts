import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { isLoopback, parseListen, type KauditConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { log } from '../log.js';

/**
 * Who may do what. A credential carries one scope: `ingest` may only post to the audit webhook, `read` may only read
 * (queries, metrics, the alert feed), `admin` may do both. A credential may be bound to a cluster: it then writes only
 * that cluster's events and sees only that cluster's alerts on the feed; read routes answer it only when asked with
 * `cluster=<bound>`.
 */
export const SCOPES = ['ingest', 'read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  /** For logs and errors: never the secret itself. */
  name: string;
  scope: Scope;
  cluster?: string;
  via: 'token' | 'certificate' | 'none';
}

/** A refused request: HTTP status and a message safe to send (never the presented credential). */
export class AccessError extends Error {
  constructor(
    readonly statusCode: 401 | 403,
    message: string,
  ) {
    super(message);
    this.name = 'AccessError';
  }
}

/** Cluster names as they appear in paths, token files and certificate subjects. */
export const CLUSTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

interface TokenEntry {
  digest: Buffer;
  scope: Scope;
  cluster?: string;
  /** `tokens.txt:3`: where the token is, never what. */
  where: string;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Parses a tokens file: one `TOKEN SCOPE [CLUSTER]` a line, `#` starts a comment. Errors name the line, never the
 * token on it.
 */
export function parseTokens(text: string, file: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/(^|\s)#.*$/, '').trim();
    if (!line) continue;
    const where = `${file}:${i + 1}`;
    const f = line.split(/\s+/);
    if (f.length < 2 || f.length > 3) throw new ConfigError(`${where}: expected "TOKEN SCOPE [CLUSTER]" (${f.length} fields)`);
    const [token, scope, cluster] = f as [string, string, string | undefined];
    if (token.length < 16) throw new ConfigError(`${where}: token is too short (${token.length} characters; use at least 16, e.g. \`openssl rand -hex 32\`)`);
    if (!(SCOPES as readonly string[]).includes(scope)) throw new ConfigError(`${where}: scope "${scope}" is not one of ${SCOPES.join(', ')}`);
    if (cluster !== undefined && !CLUSTER_NAME.test(cluster))
      throw new ConfigError(`${where}: bad cluster name "${cluster}" (letters, digits, . _ -; at most 63)`);
    const d = digest(token);
    const key = d.toString('hex');
    if (seen.has(key)) throw new ConfigError(`${where}: the same token appears twice`);
    seen.add(key);
    out.push({ digest: d, scope: scope as Scope, cluster, where });
  }
  return out;
}

/** The token set, compared in constant time: the presented token is hashed and checked against every entry. */
export class TokenSet {
  constructor(private entries: TokenEntry[]) {}

  static load(file: string): TokenSet {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read tokens file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return new TokenSet(parseTokens(text, file));
  }

  get size(): number {
    return this.entries.length;
  }

  match(token: string): Principal | undefined {
    const d = digest(token);
    let found: TokenEntry | undefined;
    // No early exit: every entry is compared whatever matched, so timing says nothing about which one did.
    for (const e of this.entries) if (timingSafeEqual(e.digest, d) && !found) found = e;
    return found ? { name: `token at ${found.where}`, scope: found.scope, cluster: found.cluster, via: 'token' } : undefined;
  }
}

/** What a route needs. Probes need nothing; the webhook needs ingest; everything else needs read. */
export type Need = 'none' | 'ingest' | 'read';

export function allows(p: Principal, need: Need): boolean {
  if (need === 'none') return true;
  return p.scope === 'admin' || p.scope === need;
}

const ANONYMOUS: Principal = { name: 'anonymous (no credentials configured)', scope: 'admin', via: 'none' };

/**
 * The server's access rules, made once from the config. With neither a tokens file nor a client CA, nothing is
 * required (kaudit then only starts on a loopback address, see checkListenSafety). With a tokens file, a valid bearer
 * token is required. With a client CA, a client certificate signed by it is required; its subject gives the scope
 * (O=ingest|read|admin) and, for ingest certificates, the cluster (CN), unless a bearer token is also sent, which
 * then decides.
 */
export class Access {
  private tokens: TokenSet | undefined;
  private readonly tokensFile: string | undefined;
  private readonly clientCA: boolean;
  private watchTimer: NodeJS.Timeout | undefined;
  private tokensMtime = 0;

  constructor(config: KauditConfig) {
    this.tokensFile = config.server.tokensFile || undefined;
    this.clientCA = !!config.server.tls?.clientCA;
    if (this.tokensFile) {
      this.tokens = TokenSet.load(this.tokensFile);
      if (this.tokens.size === 0) throw new ConfigError(`tokens file ${this.tokensFile} holds no tokens; every request would be refused`);
      this.tokensMtime = mtime(this.tokensFile);
      warnIfReadableByOthers(this.tokensFile);
    }
  }

  /** True when requests must carry credentials. */
  get required(): boolean {
    return !!this.tokens || this.clientCA;
  }

  /** Re-reads the tokens file when it changes (checked every few seconds), so tokens rotate without a restart. */
  watch(intervalMs = 3000): void {
    if (!this.tokensFile || this.watchTimer) return;
    const file = this.tokensFile;
    this.watchTimer = setInterval(() => {
      const m = mtime(file);
      if (m === this.tokensMtime) return;
      this.tokensMtime = m;
      try {
        const t = TokenSet.load(file);
        if (t.size === 0) throw new ConfigError(`tokens file ${file} holds no tokens`);
        this.tokens = t;
        log.info(`tokens file ${file} reloaded: ${t.size} tokens`);
      } catch (e) {
        log.error(`tokens file ${file} changed but was not reloaded (the previous tokens stay in force): ${(e as Error).message}`);
      }
    }, intervalMs);
    this.watchTimer.unref();
  }

  stop(): void {
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = undefined;
  }

  /**
   * Who is asking. Throws AccessError (401) when credentials are required and missing or wrong. `need: 'none'` routes
   * (probes) are answered without credentials, but a presented token must still be valid.
   */
  authenticate(headers: IncomingHttpHeaders, socket: Socket, need: Need): Principal {
    if (!this.required) return ANONYMOUS;
    const auth = headers.authorization;
    let bearer: string | undefined;
    if (auth !== undefined) {
      const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
      if (!m) throw new AccessError(401, 'Authorization header must be "Bearer <token>"');
      bearer = m[1]!;
    }
    let cert: Principal | undefined;
    if (this.clientCA) {
      const tls = socket as TLSSocket;
      const peer = typeof tls.getPeerCertificate === 'function' ? tls.getPeerCertificate() : undefined;
      const presented = !!peer && Object.keys(peer).length > 0;
      if (presented && !tls.authorized)
        throw new AccessError(401, `client certificate rejected: ${tls.authorizationError ?? 'not signed by the configured client CA'}`);
      if (!presented && need !== 'none') throw new AccessError(401, 'a client certificate signed by the configured client CA is required');
      if (presented) cert = certPrincipal(peer!.subject);
    }
    if (bearer !== undefined) {
      if (!this.tokens) throw new AccessError(401, 'bearer tokens are not accepted by this server (no tokens file); use a client certificate');
      const p = this.tokens.match(bearer);
      if (!p) throw new AccessError(401, 'invalid bearer token');
      return p;
    }
    if (cert) return cert;
    if (need === 'none') return ANONYMOUS_PROBE;
    throw new AccessError(401, this.tokens ? 'missing bearer token (Authorization: Bearer <token>)' : 'missing credentials');
  }

  /** Authenticates and checks the scope; throws AccessError. */
  authorize(headers: IncomingHttpHeaders, socket: Socket, need: Need): Principal {
    const p = this.authenticate(headers, socket, need);
    if (!allows(p, need))
      throw new AccessError(
        403,
        `${p.name} has scope "${p.scope}", which does not allow ${need === 'ingest' ? 'posting audit events (needs ingest or admin)' : 'reading (needs read or admin)'}`,
      );
    return p;
  }
}

const ANONYMOUS_PROBE: Principal = { name: 'anonymous probe', scope: 'read', via: 'none' };

function warnIfReadableByOthers(file: string): void {
  try {
    const mode = statSync(file).mode;
    if (mode & 0o077) log.warn(`tokens file ${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
  } catch {
    // Read already succeeded; a stat failure here is not worth failing start-up for.
  }
}

function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** O=scope (ingest, read or admin); for ingest certificates CN is the cluster the certificate writes to. */
function certPrincipal(subject: { CN?: string | string[]; O?: string | string[] } | undefined): Principal {
  const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  const cn = list(subject?.CN)[0] ?? '';
  const scope = list(subject?.O).find((o): o is Scope => (SCOPES as readonly string[]).includes(o));
  if (!scope) throw new AccessError(403, `client certificate "${cn}" carries no kaudit scope: its subject needs O=ingest, O=read or O=admin`);
  let cluster: string | undefined;
  if (scope === 'ingest') {
    if (!CLUSTER_NAME.test(cn)) throw new AccessError(403, `ingest client certificate needs CN=<cluster name>; "${cn}" is not a valid cluster name`);
    cluster = cn;
  }
  return { name: `certificate CN=${cn}`, scope, cluster, via: 'certificate' };
}

/**
 * Refuses configurations that would expose audit data: any non-loopback listen address needs TLS and credentials
 * (a tokens file or a client CA), unless server.insecureAllowUnauthenticatedRemote is set, which is logged loudly.
 */
export function checkListenSafety(config: KauditConfig): void {
  const { host } = parseListen(config.server.listen);
  if (isLoopback(host)) return;
  const tls = !!config.server.tls;
  const creds = !!config.server.tokensFile || !!config.server.tls?.clientCA;
  if (tls && creds) return;
  const missing = [!tls && 'TLS (server.tls.cert and key)', !creds && 'credentials (server.tokensFile or server.tls.clientCA)'].filter(Boolean).join(' and ');
  if (!config.server.insecureAllowUnauthenticatedRemote) {
    throw new ConfigError(
      `refusing to listen on ${config.server.listen} without ${missing}: audit events and alerts are sensitive. ` +
        'Configure them (see README, "Security model"), listen on 127.0.0.1, or pass --insecure-allow-unauthenticated-remote for a throwaway test.',
    );
  }
  log.warn(
    `!!! INSECURE: listening on ${config.server.listen} without ${missing} because --insecure-allow-unauthenticated-remote is set. ` +
      'Anyone who can reach this port can read audit data and inject audit events. Never run like this in production. !!!',
  );
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the access hook for every request (anonymous when no credentials are configured). */
    principal?: Principal;
  }
}
