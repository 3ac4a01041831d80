import type { Stage } from '../events/types.js';

// The declarative part of a rule, apart from the rule reader (rule.ts) so that the matcher (match.ts) can name it
// without importing the reader, which imports the matcher's helpers back.

/** Include/exclude patterns for one field; a plain list means include. */
export interface FieldFilter {
  include?: string[];
  exclude?: string[];
}

export const IDENTITIES = ['any', 'person', 'non-system', 'system', 'service-account', 'anonymous'] as const;
export type Identity = (typeof IDENTITIES)[number];

/** The declarative part of a rule: compiled into the candidate index and cheap checks, run before any JSONata. */
export interface MatchSpec {
  verbs?: string[];
  /** `pods`, `pods/exec`, `deployments.apps`, `pods/*`, `*` (any resource), `*.apps`. Absent = any request. */
  resources?: string[];
  /** Non-resource paths: exact, or a trailing `*` prefix (`/debug/*`). */
  nonResourceURLs?: string[];
  /** Default [ResponseComplete]. */
  stages?: Stage[];
  users?: FieldFilter;
  groups?: FieldFilter;
  namespaces?: FieldFilter;
  names?: FieldFilter;
  userAgents?: FieldFilter;
  /** The request path without its query (`/healthz`, `/api/v1/nodes/n1/proxy/metrics`). */
  paths?: FieldFilter;
  /**
   * Who did it: a person (not a `system:` identity), anyone but a system identity, a system identity, a service
   * account, or an unauthenticated caller (system:anonymous or the system:unauthenticated group).
   */
  identity?: Identity;
  /** Response codes: 201, `2xx`, `101`. */
  codes?: (number | string)[];
  /** `allow`: the request was authorised (not 401/403); `forbid`: it was denied (forbid decision or 403). */
  decision?: 'allow' | 'forbid';
  /** Only requests made while impersonating someone. */
  impersonated?: boolean;
  /** Only requests whose annotations carry admission signals (Pod Security, admission-policy failures; $admission()). */
  admission?: boolean;
  /**
   * What became of the request: `succeeded` (a response code below 400 and no forbid decision: it created, bound,
   * changed or read what it asked for), `failed` (400 or above, or forbidden), `any`. A rule's match (and each
   * sequence step) defaults to `succeeded` unless it names `decision: forbid` or `codes` itself.
   */
  outcome?: Outcome;
}

export const OUTCOMES = ['succeeded', 'failed', 'any'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The outcome gate a rule's match gets when it says nothing about the outcome (see MatchSpec.outcome). */
export function withDefaultOutcome(m: MatchSpec): MatchSpec {
  if (m.outcome !== undefined || m.decision === 'forbid' || m.codes !== undefined) return m;
  return { ...m, outcome: 'succeeded' };
}
