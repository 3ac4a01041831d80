import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { Retention } from '../../src/store/retention.js';
import { counts, top } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { toRecords } from '../../src/store/records.js';
import { ev, tempDir } from '../helpers/events.js';

function fill(store: SqliteStore, day: number, n: number) {
  const events = Array.from({ length: n }, (_, i) =>
    normalise(toAuditEvent(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, day, 0, 0, i)).toISOString(), userAgent: 'x'.repeat(500 + i) })), 'c', {
      enabled: true,
      key: store.redactionKey,
    }),
  );
  store.commitAll(events, { alerts: [], deadLetters: [] });
}

describe('retention', () => {
  it('drops events past the age limit a batch at a time, with their rollups, and keeps the rest', async () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    fill(store, 1, 50);
    fill(store, 2, 50);
    fill(store, 10, 50);
    const r = new Retention(store, { maxAgeMs: 3 * 86_400_000 });
    const deleted = await r.runOnce(Date.UTC(2026, 0, 12));
    expect(deleted).toBe(100);
    expect(counts(store).events).toBe(50);
    expect(top(store, 'user', {})).toEqual([{ value: 'alice@example.com', count: 50 }]);
    store.close();
  });

  it('keeps the store under a size limit, oldest first', async () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    for (let d = 1; d <= 20; d++) fill(store, d, 200);
    const before = store.bytesInUse();
    const r = new Retention(store, { maxBytes: Math.floor(before / 2) });
    await r.runOnce();
    expect(store.bytesInUse()).toBeLessThanOrEqual(before / 2);
    const left = store.db.prepare('SELECT min(time) AS t, count(*) AS n FROM events').get() as { t: number; n: number };
    expect(left.n).toBeGreaterThan(0);
    expect(left.n).toBeLessThan(4000);
    // What is left is the newest.
    expect(left.t).toBeGreaterThan(Date.UTC(2026, 0, 2) * 1000);
    store.close();
  });

  it('never prunes a batch whose detection has not finished, and does once it has', async () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    fill(store, 1, 50);
    const waiting = Array.from({ length: 20 }, (_, i) =>
      normalise(toAuditEvent(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1, 1, 0, i)).toISOString() })), 'c', {
        enabled: true,
        key: store.redactionKey,
      }),
    );
    const { batch } = store.insert(toRecords(waiting));
    const r = new Retention(store, { maxAgeMs: 86_400_000 });
    expect(await r.runOnce(Date.UTC(2026, 0, 12))).toBe(50);
    expect(counts(store).events).toBe(20);
    store.finish(batch, { alerts: [], deadLetters: [] });
    expect(await r.runOnce(Date.UTC(2026, 0, 12))).toBe(20);
    expect(counts(store).events).toBe(0);
    store.close();
  });
});
