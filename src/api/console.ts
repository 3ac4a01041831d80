import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join, normalize, sep, extname } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * The browser console's files (built by `npm run build` into dist/console): `/` is its page, `/assets/*` its
 * content-hashed scripts and styles. These paths need no credentials (they hold no audit data; the console asks for a
 * token before it reads anything), and every response carries a strict Content-Security-Policy: scripts, styles and
 * connections only from this origin, nothing inline, no frames.
 */

export const CONSOLE_DIR = fileURLToPath(new URL('../console/', import.meta.url));

/** The routes this plugin serves; the access hook lets them through without credentials. */
export const CONSOLE_ROUTES = new Set(['/', '/assets/*', '/favicon.svg']);

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  // 'self' covers ws: and wss: to this host and port (CSP 3) — the alert feed.
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), usb=()',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json; charset=utf-8',
};

/** Assets are few and small (a few hundred kB): read once, kept in memory, served with a strong ETag. */
class AssetCache {
  private files = new Map<string, { body: Buffer; type: string; etag: string }>();
  constructor(private readonly root: string) {}

  async get(rel: string): Promise<{ body: Buffer; type: string; etag: string } | undefined> {
    const hit = this.files.get(rel);
    if (hit) return hit;
    const full = normalize(join(this.root, rel));
    // No way out of the console folder (../, encoded or not: the router has decoded the path already).
    if (!full.startsWith(this.root.endsWith(sep) ? this.root : this.root + sep)) return undefined;
    const type = TYPES[extname(full)];
    if (!type) return undefined;
    let body: Buffer;
    try {
      body = await readFile(full);
    } catch {
      return undefined;
    }
    const entry = { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
    if (this.files.size < 200) this.files.set(rel, entry);
    return entry;
  }
}

function send(reply: FastifyReply, ifNoneMatch: string | undefined, f: { body: Buffer; type: string; etag: string }, cache: string): FastifyReply {
  reply.headers(SECURITY_HEADERS).header('cache-control', cache).header('etag', f.etag);
  if (ifNoneMatch === f.etag) return reply.code(304).send();
  return reply.type(f.type).send(f.body);
}

export async function consoleRoutes(app: FastifyInstance, opts: { dir?: string } = {}): Promise<void> {
  const dir = opts.dir ?? CONSOLE_DIR;
  const cache = new AssetCache(dir);
  const built = existsSync(join(dir, 'index.html'));
  const missing = `the console is not built (no ${join(dir, 'index.html')}): run npm run build`;

  app.get('/', { schema: { hide: true } }, async (req, reply) => {
    const f = built ? await cache.get('index.html') : undefined;
    if (!f)
      return reply
        .code(404)
        .headers(SECURITY_HEADERS)
        .send({ error: built ? 'console page not found' : missing, api: '/api/v1' });
    // The page names the hashed assets of this build: always revalidated, so an upgrade is picked up at once.
    return send(reply, req.headers['if-none-match'], f, 'no-cache');
  });
  app.get('/favicon.svg', { schema: { hide: true } }, async (req, reply) => {
    const f = await cache.get('favicon.svg');
    if (!f) return reply.code(404).headers(SECURITY_HEADERS).send({ error: 'not found' });
    return send(reply, req.headers['if-none-match'], f, 'public, max-age=86400');
  });
  app.get<{ Params: { '*': string } }>('/assets/*', { schema: { hide: true } }, async (req, reply) => {
    const rel = req.params['*'];
    if (!/^[A-Za-z0-9._-]{1,200}$/.test(rel)) return reply.code(404).headers(SECURITY_HEADERS).send({ error: 'not found' });
    const f = await cache.get(`assets/${rel}`);
    if (!f)
      return reply
        .code(404)
        .headers(SECURITY_HEADERS)
        .send({ error: `no console asset ${rel}` });
    // File names carry a content hash (Vite): a name never changes meaning, so it may be cached for good.
    return send(reply, req.headers['if-none-match'], f, 'public, max-age=31536000, immutable');
  });
}
