import type { ObjectReference, Stage } from '../events/types.js';

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

/** An alert raised by a rule for one audit event (the event that completed the match). */
export interface Alert {
  /** Store id, assigned when the alert is committed; absent in `kaudit detect`. */
  id?: number;
  rule: string;
  title: string;
  severity: Severity;
  /** MITRE ATT&CK technique ids and other tags. */
  tags: string[];
  /** The MITRE ATT&CK technique ids among the tags (T1609, T1552.007 ...). */
  mitre?: string[];
  summary: string;
  cluster: string;
  auditID: string;
  stage: Stage;
  /** requestReceivedTimestamp of the event, RFC 3339 with microseconds. */
  time: string;
  timeMicros: number;
  user: string;
  sourceIP: string;
  verb: string;
  objectRef: ObjectReference;
  /**
   * Alerts of one rule for the same identity and object within the grouping window share a group key; the store
   * keeps one row per group with a count (see store/alerts).
   */
  groupKey: string;
  /** Extra facts a rule computed (threshold counts, sequence steps, the matched command ...). */
  details?: Record<string, unknown>;
}

/** The fields every alert copies from the event that raised it. */
export function alertEventFields(
  e: import('../events/types.js').NormalisedEvent,
): Pick<Alert, 'cluster' | 'auditID' | 'stage' | 'time' | 'timeMicros' | 'user' | 'sourceIP' | 'verb'> {
  return { cluster: e.cluster, auditID: e.auditID, stage: e.stage, time: e.time, timeMicros: e.timeMicros, user: e.user, sourceIP: e.sourceIP, verb: e.verb };
}

/**
 * The detection engine as the pipeline sees it: events in (in order), alerts out. Pure with respect to I/O; window
 * state lives inside the implementation.
 */
export interface Detector {
  /**
   * Process one batch of normalised events in order and return the alerts they raise, in order. `origin` names the
   * Kafka partition the events came from: the state they touch belongs to it (see saveState/dropState).
   */
  detect(events: readonly import('../events/types.js').NormalisedEvent[], origin?: string): Promise<Alert[]> | Alert[];
  /**
   * Optional and cheap: false when no rule can use this event (by its indexed fields), so the pipeline may drop it
   * early and not pass it to `detect`.
   */
  wants?(event: import('../events/types.js').NormalisedEvent): boolean;
  /** Optional: the batch that raised these alerts was not stored; its requests may alert again when it is resent. */
  forget?(alerts: readonly Alert[]): void;
  /** Optional: the state detection keeps between events as JSON data, and its loading into a new detector. */
  saveState?(origin?: string): unknown;
  loadState?(data: unknown, origin?: string): { keys: number; parts: number; skipped: number };
  /** Optional, with the two above: forget one origin's share; whether its share changed since it was saved. */
  dropState?(origin: string): number;
  stateChanged?(origin: string): boolean;
  /** Optional: entries the state holds now (for a gauge). */
  stateEntries?(): number;
  /** Optional: bytes the request-id sets hold (for a gauge). */
  stateBytes?(): number;
}
