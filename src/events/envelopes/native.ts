import { apiVersionProblem, DEFAULT_AUDIT_API_VERSION, isAuditApiVersion } from '../api-version.js';
import type { EventListHeader } from '../record.js';
import type { Envelope, EnvelopeItem } from './types.js';

/**
 * The apiserver's own shapes: an Event (a log backend line), or an EventList (the webhook backend's body; `kubectl`-
 * style exports). An EventList's items lack kind and apiVersion as the apiserver sends them, and take the list's.
 */

/**
 * Checks an EventList's kind and apiVersion once, for all its items. Sources that split a list's items out of a
 * stream call this with the list's fields and attach the result to each item (RawRecord.list).
 */
export function eventListHeader(kind: unknown, apiVersion: unknown): EventListHeader {
  if (kind !== undefined && kind !== 'EventList') {
    return {
      apiVersion: DEFAULT_AUDIT_API_VERSION,
      error: `not an audit EventList: a document with an items array has kind ${JSON.stringify(kind)}, expected "EventList"`,
    };
  }
  if (apiVersion === undefined) return { apiVersion: DEFAULT_AUDIT_API_VERSION };
  if (!isAuditApiVersion(apiVersion)) return { apiVersion: DEFAULT_AUDIT_API_VERSION, error: `not an audit EventList: ${apiVersionProblem(apiVersion)}` };
  return { apiVersion };
}

/**
 * An EventList item with the list's kind and apiVersion for those it lacks. A new object with them first, so that the
 * event, its stored text (see inheritText) and a re-serialised copy all read as the apiserver's log backend writes.
 */
export function inheritItem(item: unknown, apiVersion: string): unknown {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return item;
  const o = item as Record<string, unknown>;
  if (o.kind !== undefined && o.apiVersion !== undefined) return item;
  return { kind: o.kind ?? 'Event', apiVersion: o.apiVersion ?? apiVersion, ...o };
}

/**
 * The stored text of an item given the list's fields by inheritItem: the same fields spliced in front. Undefined (so
 * the event is serialised again) when the text is not a one-line object with fields of its own.
 */
export function inheritText(original: Record<string, unknown>, text: string, apiVersion: string): string | undefined {
  const noKind = original.kind === undefined;
  const noVersion = original.apiVersion === undefined;
  if (!noKind && !noVersion) return text;
  if (text.charCodeAt(0) !== 0x7b || Object.keys(original).length === 0) return undefined;
  const fields = noKind
    ? noVersion
      ? `"kind":"Event","apiVersion":${JSON.stringify(apiVersion)},`
      : '"kind":"Event",'
    : `"apiVersion":${JSON.stringify(apiVersion)},`;
  return '{' + fields + text.slice(1);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A list document: kind EventList, or an items array (of whatever kind: refused by its header then, as a streaming
 * reader that meets the array before knowing more does), or items without a kind (null is Go's empty list).
 */
function isList(o: Record<string, unknown>): boolean {
  return o.kind === 'EventList' || Array.isArray(o.items) || (o.kind === undefined && 'items' in o);
}

export const nativeEnvelope: Envelope = {
  name: 'native',
  // Any Kubernetes-typed object (kind or apiVersion set), or a list: the rest is for toAuditEvent to refuse by name.
  matches(v: unknown): boolean {
    return isObject(v) && (v.kind !== undefined || v.apiVersion !== undefined || 'items' in v);
  },
  unwrap(v: unknown): EnvelopeItem[] {
    const o = v as Record<string, unknown>;
    if (!isList(o)) return [{ value: o }];
    const header = eventListHeader(o.kind, o.apiVersion);
    if (header.error !== undefined) return [{ error: header.error }];
    if (o.items === null) return [];
    if (!Array.isArray(o.items)) return [{ error: 'not an audit EventList: its items is not an array' }];
    const out: EnvelopeItem[] = new Array(o.items.length);
    for (let i = 0; i < o.items.length; i++) out[i] = { value: inheritItem(o.items[i], header.apiVersion) };
    return out;
  },
};
