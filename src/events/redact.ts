import { createHmac, randomBytes } from 'node:crypto';
import type { AuditEvent } from './types.js';

/**
 * Secret values never reach the store, a log line or an alert. When a cluster's policy logs Secrets at Request or
 * RequestResponse level, events carry `data`/`stringData` values (and the whole object again in the
 * `kubectl.kubernetes.io/last-applied-configuration` annotation). Each value is replaced by a marker that keeps the
 * key and a short keyed hash, so an analyst still sees which keys changed, and when, without the value.
 *
 * The hash is an HMAC under a per-store key (kept in the store's meta table) so a short hash of a weak password
 * cannot be looked up in a precomputed table.
 */
export interface RedactionOptions {
  enabled: boolean;
  key: Buffer;
}

export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
const MARKER_PREFIX = 'kaudit:redacted';

export function newRedactionKey(): Buffer {
  return randomBytes(32);
}

export function redactionMarker(value: unknown, key: Buffer): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value ?? null);
  const h = createHmac('sha256', key).update(text).digest('hex').slice(0, 12);
  return `${MARKER_PREFIX}:hmac-sha256:${h}:len=${text.length}`;
}

export function isRedactionMarker(v: unknown): boolean {
  return typeof v === 'string' && v.startsWith(MARKER_PREFIX + ':');
}

function redactMap(m: unknown, key: Buffer): boolean {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return false;
  const o = m as Record<string, unknown>;
  let changed = false;
  for (const k of Object.keys(o)) {
    if (isRedactionMarker(o[k])) continue;
    o[k] = redactionMarker(o[k], key);
    changed = true;
  }
  return changed;
}

/** Redacts a Secret-shaped object (or a merge patch of one) in place. Returns whether anything changed. */
function redactSecretObject(obj: Record<string, unknown>, key: Buffer): boolean {
  let changed = redactMap(obj.data, key);
  changed = redactMap(obj.stringData, key) || changed;
  const md = obj.metadata as Record<string, unknown> | undefined;
  const ann = md && typeof md === 'object' ? (md.annotations as Record<string, unknown> | undefined) : undefined;
  if (ann && typeof ann === 'object' && typeof ann[LAST_APPLIED] === 'string' && !isRedactionMarker(ann[LAST_APPLIED])) {
    ann[LAST_APPLIED] = redactionMarker(ann[LAST_APPLIED], key);
    changed = true;
  }
  return changed;
}

/** JSON patch operations on /data/..., /stringData/... or the last-applied annotation. */
function redactJsonPatch(ops: unknown[], key: Buffer): boolean {
  let changed = false;
  for (const op of ops) {
    if (typeof op !== 'object' || op === null) continue;
    const o = op as Record<string, unknown>;
    if (typeof o.path !== 'string' || !('value' in o) || isRedactionMarker(o.value)) continue;
    const p = o.path;
    if (p === '/data' || p === '/stringData' || p.startsWith('/data/') || p.startsWith('/stringData/') || p.includes('last-applied-configuration')) {
      if (typeof o.value === 'object' && o.value !== null && !Array.isArray(o.value) && (p === '/data' || p === '/stringData')) {
        changed = redactMap(o.value, key) || changed;
      } else {
        o.value = redactionMarker(o.value, key);
        changed = true;
      }
    } else if (p === '' || p === '/') {
      if (typeof o.value === 'object' && o.value !== null) changed = redactSecretObject(o.value as Record<string, unknown>, key) || changed;
    }
  }
  return changed;
}

function isSecretKind(o: unknown): o is Record<string, unknown> {
  return typeof o === 'object' && o !== null && (o as Record<string, unknown>).kind === 'Secret';
}

function redactBody(body: unknown, aboutSecrets: boolean, key: Buffer): boolean {
  if (typeof body !== 'object' || body === null) return false;
  if (Array.isArray(body)) return aboutSecrets ? redactJsonPatch(body, key) : false;
  const o = body as Record<string, unknown>;
  if (o.kind === 'SecretList' || (aboutSecrets && Array.isArray(o.items))) {
    let changed = false;
    for (const it of (o.items as unknown[]) ?? []) {
      if (typeof it === 'object' && it !== null) changed = redactSecretObject(it as Record<string, unknown>, key) || changed;
    }
    return changed;
  }
  if (isSecretKind(o) || aboutSecrets) return redactSecretObject(o, key);
  return false;
}

/**
 * Redacts secret values in place. Returns true when the event was changed (its JSON text must then be re-serialised).
 * Applies to events about the core `secrets` resource and to any request/response body whose kind is Secret or
 * SecretList (a Secret can ride inside other requests, e.g. a dry-run or an aggregated API).
 */
export function redactEvent(ev: AuditEvent, opts: RedactionOptions): boolean {
  if (!opts.enabled) return false;
  const ref = ev.objectRef;
  const aboutSecrets = !!ref && ref.resource === 'secrets' && (ref.apiGroup === undefined || ref.apiGroup === '') && !ref.subresource;
  let changed = false;
  if (ev.requestObject !== undefined && (aboutSecrets || mayHoldSecret(ev.requestObject)))
    changed = redactBody(ev.requestObject, aboutSecrets, opts.key) || changed;
  if (ev.responseObject !== undefined && (aboutSecrets || mayHoldSecret(ev.responseObject)))
    changed = redactBody(ev.responseObject, aboutSecrets, opts.key) || changed;
  return changed;
}

function mayHoldSecret(o: unknown): boolean {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return false;
  const k = (o as Record<string, unknown>).kind;
  return k === 'Secret' || k === 'SecretList';
}

/** Longest part of a record kept when it cannot be parsed (and so cannot be redacted). */
export const UNPARSED_KEEP_BYTES = 1024;

/**
 * What a dead-letter record keeps of bad input. Bad input can still carry secret values (an event missing a field,
 * an EventList with one bad item), so JSON is redacted like an event wherever it holds request or response bodies;
 * text that is not JSON at all cannot be redacted and only its first KiB is kept, enough to see what is wrong.
 */
export function deadLetterData(text: string | Buffer | undefined, value: unknown, opts: RedactionOptions): string | undefined {
  // JSON nested deeper than the stack allows cannot be cloned or serialised again, so it cannot be redacted either:
  // only a note is kept (unlike text that is not JSON, it parsed, and may be a Secret).
  const tooDeep = () => `[JSON nested too deeply to redact${text !== undefined ? ` (${text.length} characters)` : ''}: not kept]`;
  if (!opts.enabled) {
    if (text !== undefined) return text.toString();
    if (value === undefined) return undefined;
    try {
      return JSON.stringify(value);
    } catch {
      return '[a value nested too deeply to serialise: not kept]';
    }
  }
  let v = value;
  if (v === undefined && text !== undefined) {
    try {
      v = JSON.parse(text.toString());
    } catch {
      return firstPart(text.toString(), 'not JSON');
    }
  } else if (v !== undefined) {
    try {
      v = structuredClone(v);
    } catch {
      return tooDeep();
    }
  }
  const walk = (x: unknown, depth: number): void => {
    if (depth > 4 || typeof x !== 'object' || x === null) return;
    if (Array.isArray(x)) {
      for (const it of x) walk(it, depth + 1);
      return;
    }
    const o = x as Record<string, unknown>;
    if ('requestObject' in o || 'responseObject' in o) redactEvent(o as unknown as AuditEvent, opts);
    else if (o.kind === 'Secret' || o.kind === 'SecretList') redactEvent({ responseObject: o } as unknown as AuditEvent, opts);
    if (Array.isArray(o.items)) walk(o.items, depth + 1);
  };
  walk(v, 0);
  try {
    return JSON.stringify(v);
  } catch {
    return tooDeep();
  }
}

/** The first KiB of text that cannot be kept whole, saying why. */
function firstPart(t: string, why: string): string {
  return t.length > UNPARSED_KEEP_BYTES ? t.slice(0, UNPARSED_KEEP_BYTES) + `... [${t.length} characters, ${why}: the rest is not kept]` : t;
}
