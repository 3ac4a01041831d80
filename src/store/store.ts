/**
 * The store seam: what the pipeline, the API, the alert feed, the Kafka outbox and the CLI ask of a store, whatever
 * keeps the data. SQLite (sqlite-store.ts) is the embedded kind; a fleet's kind (OpenSearch) implements the same
 * interfaces, and callers depend on these types, never on a kind's class, its SQL or its query language.
 *
 * Writing is the batch-writer protocol (batch.ts): a batch's events are stored idempotently by (cluster, auditID,
 * stage), then its alerts (grouped), dead letters and source position are committed together. Reading is StoreReader.
 * Retention (RetentionOptions) is each kind's own work (SQLite: retention.ts, run by the writer thread).
 * The reader's answers are promises: a networked kind (OpenSearch) answers over HTTP, and SQLite resolves its
 * synchronous answers, so no caller knows which kind it has.
 */
import type { PostureFilter, PostureRow, ViolationFilter, ViolationRow } from './admission-queries.js';
import type { BatchWriter } from './batch.js';
import type { AlertFilter, AlertRow, AnalystFilter, DeadLetterRow, EventFilter, EventRow, Page, PageOptions, TopEntry } from './queries.js';
import type { RollupDim } from './schema.js';
import type { Timeline } from './timeline.js';

export interface StoreOptions {
  /** Alerts of one rule with the same group key within this window are counted on one row (default 10 minutes). */
  alertGroupWindowMs?: number;
  /** Longest part of a bad record kept in the dead-letter table (default 64 KiB). */
  deadLetterMaxBytes?: number;
  /** Open for reading only (the store must exist): API, CLI queries, tail positions. */
  readonly?: boolean;
}

/** What a store keeps: events by age (event time) and the store by size, oldest first. Alerts are kept. */
export interface RetentionOptions {
  /** Drop events older than this (event time), in milliseconds. */
  maxAgeMs?: number;
  /** Keep the store under this many bytes, dropping the oldest events first. */
  maxBytes?: number;
  /** Blobs (batches of events) deleted per transaction, so ingest never waits long (default 20). */
  chunk?: number;
}

/** An alert as committed, in commit order, for outputs that forward alerts (the Kafka outbox). */
export interface CommittedAlert {
  id: number;
  /** The alert's JSON as stored. */
  body: string;
}

export interface StoreOverview {
  oldestEvent?: number;
  newestEvent?: number;
  alerts: number;
  deadLetters: number;
  positions: { source: string; updated: number }[];
}

/** What readers ask of a store: the analyst's queries, alerts, dead letters, source positions and health. */
export interface StoreReader {
  /** Events matching a filter, newest first, a page at a time. */
  queryEvents(f: EventFilter, page?: PageOptions): Promise<Page<EventRow>>;
  /** One stored event with its full (redacted) audit event. */
  getEvent(id: number): Promise<EventRow | undefined>;
  /** Who exec'd or attached into which pod. */
  execSessions(f: AnalystFilter, page?: PageOptions): Promise<Page<EventRow>>;
  /** Who read or listed Secrets. */
  secretReads(f: AnalystFilter, page?: PageOptions): Promise<Page<EventRow>>;
  /** Who changed roles, cluster roles and their bindings. */
  rbacChanges(f: AnalystFilter, page?: PageOptions): Promise<Page<EventRow>>;
  /** Everything one user did. */
  userActivity(f: AnalystFilter & { user: string }, page?: PageOptions): Promise<Page<EventRow>>;
  /**
   * Pod Security violations (and, on request, admission-policy audit failures and exemptions) over a window, one row
   * per namespace, owning workload and check: what enforcing would break, and who deploys it.
   */
  psaViolations(f: ViolationFilter, page?: PageOptions): Promise<Page<ViolationRow>>;
  /** Per namespace and posture check (the `posture-*` rules' alerts): how many workloads failed it over a window. */
  posture(f: PostureFilter, page?: PageOptions): Promise<Page<PostureRow>>;
  /** The busiest values of a dimension over a window. */
  top(dim: RollupDim, f: { since?: number; until?: number; limit?: number }): Promise<TopEntry[]>;
  /** Alerts (one per group: repeats are counted on it), newest first. */
  queryAlerts(f: AlertFilter, page?: PageOptions): Promise<Page<AlertRow>>;
  getAlert(id: number): Promise<AlertRow | undefined>;
  /** Alerts committed after `afterId` that pass a filter, oldest first (the feed's replay). */
  alertsAfter(f: AlertFilter & { afterId: number }, limit: number): Promise<AlertRow[]>;
  /** Alerts committed after `afterId`, oldest first, as stored (the Kafka outbox). */
  committedAlertsAfter(afterId: number, limit: number): Promise<CommittedAlert[]>;
  /** The id of the newest committed alert (0: none): where a live-only reader of alerts starts. */
  latestAlertId(): Promise<number>;
  /**
   * Only where several processes share the store (the fleet store): takes or renews a role that one process holds at a
   * time, for `ttlMs` from now; true while `holder` has it (0 lets it go). The Kafka alerts outbox runs on its holder.
   */
  holdRole?(role: string, holder: string, ttlMs: number): Promise<boolean>;
  /** How many stored events match a filter (every stage counts). */
  countEvents(f: EventFilter): Promise<number>;
  /** How many alerts (rows, not repeats) match a filter. */
  countAlerts(f: AlertFilter): Promise<number>;
  /** Requests over time, bucketed, per value of a dimension. */
  eventTimeline(by: RollupDim, f: { since?: number; until?: number }): Promise<Timeline>;
  /** Alerts over time, bucketed, per severity. */
  alertTimeline(f: { since?: number; until?: number }): Promise<Timeline>;
  /** The span of stored events (event time, microseconds), alerts and dead letters counted, and the sources' positions. */
  overview(): Promise<StoreOverview>;
  /** Records rejected as bad input, newest first. */
  deadLetters(limit?: number): Promise<DeadLetterRow[]>;
  counts(): Promise<{ events: number; alerts: number; deadLetters: number }>;
  /** A source's committed position (see Checkpoint), if any. */
  position(source: string): Promise<string | undefined>;
  /** When a source's position was last committed (ms since the epoch). */
  positionUpdated(source: string): Promise<number | undefined>;
  /** Bytes the store uses. */
  sizeBytes(): Promise<number>;
  /** Throws when the store cannot answer (readiness). */
  check(): Promise<void>;
  close(): Promise<void> | void;
}

/** A store that both writes batches and answers readers (a writer thread uses one; tests and tools too). */
export interface AuditStore extends StoreReader, BatchWriter {
  /** The key that redacted values are hashed with, kept in the store so that hashes stay comparable across restarts. */
  readonly redactionKey: Buffer;
}
