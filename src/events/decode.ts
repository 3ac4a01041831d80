/**
 * The one decoder, used by every source: from a raw record (a line, a document, an item a source split out of a
 * stream) to validated audit Events. toAuditEvent is the validation of one value; Decoder adds JSON parsing, the
 * envelope of each record (envelopes/) and EventList item inheritance.
 */
import { apiVersionProblem, isAuditApiVersion } from './api-version.js';
import { ENVELOPES, type Envelope, type EnvelopeItem } from './envelopes/index.js';
import { inheritItem, inheritText } from './envelopes/native.js';
import { BadInputError } from './errors.js';
import type { RawRecord } from './record.js';
import { parseMicros } from './time.js';
import { LEVELS, STAGES, type AuditEvent } from './types.js';

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
  if (o.apiVersion !== undefined && !isAuditApiVersion(o.apiVersion)) {
    throw new BadInputError(`not an audit event: ${apiVersionProblem(o.apiVersion)}`);
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

/** What a record decodes to: an event (with its stored text when that is its own one-line JSON), or why not. */
export type DecodedItem = { event: AuditEvent; text?: string; cluster?: string } | { error: string };

export interface DecoderOptions {
  /** Envelopes to choose from, by shape (default: all that kaudit knows). */
  envelopes?: readonly Envelope[];
  /** Decode every record with this envelope only (a source's `format`): a record of another shape is bad input. */
  format?: string;
}

function hasLineBreak(text: string): boolean {
  return text.includes('\n') || text.includes('\r');
}

/**
 * The one decoder from a raw record to audit Events, used by every source: JSON parsing, the envelope of each record
 * (chosen by shape, or forced), EventList item inheritance, validation. Bad input becomes an error entry with a
 * one-line reason; it never throws on a record.
 */
export class Decoder {
  private readonly envelopes: readonly Envelope[];
  private readonly forced: Envelope | undefined;

  constructor(o: DecoderOptions = {}) {
    this.envelopes = o.envelopes ?? ENVELOPES;
    if (o.format !== undefined) {
      this.forced = this.envelopes.find((e) => e.name === o.format);
      if (!this.forced) throw new Error(`unknown format "${o.format}": expected one of ${this.envelopes.map((e) => e.name).join(', ')}`);
    }
  }

  decode(r: RawRecord): DecodedItem[] {
    if (r.error !== undefined) return [{ error: r.error }];
    // Read once: a LineRecord decodes its text on each read.
    const raw = r.text;
    const text = typeof raw === 'string' || raw === undefined ? raw : raw.toString('utf8');
    let v: unknown;
    try {
      v = r.value !== undefined ? r.value : parseJson(text ?? '');
    } catch (e) {
      if (e instanceof BadInputError) return [{ error: e.reason }];
      throw e;
    }
    const oneLine = text !== undefined && (r.line === true || !hasLineBreak(text));
    if (r.list !== undefined) return [this.listItem(v, oneLine ? text : undefined, r.list.apiVersion, r.list.error)];
    // The common case, one native event a line: no envelope to look for.
    if (this.forced === undefined && typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'Event') {
      return [validate(v, oneLine ? text : undefined)];
    }
    if (Array.isArray(v)) {
      // A sequence of records, each decoded as if it came alone (streamed files and bodies split arrays so too).
      const out: DecodedItem[] = [];
      for (let i = 0; i < v.length; i++) {
        const el = v[i];
        if (Array.isArray(el)) out.push({ error: `element ${i}: not an audit record: an array inside an array` });
        else for (const d of this.unwrap(el, undefined)) out.push(d);
      }
      return out;
    }
    return this.unwrap(v, oneLine ? text : undefined);
  }

  /** An item a source split out of an EventList: it takes the list's kind and apiVersion, in its value and text. */
  private listItem(v: unknown, text: string | undefined, apiVersion: string, listError: string | undefined): DecodedItem {
    if (listError !== undefined) return { error: listError };
    const item = inheritItem(v, apiVersion);
    if (item === v) return validate(v, text);
    return validate(item, text === undefined ? undefined : inheritText(v as Record<string, unknown>, text, apiVersion));
  }

  /** One record (not an array) through its envelope; `text` is kept for an event that is the record itself. */
  private unwrap(v: unknown, text: string | undefined): DecodedItem[] {
    const env = this.forced ?? this.envelopes.find((e) => e.matches(v));
    if (env === undefined) return [{ error: noEnvelope(v, this.envelopes) }];
    if (this.forced !== undefined && !env.matches(v)) return [{ error: `not a ${env.name} record (the source reads format ${env.name} only)` }];
    let items: EnvelopeItem[];
    try {
      items = env.unwrap(v);
    } catch (e) {
      return [{ error: `cannot unwrap this ${env.name} record: ${(e as Error).message.split('\n')[0]}` }];
    }
    const out: DecodedItem[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const at = it.where !== undefined ? `${it.where}: ` : '';
      if ('error' in it) {
        out[i] = { error: at + it.error };
        continue;
      }
      const d = validate(it.value, it.value === v ? text : undefined);
      if ('error' in d) d.error = at + d.error;
      else if (it.cluster !== undefined) d.cluster = it.cluster;
      out[i] = d;
    }
    return out;
  }
}

function validate(v: unknown, text: string | undefined): DecodedItem {
  try {
    return { event: toAuditEvent(v), text };
  } catch (e) {
    if (e instanceof BadInputError) return { error: e.reason };
    throw e;
  }
}

function noEnvelope(v: unknown, envelopes: readonly Envelope[]): string {
  const others = envelopes.filter((e) => e.name !== 'native').map((e) => e.name);
  const nor = others.length > 0 ? `, nor a record of ${others.join(', ')}` : '';
  if (typeof v !== 'object' || v === null) return `not an audit event: expected a JSON object, got ${typeName(v)}${nor}`;
  return `not an audit event: neither kind "Event" nor an audit.k8s.io apiVersion${nor}`;
}

const defaultDecoder = new Decoder();

/** Decodes one record with the default decoder (every envelope, chosen by shape). */
export function decodeRecord(r: RawRecord): DecodedItem[] {
  return defaultDecoder.decode(r);
}
