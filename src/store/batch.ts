/**
 * The batch-writer protocol: how the pipeline hands a batch to the store and completes it. A SQLite store in this
 * thread, the writer thread in front of one, or another kind of store all speak it.
 */
import type { Alert } from '../detect/alert.js';
import type { NormalisedEvent } from '../events/types.js';
import { NUL, type EventRecords } from './records.js';

export interface DeadLetter {
  source: string;
  where: string;
  reason: string;
  data?: string | Buffer;
}

export interface Checkpoint {
  source: string;
  position: string;
}

/** What completes a batch after its events are in: alerts, dead letters and the source position. */
export interface BatchTail {
  alerts: Alert[];
  /**
   * Per alert, the index in the batch of the event that raised it (see alertEventIndexes), or -1: the alert's row
   * links to that event. The caller has the events at hand, so the writer need not keep a batch's keys until its finish.
   */
  alertEvents?: number[];
  deadLetters: DeadLetter[];
  checkpoint?: Checkpoint;
  /**
   * The batch's source sends its next batch at once and does not wait for this one (RawBatch.more): a writer that
   * groups commits may hold this finish's commit for the next batches'. Otherwise someone waits for it (a webhook's
   * reply), and it is committed as soon as the writer has nothing queued.
   */
  more?: boolean;
}

/**
 * For each alert, the batch index of the event that raised it: the event of `events` with the alert's cluster, auditID
 * and stage, as `index[i]` (or i when no index is given), or -1 when none of them is.
 */
export function alertEventIndexes(
  alerts: readonly Alert[],
  events: readonly Pick<NormalisedEvent, 'cluster' | 'auditID' | 'stage'>[],
  index?: readonly number[],
): number[] {
  if (alerts.length === 0) return [];
  const byKey = new Map<string, number>();
  events.forEach((e, i) => byKey.set(`${e.cluster}${NUL}${e.auditID}${NUL}${e.stage}`, index ? index[i]! : i));
  return alerts.map((a) => byKey.get(`${a.cluster}${NUL}${a.auditID}${NUL}${a.stage}`) ?? -1);
}

/**
 * A batch is stored in two transactions, so that detection (on the main thread) never holds the writer up:
 * `insert` commits the batch's events and marks them pending detection (a retried or re-imported event is recognised
 * by its key, not inserted, and not passed to detection); `finish` commits the batch's alerts, dead letters and source
 * position and clears the mark. A crash between the two leaves the mark: `pending` hands such batches back at the
 * next start so they are detected exactly once (their source position was not committed, so the source sends them
 * again, and those copies are duplicates). `discard` undoes an insert whose detection failed.
 */
export interface BatchWriter {
  insert(events: EventRecords): Promise<InsertResult> | InsertResult;
  /**
   * A buffer of at least `bytes` for a batch's raw JSON (EventRecords.raw), when the writer recycles the buffers that
   * batches moved to it: a fresh buffer of a few MB per batch costs the main thread a page fault per 4 KiB written.
   */
  rawBuffer?(bytes: number): Buffer;
  finish(batch: number, tail: BatchTail): Promise<Alert[]> | Alert[];
  /**
   * The caller is about to wait for a finish's acknowledgement: commit what was sent. A writer that groups commits
   * (the writer thread) holds them until it has enough to make a commit worth its index pages, or until told this.
   */
  flush?(): void;
  discard(batch: number): Promise<void> | void;
  pending(): Promise<PendingBatch[]> | PendingBatch[];
  /** See AuditStore.saveState and AuditStore.takeState. */
  saveState(name: string, json: string): Promise<void> | void;
  takeState(name: string): Promise<string | undefined> | string | undefined;
}

export interface InsertResult {
  /** The batch's handle for finish/discard. */
  batch: number;
  /** Per event: true when it was new (stored now). */
  flags: boolean[];
  /** Some events were duplicates and the store holds batches a stopped writer never finished: see `pending`. */
  orphans: boolean;
}

/** A batch stored but not yet detected (the process stopped between insert and finish): its new events' JSON. */
export interface PendingBatch {
  batch: number;
  events: { cluster: string; line: string }[];
}
