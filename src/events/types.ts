/**
 * The audit.k8s.io Event as the apiserver writes it (v1 and v1beta1 share these fields; v1beta1 adds
 * `timestamp` and `metadata`, which kaudit keeps in the raw JSON but does not index).
 */

export const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;
export type Stage = (typeof STAGES)[number];

export const LEVELS = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;
export type Level = (typeof LEVELS)[number];

export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface ObjectReference {
  resource?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiGroup?: string;
  apiVersion?: string;
  resourceVersion?: string;
  subresource?: string;
}

export interface ResponseStatus {
  code?: number;
  status?: string;
  reason?: string;
  message?: string;
  metadata?: unknown;
  details?: unknown;
}

/**
 * An Event's top-level fields in the order the apiserver writes them: its Go type's declaration order (audit.k8s.io/v1
 * Event), which its JSON encoder follows. Bodies stand between responseStatus and the timestamps (lazy-bodies.ts
 * relies on it), and generated logs are written in it to look like real ones.
 */
export const EVENT_FIELD_ORDER = [
  'kind',
  'apiVersion',
  'level',
  'auditID',
  'stage',
  'requestURI',
  'verb',
  'user',
  'impersonatedUser',
  'sourceIPs',
  'userAgent',
  'objectRef',
  'responseStatus',
  'requestObject',
  'responseObject',
  'requestReceivedTimestamp',
  'stageTimestamp',
  'annotations',
] as const;

export interface AuditEvent {
  kind?: string;
  apiVersion?: string;
  level: Level;
  auditID: string;
  stage: Stage;
  requestURI: string;
  verb: string;
  user: UserInfo;
  impersonatedUser?: UserInfo;
  sourceIPs?: string[];
  userAgent?: string;
  objectRef?: ObjectReference;
  responseStatus?: ResponseStatus;
  requestObject?: any;
  responseObject?: any;
  requestReceivedTimestamp: string;
  stageTimestamp?: string;
  annotations?: Record<string, string>;
  [extra: string]: unknown;
}

import type { AdmissionSignals } from './admission-types.js';

/** Authorization decision from the `authorization.k8s.io/decision` annotation. */
export type Decision = 'allow' | 'forbid' | '';

/**
 * An event after decoding, redaction and normalisation: the indexed fields the store, the detection engine and the
 * query layer share, plus the (redacted) event and its JSON text.
 */
export interface NormalisedEvent {
  cluster: string;
  auditID: string;
  stage: Stage;
  level: Level;
  /** requestReceivedTimestamp in microseconds since the epoch (exact: fits a double until June 2255; events outside 1970 to then are bad input). */
  timeMicros: number;
  /** The same instant as an RFC 3339 string with microseconds, as the apiserver writes it. */
  time: string;
  verb: string;
  user: string;
  groups: string[];
  impersonatedUser: string;
  sourceIP: string;
  userAgent: string;
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
  /** HTTP response code, 0 when the event carries none (RequestReceived). */
  code: number;
  decision: Decision;
  /** pods/exec: the decoded `command` query parameters joined by a space; empty otherwise. */
  command: string;
  /** pods/exec and pods/attach (and pods/log): the `container` query parameter. */
  container: string;
  /** Pod Security and admission-policy annotations, decoded; undefined when the event carries none. */
  admission: AdmissionSignals | undefined;
  /** The event after redaction: what detection sees and what is stored. */
  event: AuditEvent;
  /** JSON text of `event`: the original line when nothing was redacted. */
  raw: string;
}

/** Where a record came from, for dead letters, checkpoints and error messages. */
export interface Origin {
  /** Stable id of the source: `file:/var/log/audit.log`, `webhook`, `kafka:topic/3`. */
  source: string;
  /** Human-readable position inside it: `audit.log:1234` (line), `offset 5512`, `request r-17 item 3`. */
  where: string;
}
