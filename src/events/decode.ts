/**
 * The one decoder, used by every source: from a raw record (a line, a document, an item a source split out of a
 * stream) to validated audit Events. toAuditEvent is the validation of one value; Decoder adds JSON parsing, the
 * envelope of each record (envelopes/) and EventList item inheritance.
 */
import { apiVersionProblem, isAuditApiVersion } from './api-version.js';
import { gunzip, EnvelopeError, isGzip } from './envelopes/common.js';
import { ENVELOPES, formatsOf, type Envelope, type EnvelopeItem } from './envelopes/index.js';
import { inheritItem, inheritText } from './envelopes/native.js';
import { BadInputError } from './errors.js';
import { aboutSecrets, withoutBodies } from './lazy-bodies.js';
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
    throw new BadInputError(
      o.stage === undefined ? 'audit event lacks stage' : `audit event stage ${JSON.stringify(o.stage)} is not one of ${STAGES.join(', ')}`,
    );
  }
  if (typeof o.level !== 'string' || !isLevel(o.level)) {
    throw new BadInputError(
      o.level === undefined ? 'audit event lacks level' : `audit event level ${JSON.stringify(o.level)} is not one of ${LEVELS.join(', ')}`,
    );
  }
  if (typeof o.user !== 'object' || o.user === null || Array.isArray(o.user)) {
    throw new BadInputError(o.user === undefined ? 'audit event lacks user' : `audit event field user must be an object, got ${typeName(o.user)}`);
  }
  const u = o.user as Record<string, unknown>;
  if (u.username !== undefined && typeof u.username !== 'string')
    throw new BadInputError(`audit event user.username must be a string, got ${typeName(u.username)}`);
  if (u.groups !== undefined && !isStringArray(u.groups)) throw new BadInputError('audit event user.groups must be an array of strings');
  // The impersonated user is indexed like the user; null (a Go nil pointer written out) is no impersonation.
  if (o.impersonatedUser !== undefined && o.impersonatedUser !== null) {
    const iu = o.impersonatedUser as Record<string, unknown>;
    if (typeof iu !== 'object' || Array.isArray(iu)) throw new BadInputError(`audit event field impersonatedUser must be an object, got ${typeName(iu)}`);
    if (iu.username !== undefined && typeof iu.username !== 'string')
      throw new BadInputError(`audit event impersonatedUser.username must be a string, got ${typeName(iu.username)}`);
    if (iu.groups !== undefined && !isStringArray(iu.groups)) throw new BadInputError('audit event impersonatedUser.groups must be an array of strings');
  }
  if (o.sourceIPs !== undefined && !isStringArray(o.sourceIPs)) throw new BadInputError('audit event sourceIPs must be an array of strings');
  if (o.userAgent !== undefined && typeof o.userAgent !== 'string')
    throw new BadInputError(`audit event userAgent must be a string, got ${typeName(o.userAgent)}`);
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
    if (rs.code !== undefined && typeof rs.code !== 'number')
      throw new BadInputError(`audit event responseStatus.code must be a number, got ${typeName(rs.code)}`);
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

/**
 * What a record decodes to: an event (with its stored text when that is its own one-line JSON, the cluster and the
 * name of the envelope it came in, and where inside the record it was), or why not.
 */
export type DecodedItem =
  | {
      event: AuditEvent;
      text?: string;
      cluster?: string;
      envelope?: string;
      where?: string;
      /** Parsed without its bodies (lazy-bodies.ts): each body is `{}`; parse `text` for the event in full. */
      partial?: true;
    }
  | { error: string; envelope?: string; where?: string };

export interface DecoderOptions {
  /** Envelopes to choose from, by shape (default: all that kaudit knows). */
  envelopes?: readonly Envelope[];
  /**
   * `auto` (the default): each record's envelope by its shape; `native` or an envelope's name: every record is read
   * with that one only (a source's `format`), and a record of another shape is bad input.
   */
  format?: string;
}

function hasLineBreak(text: string): boolean {
  return text.includes('\n') || text.includes('\r');
}

/**
 * The one decoder from a raw record to audit Events, used by every source: gunzipping, JSON parsing, the envelope of
 * each record (chosen by shape, or forced), EventList item inheritance, validation. Bad input becomes an error entry
 * with a one-line reason; it never throws on a record.
 */
export class Decoder {
  private readonly envelopes: readonly Envelope[];
  private readonly forced: Envelope | undefined;
  private readonly native: Envelope | undefined;
  /** Names of the envelopes other than native, for the reason a record of none of them is refused. */
  private readonly others: string;

  constructor(o: DecoderOptions = {}) {
    this.envelopes = o.envelopes ?? ENVELOPES;
    this.native = this.envelopes.find((e) => e.name === 'native');
    this.others = this.envelopes
      .filter((e) => e.name !== 'native')
      .map((e) => e.name)
      .join(', ');
    if (o.format !== undefined && o.format !== 'auto') {
      this.forced = this.envelopes.find((e) => e.name === o.format);
      if (!this.forced) throw new Error(`unknown format "${o.format}": expected one of ${formatsOf(this.envelopes).join(', ')}`);
    }
  }

  /**
   * `lazy`: a large one-line native event may come back parsed without its bodies (`partial`), for a caller that
   * parses it in full when it needs them (see lazy-bodies.ts).
   */
  decode(r: RawRecord, lazy = false): DecodedItem[] {
    if (r.error !== undefined) return [{ error: r.error }];
    // Read once: a LineRecord decodes its text on each read.
    let raw = r.text;
    // A gzipped record (a CloudWatch Logs subscription payload as Kinesis or a queue carries it).
    if (raw !== undefined && typeof raw !== 'string' && isGzip(raw)) {
      try {
        raw = gunzip(raw, 'record');
      } catch (e) {
        if (e instanceof EnvelopeError) return [{ error: e.message }];
        throw e;
      }
    }
    const text = typeof raw === 'string' || raw === undefined ? raw : raw.toString('utf8');
    if (lazy && r.value === undefined && r.list === undefined && this.forced === undefined && text !== undefined && !hasLineBreak(text)) {
      const head = withoutBodies(text);
      if (head !== undefined) {
        let h: unknown;
        try {
          h = JSON.parse(head);
        } catch {
          h = undefined;
        }
        // Anything but a valid event not about Secrets is decoded as before, in full, with the same outcome.
        if (typeof h === 'object' && h !== null && (h as { kind?: unknown }).kind === 'Event' && !aboutSecrets(h)) {
          const d = validate(h, text);
          if ('event' in d) {
            d.partial = true;
            return [d];
          }
        }
      }
    }
    let v: unknown;
    try {
      v = r.value !== undefined ? r.value : parseJson(text ?? '');
    } catch (e) {
      if (e instanceof BadInputError) return [{ error: e.reason }];
      throw e;
    }
    const oneLine = text !== undefined && (r.line === true || !hasLineBreak(text));
    if (r.list !== undefined) {
      if (this.forced !== undefined && this.forced !== this.native) return [this.notForced(this.forced, v)];
      return [this.listItem(v, oneLine ? text : undefined, r.list.apiVersion, r.list.error)];
    }
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

  private notForced(env: Envelope, v: unknown): DecodedItem {
    return { error: `${env.name}: not a record of this format (the source reads format ${env.name} only): ${describeShape(v)}`, envelope: env.name };
  }

  /** The envelope of a record (not an array) by its shape: a native-looking one at once, else the first that matches. */
  private envelopeOf(v: unknown): Envelope | undefined {
    if (this.native !== undefined && isNativeShape(v)) return this.native;
    for (const e of this.envelopes) if (e.matches(v)) return e;
    return undefined;
  }

  /** One record (not an array) through its envelope; `text` is kept for an event that is the record itself. */
  private unwrap(v: unknown, text: string | undefined): DecodedItem[] {
    const forced = this.forced;
    if (forced !== undefined && forced === this.native) {
      // Native only: whatever this is, it is read as an audit event or list, and refused by name if it is not one.
      if (typeof v !== 'object' || v === null || !forced.matches(v)) return [validate(v, text)];
    } else if (forced !== undefined && !forced.matches(v)) return [this.notForced(forced, v)];
    const env = forced ?? this.envelopeOf(v);
    // Not an object at all: refused by the native checks, with their reason.
    if (env !== undefined && env === this.native && !env.matches(v)) return [validate(v, text)];
    if (env === undefined) {
      const d = validate(v, text);
      if ('error' in d && typeof v === 'object' && v !== null && this.others !== '') d.error += `; nor a record of any envelope (${this.others})`;
      return [d];
    }
    const name = env === this.native ? undefined : env.name;
    let items: EnvelopeItem[];
    try {
      items = env.unwrap(v);
    } catch (e) {
      const d: DecodedItem = { error: `cannot unwrap this ${env.name} record: ${(e as Error).message.split('\n')[0]}` };
      if (name !== undefined) d.envelope = name;
      return [d];
    }
    const out: DecodedItem[] = new Array(items.length);
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      let d: DecodedItem;
      if ('error' in it) d = { error: it.error };
      else if (typeof it.value === 'string' && name !== undefined) {
        // An envelope's item that is the event's JSON text (a CloudWatch message, an AKS properties.log, a forwarder's
        // log line): parsed here, and kept as the event's stored form when it is one line, byte for byte.
        let value: unknown;
        try {
          value = JSON.parse(it.value);
        } catch (e) {
          value = e;
        }
        d =
          value instanceof SyntaxError
            ? { error: `event text is not JSON (${value.message.split('\n')[0]})` }
            : validate(value, hasLineBreak(it.value) ? undefined : it.value);
      } else d = validate(it.value, it.value === v ? text : undefined);
      if ('error' in d) {
        if (name !== undefined) d.error = `${name}: ${d.error}`;
      } else if (!('error' in it) && it.cluster !== undefined) d.cluster = it.cluster;
      if (name !== undefined) d.envelope = name;
      if (it.where !== undefined) d.where = it.where;
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

/**
 * A native audit value: an Event, an EventList, or not an object at all (the native checks give the error). Checked
 * first and cheaply: it is what almost every record is, and it must not pay for the envelopes' shape tests.
 */
export function isNativeShape(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return true;
  const o = v as Record<string, unknown>;
  const k = o.kind;
  if (k === 'Event' || k === 'EventList') return true;
  const av = o.apiVersion;
  return typeof av === 'string' && av.startsWith('audit.k8s.io/');
}

function describeShape(v: unknown): string {
  if (typeof v !== 'object' || v === null) return `a JSON ${v === null ? 'null' : typeof v}`;
  if (Array.isArray(v)) return 'a JSON array';
  const keys = Object.keys(v);
  return `an object with keys ${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', ...' : ''}`;
}

const decoders = new Map<string, Decoder>();

/** kaudit's decoder for a format (`auto` when not given), made once; an unknown format throws, naming the known ones. */
export function decoderFor(format: string | undefined): Decoder {
  const f = format ?? 'auto';
  let d = decoders.get(f);
  if (!d) decoders.set(f, (d = new Decoder({ format: f })));
  return d;
}

/** Decodes one record with kaudit's decoder: every envelope, chosen by shape (`auto`), or the one `format` names. */
export function decodeRecord(r: RawRecord, format?: string): DecodedItem[] {
  return decoderFor(format).decode(r);
}
