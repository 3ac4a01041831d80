import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/**
 * Verification of the OIDC token a Pub/Sub push subscription sends (`Authorization: Bearer <JWT>`, signed RS256 by
 * Google): signature against the issuer's published keys (a JWKS, fetched and cached, refreshed when a token names a
 * key not seen yet, at most once a minute), issuer, audience, expiry, and optionally the service account's email.
 * Errors say what failed, never the token.
 */
export interface OidcOptions {
  /** JWKS location: an https URL or a file path. */
  jwks: string;
  audience: string;
  issuers: string[];
  /** The `email` claim required (the push subscription's service account), with `email_verified`. */
  email?: string;
  /** Clock skew allowed on exp, nbf and iat (seconds, default 60). */
  skewSeconds?: number;
}

export class TokenError extends Error {}

function b64json(s: string, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new TokenError(`token ${what} is not base64url JSON`);
  }
}

export class OidcVerifier {
  private keys = new Map<string, KeyObject>();
  private fetchedAt = 0;
  private loading: Promise<void> | undefined;

  constructor(private readonly o: OidcOptions) {}

  private async load(): Promise<void> {
    const src = this.o.jwks;
    let text: string;
    if (/^https?:\/\//.test(src)) {
      const r = await fetch(src, { signal: AbortSignal.timeout(10_000) });
      if (!r.ok) throw new TokenError(`signing keys not available (${src} answered ${r.status})`);
      text = await r.text();
    } else text = await readFile(src, 'utf8');
    const doc = JSON.parse(text) as { keys?: Record<string, unknown>[] };
    const keys = new Map<string, KeyObject>();
    for (const k of doc.keys ?? []) {
      if (k.kty !== 'RSA' || typeof k.kid !== 'string') continue;
      keys.set(k.kid, createPublicKey({ key: k as never, format: 'jwk' }));
    }
    this.keys = keys;
    this.fetchedAt = Date.now();
  }

  private async key(kid: string): Promise<KeyObject> {
    let k = this.keys.get(kid);
    if (k) return k;
    if (Date.now() - this.fetchedAt > 60_000 || this.keys.size === 0) {
      this.loading ??= this.load().finally(() => (this.loading = undefined));
      await this.loading;
      k = this.keys.get(kid);
    }
    if (!k) throw new TokenError(`token signed with an unknown key (kid ${JSON.stringify(kid.slice(0, 64))})`);
    return k;
  }

  /** Resolves with the token's claims, or rejects with a TokenError. */
  async verify(authorization: string | undefined, now = Date.now() / 1000): Promise<Record<string, unknown>> {
    if (!authorization || !/^Bearer\s+/i.test(authorization))
      throw new TokenError('no bearer token (configure the push subscription with an OIDC service account)');
    const token = authorization.replace(/^Bearer\s+/i, '').trim();
    const parts = token.split('.');
    if (parts.length !== 3) throw new TokenError('token is not a JWT');
    const header = b64json(parts[0]!, 'header');
    const claims = b64json(parts[1]!, 'claims');
    if (header.alg !== 'RS256') throw new TokenError(`token algorithm ${JSON.stringify(header.alg)} is not RS256`);
    if (typeof header.kid !== 'string') throw new TokenError('token header has no kid');
    const key = await this.key(header.kid);
    const ok = verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), key, Buffer.from(parts[2]!, 'base64url'));
    if (!ok) throw new TokenError('token signature does not verify');
    const skew = this.o.skewSeconds ?? 60;
    if (typeof claims.exp !== 'number' || claims.exp + skew < now) throw new TokenError('token has expired');
    if (typeof claims.iat === 'number' && claims.iat - skew > now) throw new TokenError('token is issued in the future');
    if (typeof claims.iss !== 'string' || !this.o.issuers.includes(claims.iss))
      throw new TokenError(`token issuer ${JSON.stringify(claims.iss)} is not accepted`);
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(this.o.audience)) throw new TokenError('token audience does not match this endpoint');
    if (this.o.email !== undefined && (claims.email !== this.o.email || claims.email_verified !== true))
      throw new TokenError('token is not of the configured service account');
    return claims;
  }
}
