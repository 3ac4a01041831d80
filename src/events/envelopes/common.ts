import { gunzipSync } from 'node:zlib';

/**
 * Helpers the cloud envelopes share. Convention: an item's `value` that is a string is the event's JSON text (a
 * CloudWatch `message`, an AKS `properties.log`, a forwarder's `log` line): the decoder parses it and keeps the text
 * as the event's stored form, so an unwrapped event is stored byte for byte as the apiserver wrote it.
 */

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** An unwrapping error: one line, never the payload itself. */
export class EnvelopeError extends Error {}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Strict base64 (standard or URL-safe alphabet): Node's decoder skips characters outside the alphabet silently, so a
 * damaged field would decode to garbage that fails later with a misleading reason.
 */
export function decodeBase64(s: unknown, what: string): Buffer {
  if (typeof s !== 'string') throw new EnvelopeError(`${what} is not a base64 string (got ${typeName(s)})`);
  const t = s.replace(/[\r\n]/g, '');
  if ((!BASE64.test(t) && !BASE64URL.test(t)) || t.length % 4 === 1) throw new EnvelopeError(`${what} is not valid base64`);
  return Buffer.from(t, t.includes('-') || t.includes('_') ? 'base64url' : 'base64');
}

/** Most bytes one gzip member may expand to (a compressed bomb is refused, not held). */
export const MAX_GUNZIP_BYTES = 64 * 1024 * 1024;

export function isGzip(b: Buffer): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

export function gunzip(b: Buffer, what: string): Buffer {
  try {
    return gunzipSync(b, { maxOutputLength: MAX_GUNZIP_BYTES });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'Z_BUF_ERROR' || /unexpected end/i.test((e as Error).message)) throw new EnvelopeError(`${what} is truncated gzip (${b.length} bytes)`);
    if (code === 'ERR_BUFFER_TOO_LARGE' || /Cannot create a Buffer larger/.test((e as Error).message))
      throw new EnvelopeError(`${what} expands past ${MAX_GUNZIP_BYTES} bytes`);
    throw new EnvelopeError(`${what} is not valid gzip (${(e as Error).message.split('\n')[0]})`);
  }
}

/** Parses JSON text into a value, or throws an EnvelopeError naming `what`. */
export function parseJsonOf(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const preview = text.length > 40 ? text.slice(0, 40) + '...' : text;
    throw new EnvelopeError(`${what} is not JSON (${(e as Error).message.split('\n')[0]}): ${JSON.stringify(preview)}`);
  }
}

/** Turns a thrown EnvelopeError into an item error (anything else is a bug and propagates). */
export function itemError(e: unknown, where?: string): { error: string; where?: string } {
  if (e instanceof EnvelopeError) return where === undefined ? { error: e.message } : { error: e.message, where };
  throw e;
}

/**
 * A cluster name from a provider's resource name, made to fit kaudit's cluster names (letters, digits, . _ -, at most
 * 63): anything else is replaced by '-'. Undefined when nothing usable remains.
 */
export function clusterName(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  const s = raw
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 63);
  return s.length > 0 ? s : undefined;
}
