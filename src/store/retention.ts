import { log } from '../log.js';
import { dropAdmission } from './admission-write.js';
import type { SqliteStore } from './sqlite-store.js';
import type { RetentionOptions } from './store.js';

/**
 * The SQLite store's retention (see RetentionOptions): prunes old events in the background in small transactions between ingest batches. Events go a stored batch (blob)
 * at a time: a blob is dropped once its newest event is past the age limit, or oldest-first while the store is over
 * its size limit. Alerts are kept (their event link then reports the event as expired).
 */
export class Retention {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  deletedEvents = 0;

  constructor(
    private readonly store: SqliteStore,
    private readonly o: RetentionOptions,
  ) {}

  get enabled(): boolean {
    return this.o.maxAgeMs !== undefined || this.o.maxBytes !== undefined;
  }

  start(intervalMs: number): void {
    if (!this.enabled) return;
    this.timer = setInterval(() => void this.runOnce(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private deleteBlobs(where: string, params: unknown[], limit?: number): number {
    const db = this.store.db;
    // Never prune inside a caller's open transaction (that would tie the prune to its fate): try at the next pass.
    if (db.inTransaction) return -1;
    const chunk = limit ?? this.o.chunk ?? 20;
    return db.transaction(() => {
      // A batch still waiting for its detection stays until it is finished.
      const blobs = db
        .prepare(`SELECT id, first_event, last_event FROM blobs WHERE (${where}) AND id NOT IN (SELECT blob FROM pending) ORDER BY id LIMIT ?`)
        .all(...params, chunk) as { id: number; first_event: number; last_event: number }[];
      let n = 0;
      const delEvents = db.prepare('DELETE FROM events WHERE id BETWEEN ? AND ? AND blob = ?');
      const delBlob = db.prepare('DELETE FROM blobs WHERE id = ?');
      for (const b of blobs) {
        this.store.auditIDs?.forget(b.first_event, b.last_event, b.id);
        n += delEvents.run(b.first_event, b.last_event, b.id).changes;
        delBlob.run(b.id);
        dropAdmission(db, b.id);
      }
      this.store.auditIDs?.dropExpired();
      return blobs.length === 0 ? -1 : n;
    })();
  }

  /** One pass; yields to the event loop between chunks. Returns events deleted. */
  async runOnce(now = Date.now()): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    let total = 0;
    try {
      if (this.o.maxAgeMs !== undefined) {
        const cutoff = (now - this.o.maxAgeMs) * 1000;
        for (;;) {
          const n = this.deleteBlobs('max_time < ?', [cutoff]);
          if (n < 0) break;
          total += n;
          await new Promise((r) => setImmediate(r));
        }
        if (!this.store.db.inTransaction) this.store.db.prepare('DELETE FROM rollup WHERE hour < ?').run(Math.floor(cutoff / 3_600_000_000));
      }
      if (this.o.maxBytes !== undefined) {
        // Pages free up unevenly as rows go, so estimate the share of the oldest batches to drop, drop it, measure
        // again; a few rounds at most per pass.
        for (let round = 0; round < 5; round++) {
          const size = this.store.bytesInUse();
          if (size <= this.o.maxBytes) break;
          const blobs = this.store.db.prepare('SELECT count(*) FROM blobs').pluck().get() as number;
          if (blobs === 0) break;
          let todo = Math.max(1, Math.ceil(blobs * (1 - this.o.maxBytes / size) * 1.05));
          while (todo > 0) {
            const n = this.deleteBlobs('1', [], Math.min(todo, this.o.chunk ?? 20));
            if (n < 0) break;
            total += n;
            todo -= Math.min(todo, this.o.chunk ?? 20);
            await new Promise((r) => setImmediate(r));
          }
          if (this.store.db.inTransaction) break;
          this.store.db.pragma('incremental_vacuum');
        }
      }
      if (total > 0 && !this.store.db.inTransaction) {
        this.store.db.pragma('incremental_vacuum(2000)');
        log.info(`retention: pruned ${total} events`);
      }
    } catch (e) {
      log.error(`retention pass failed: ${(e as Error).message}`, 'retention');
    } finally {
      this.running = false;
    }
    this.deletedEvents += total;
    return total;
  }
}
