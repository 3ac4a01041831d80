import { BadInputError } from './errors.js';
import { parseMicros } from './time.js';
import { LEVELS, STAGES, type AuditEvent } from './types.js';

// Checked with comparisons rather than Set lookups: these run once per event, on strings fresh from JSON.parse.
function isAuditApiVersion(v: string): boolean {
  return v === 'audit.k8s.io/v1' || v === 'audit.k8s.io/v1beta1' || v === 'audit.k8s.io/v1alpha1';
}

function isStage(v: string): boolean {
  return v === 'ResponseComplete' || v === 'RequestReceived' || v === 'ResponseStarted' || v === 'Panic';
}

function isLevel(v: string): boolean {
  return v === 'Metadata' || v === 'Request' || v === 'RequestResponse' || v === 'None';
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/**
 * Checks that a parsed JSON value is an audit Event and returns it typed. Throws BadInputError naming the first field
 * that is missing or of the wrong type. Old v1beta1 logs may lack apiVersion; `kind: Event` is enough then.
 */
export function toAuditEvent(v: unknown): AuditEvent {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new BadInputError(`not an audit event: expected a JSON object, got ${typeName(v)}`);
  }
  const o = v as Record<string, unknown>;
  if (o.kind !== undefined && o.kind !== 'Event') {
    throw new BadInputError(`not an audit event: kind is ${JSON.stringify(o.kind)}, expected "Event"`);
  }
  if (o.apiVersion !== undefined && (typeof o.apiVersion !== 'string' || !isAuditApiVersion(o.apiVersion))) {
    throw new BadInputError(`not an audit event: apiVersion ${JSON.stringify(o.apiVersion)} is not audit.k8s.io/v1 or v1beta1`);
  }
  if (o.kind === undefined && o.apiVersion === undefined) {
    throw new BadInputError('not an audit event: neither kind "Event" nor an audit.k8s.io apiVersion');
  }
  if (typeof o.auditID !== 'string' || typeof o.requestURI !== 'string' || typeof o.verb !== 'string' || typeof o.requestReceivedTimestamp !== 'string') {
    for (const f of ['auditID', 'requestURI', 'verb', 'requestReceivedTimestamp'] as const) {
      if (typeof o[f] !== 'string') {
        throw new BadInputError(o[f] === undefined ? `audit event lacks ${f}` : `audit event field ${f} must be a string, got ${typeName(o[f])}`);
      }
    }
  }
  if ((o.auditID as string).length === 0) throw new BadInputError('audit event has an empty auditID');
  if (typeof o.stage !== 'string' || !isStage(o.stage)) {
    throw new BadInputError(o.stage === undefined ? 'audit event lacks stage' : `audit event stage ${JSON.stringify(o.stage)} is not one of ${STAGES.join(', ')}`);
  }
  if (typeof o.level !== 'string' || !isLevel(o.level)) {
    throw new BadInputError(o.level === undefined ? 'audit event lacks level' : `audit event level ${JSON.stringify(o.level)} is not one of ${LEVELS.join(', ')}`);
  }
  if (typeof o.user !== 'object' || o.user === null || Array.isArray(o.user)) {
    throw new BadInputError(o.user === undefined ? 'audit event lacks user' : `audit event field user must be an object, got ${typeName(o.user)}`);
  }
  const u = o.user as Record<string, unknown>;
  if (u.username !== undefined && typeof u.username !== 'string') throw new BadInputError(`audit event user.username must be a string, got ${typeName(u.username)}`);
  if (u.groups !== undefined && !isStringArray(u.groups)) throw new BadInputError('audit event user.groups must be an array of strings');
  // The impersonated user is indexed like the user; null (a Go nil pointer written out) is no impersonation.
  if (o.impersonatedUser !== undefined && o.impersonatedUser !== null) {
    const iu = o.impersonatedUser as Record<string, unknown>;
    if (typeof iu !== 'object' || Array.isArray(iu)) throw new BadInputError(`audit event field impersonatedUser must be an object, got ${typeName(iu)}`);
    if (iu.username !== undefined && typeof iu.username !== 'string') throw new BadInputError(`audit event impersonatedUser.username must be a string, got ${typeName(iu.username)}`);
    if (iu.groups !== undefined && !isStringArray(iu.groups)) throw new BadInputError('audit event impersonatedUser.groups must be an array of strings');
  }
  if (o.sourceIPs !== undefined && !isStringArray(o.sourceIPs)) throw new BadInputError('audit event sourceIPs must be an array of strings');
  if (o.userAgent !== undefined && typeof o.userAgent !== 'string') throw new BadInputError(`audit event userAgent must be a string, got ${typeName(o.userAgent)}`);
  if (o.objectRef !== undefined && (typeof o.objectRef !== 'object' || o.objectRef === null || Array.isArray(o.objectRef))) {
    throw new BadInputError(`audit event objectRef must be an object, got ${typeName(o.objectRef)}`);
  }
  if (o.objectRef) {
    const r = o.objectRef as Record<string, unknown>;
    for (const f of ['resource', 'namespace', 'name', 'apiGroup', 'apiVersion', 'subresource'] as const) {
      if (r[f] !== undefined && typeof r[f] !== 'string') throw new BadInputError(`audit event objectRef.${f} must be a string, got ${typeName(r[f])}`);
    }
  }
  if (o.responseStatus !== undefined) {
    const rs = o.responseStatus as Record<string, unknown> | null;
    if (typeof rs !== 'object' || rs === null || Array.isArray(rs)) throw new BadInputError('audit event responseStatus must be an object');
    if (rs.code !== undefined && typeof rs.code !== 'number') throw new BadInputError(`audit event responseStatus.code must be a number, got ${typeName(rs.code)}`);
    // An HTTP status (the apiserver writes an int32): anything else cannot be stored or queried as one.
    if (rs.code !== undefined && (!Number.isInteger(rs.code) || (rs.code as number) < 0 || (rs.code as number) > 999)) {
      throw new BadInputError(`audit event responseStatus.code ${String(rs.code)} is not an HTTP status code`);
    }
  }
  if (o.annotations !== undefined && (typeof o.annotations !== 'object' || o.annotations === null || Array.isArray(o.annotations))) {
    throw new BadInputError('audit event annotations must be an object');
  }
  const us = parseMicros(o.requestReceivedTimestamp as string);
  if (Number.isNaN(us)) {
    throw new BadInputError(`audit event requestReceivedTimestamp ${JSON.stringify(o.requestReceivedTimestamp)} is not an RFC 3339 time`);
  }
  // Microseconds since 1970 are exact in a double until June 2255; before 1970 there were no apiservers.
  if (us < 0 || !Number.isSafeInteger(us)) {
    throw new BadInputError(`audit event requestReceivedTimestamp ${JSON.stringify(o.requestReceivedTimestamp)} is outside 1970 to 2255`);
  }
  return o as unknown as AuditEvent;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** A decoded document: the events it holds (an Event, an EventList's items, or an array's elements). */
export function isEventList(v: unknown): v is { items: unknown[] } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return o.kind === 'EventList' || (Array.isArray(o.items) && typeof o.apiVersion === 'string' && o.apiVersion.startsWith('audit.k8s.io/'));
}

/**
 * Splits a parsed JSON document into its event values. Events are not validated here (each is validated alone, so one
 * bad item does not reject its siblings).
 */
export function documentItems(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  if (isEventList(v)) {
    if (!Array.isArray(v.items)) throw new BadInputError('EventList has no items array');
    // The apiserver's webhook and EventList files leave kind and apiVersion off the items: they inherit the list's.
    const apiVersion = (v as { apiVersion?: unknown }).apiVersion;
    for (const it of v.items) {
      if (typeof it !== 'object' || it === null || Array.isArray(it)) continue;
      const o = it as Record<string, unknown>;
      if (o.kind === undefined && o.apiVersion === undefined) {
        o.kind = 'Event';
        if (typeof apiVersion === 'string') o.apiVersion = apiVersion;
      }
    }
    return v.items;
  }
  return [v];
}

/** Parses JSON text, turning a syntax error into a one-line BadInputError. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    const preview = text.length > 60 ? text.slice(0, 60) + '...' : text;
    throw new BadInputError(`not JSON (${msg}): ${JSON.stringify(preview)}`);
  }
}
