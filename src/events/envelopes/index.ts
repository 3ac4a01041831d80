import { nativeEnvelope } from './native.js';
import type { Envelope } from './types.js';

/**
 * Every envelope the decoder knows, asked in this order (the first whose `matches` says yes unwraps the record). The
 * native one is last: it takes any Kubernetes-typed object, so more specific shapes go before it.
 */
export const ENVELOPES: readonly Envelope[] = [nativeEnvelope];

/** The envelope a `format` option names, or undefined. */
export function envelopeNamed(name: string, envelopes: readonly Envelope[] = ENVELOPES): Envelope | undefined {
  return envelopes.find((e) => e.name === name);
}

export type { Envelope, EnvelopeItem } from './types.js';
