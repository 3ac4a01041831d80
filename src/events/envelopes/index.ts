import { aks } from './aks.js';
import { eks } from './eks.js';
import { forwarder } from './forwarder.js';
import { gke } from './gke.js';
import { nativeEnvelope } from './native.js';
import type { Envelope } from './types.js';

/**
 * Every envelope the decoder knows, asked in this order (the first whose `matches` says yes unwraps the record); a
 * record of the native shape (an Event, an EventList) is given to native at once, without asking the others. The
 * cloud shapes are disjoint by construction (each needs fields the others lack); EKS goes before the forwarders
 * because a CloudWatch log event also has a `message`. Native is last: it takes any Kubernetes-typed object.
 */
export const ENVELOPES: readonly Envelope[] = [eks, gke, aks, forwarder, nativeEnvelope];

/** The `format` values a set of envelopes allows: `auto` (by shape), then the envelopes' names, native first. */
export function formatsOf(envelopes: readonly Envelope[]): string[] {
  const names = envelopes.map((e) => e.name);
  return ['auto', ...names.filter((n) => n === 'native'), ...names.filter((n) => n !== 'native')];
}

/** `--format`, `kafka.format` and a source's format: auto, native, eks, gke, aks, forwarder. */
export const FORMATS: readonly string[] = formatsOf(ENVELOPES);

export function isFormat(s: string): boolean {
  return FORMATS.includes(s);
}

/** The envelope a `format` option names, or undefined. */
export function envelopeNamed(name: string, envelopes: readonly Envelope[] = ENVELOPES): Envelope | undefined {
  return envelopes.find((e) => e.name === name);
}

/** The cloud or forwarder envelope of a record by its shape (never native); undefined when none matches. */
export function findEnvelope(v: unknown): Envelope | undefined {
  for (const e of ENVELOPES) if (e !== nativeEnvelope && e.matches(v)) return e;
  return undefined;
}

export type { Envelope, EnvelopeItem } from './types.js';
