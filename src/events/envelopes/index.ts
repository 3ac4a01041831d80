import { aks } from './aks.js';
import { isObject } from './common.js';
import { eks } from './eks.js';
import { forwarder } from './forwarder.js';
import { gke } from './gke.js';
import type { Envelope } from './types.js';

export type { Envelope, EnvelopeItem } from './types.js';

/**
 * The envelopes a record is unwrapped from, tried in this order on a record that is not a native audit event, an
 * EventList or an array. Shapes are disjoint by construction (each needs fields the others' lack); EKS is tried before
 * the forwarders because a CloudWatch log event also has a `message`.
 */
export const ENVELOPES: readonly Envelope[] = [eks, gke, aks, forwarder];

/** `--format` values: `auto` (by shape, the default), `native` (no envelope), or an envelope's name. */
export const FORMATS = ['auto', 'native', ...ENVELOPES.map((e) => e.name)] as const;
export type Format = string;

export function isFormat(s: string): boolean {
  return (FORMATS as readonly string[]).includes(s);
}

export function envelopeNamed(name: string): Envelope | undefined {
  return ENVELOPES.find((e) => e.name === name);
}

/**
 * A native audit value: an Event, an EventList or an array of events. Checked first and cheaply: it is what almost
 * every record is, and it must not pay for the envelopes' shape tests.
 */
export function isNativeShape(v: unknown): boolean {
  if (Array.isArray(v)) return true;
  if (!isObject(v)) return true; // not an object: the native checks give the error
  const k = v.kind;
  if (k === 'Event' || k === 'EventList') return true;
  const av = v.apiVersion;
  return typeof av === 'string' && av.startsWith('audit.k8s.io/');
}

/** The envelope of a record that is not native, by shape; undefined when none matches. */
export function findEnvelope(v: unknown): Envelope | undefined {
  for (const e of ENVELOPES) if (e.matches(v)) return e;
  return undefined;
}
