/**
 * The commit-ordered ids of alerts and dead letters in a store that several writers share. SQLite's rowids grow in
 * commit order because one writer commits; writers of one OpenSearch cluster do not share a counter, so each id is
 * made of the time it was stamped (ms since 2025), the writer's slot and a counter:
 *
 *   id = (ms - EPOCH) * 2^13 + slot * 2^8 + counter        (exact in a JSON number until 2059)
 *
 * A reader that follows ids (the alert feed, the Kafka outbox) must not pass an id that a slower writer is still
 * about to make visible. Writers stamp an alert just before writing it and refresh the alerts index as they write;
 * readers only return ids stamped more than SETTLE_MS ago (`settledBelow`), by when every such write is visible. A
 * write slower than that is stamped again (see the alert writer), so a reader never skips it.
 */
export const SEQ_EPOCH_MS = Date.UTC(2025, 0, 1);
const PER_MS = 2 ** 13;
const PER_SLOT = 2 ** 8;
export const SLOTS = 32;
/** How long after its stamp an id is known to be visible (write, refresh) to every reader. */
export const SETTLE_MS = 3000;

export class Sequence {
  private lastMs = 0;
  private counter = 0;

  constructor(readonly slot: number) {}

  next(now = Date.now()): number {
    let ms = Math.max(now - SEQ_EPOCH_MS, this.lastMs);
    if (ms === this.lastMs) {
      if (++this.counter >= PER_SLOT) {
        ms++;
        this.counter = 0;
      }
    } else this.counter = 0;
    this.lastMs = ms;
    return ms * PER_MS + this.slot * PER_SLOT + this.counter;
  }
}

/** Ids below this were stamped more than SETTLE_MS ago: every write of one is visible. */
export function settledBelow(now = Date.now()): number {
  return Math.max(0, now - SETTLE_MS - SEQ_EPOCH_MS) * PER_MS;
}

/** When an id was stamped (ms since the epoch). */
export function stampedAt(seq: number): number {
  return Math.floor(seq / PER_MS) + SEQ_EPOCH_MS;
}
