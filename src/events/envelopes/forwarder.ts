import { isObject } from './common.js';
import type { Envelope } from './types.js';

/**
 * What log forwarders post when they ship a self-managed cluster's audit.log: each record holds one line of the log,
 * under `log` (Fluent Bit's tail input), `message` (Vector's file source, Logstash's file input) or `event.original`
 * (Logstash in ECS mode), as text or, when the forwarder parsed it, as an object. (A forwarder that parsed the line
 * into the record itself sends the event, with a few fields of its own: that is a native event.) Arrays and NDJSON
 * bodies are split into records before this (the document reader, the forwarder endpoint).
 */

const KEYS = ['log', 'message'] as const;

function looksLikeEvent(v: unknown): boolean {
  if (typeof v === 'string') {
    // JSON text of an object, possibly with the newline the line had.
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
      return c === 0x7b;
    }
    return false;
  }
  return isObject(v) && (v.kind === 'Event' || typeof v.auditID === 'string');
}

function inner(o: Record<string, unknown>): { value: unknown; key: string } | undefined {
  for (const k of KEYS) if (looksLikeEvent(o[k])) return { value: o[k], key: k };
  if (isObject(o.event) && looksLikeEvent(o.event.original)) return { value: o.event.original, key: 'event.original' };
  return undefined;
}

export const forwarder: Envelope = {
  name: 'forwarder',
  matches(v) {
    return isObject(v) && v.kind === undefined && v.auditID === undefined && inner(v) !== undefined;
  },
  unwrap(v) {
    const i = isObject(v) ? inner(v) : undefined;
    if (!i) return [{ error: 'forwarder record holds no audit event under log, message or event.original' }];
    const value = typeof i.value === 'string' ? i.value.trim() : i.value;
    return [{ value, where: i.key }];
  },
};
