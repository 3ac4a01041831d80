import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { AUDIT_ID_BUCKET_BITS, auditIDTerm } from '../../src/store/audit-id-index.js';
import { encodeAuditID } from '../../src/store/audit-id.js';
import { queryEvents } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev, tempDir } from '../helpers/events.js';

const BUCKET = 2 ** AUDIT_ID_BUCKET_BITS;

/** Stores n events, a batch of 5,000 at a time; returns their auditIDs in insertion order. */
function fill(store: SqliteStore, n: number, start = 0): string[] {
  const ids: string[] = [];
  for (let b = 0; b < n; b += 5000) {
    const events = [];
    for (let i = b; i < Math.min(n, b + 5000); i++) {
      const auditID = randomUUID();
      ids.push(auditID);
      const t = new Date(Date.UTC(2026, 0, 1) + (start + i) * 10).toISOString();
      events.push(normalise(toAuditEvent(ev({ auditID, requestReceivedTimestamp: t, stageTimestamp: t })), 'c', { enabled: true, key: store.redactionKey }));
    }
    store.commitAll(events, { alerts: [], deadLetters: [] });
  }
  return ids;
}

function plan(store: SqliteStore, id: string): string {
  const rows = store.db.prepare(`EXPLAIN QUERY PLAN SELECT e.id FROM events e WHERE ${auditIDTerm(store.db)}`).all(encodeAuditID(id)) as { detail: string }[];
  return rows.map((r) => r.detail).join('\n');
}

describe('lookup by auditID alone', () => {
  it('finds every stage of a request in any bucket of the store, through the index, with no time range', () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    try {
      // Three buckets and a part of a fourth.
      const ids = fill(store, 3 * BUCKET + 1000);
      // A second stage of a request in the first bucket, stored in the last one (a watch's ResponseComplete).
      const t = new Date(Date.UTC(2026, 0, 1) + 5 * 10).toISOString();
      store.commitAll(
        [
          normalise(toAuditEvent(ev({ auditID: ids[5], stage: 'ResponseStarted', requestReceivedTimestamp: t })), 'c', {
            enabled: true,
            key: store.redactionKey,
          }),
        ],
        {
          alerts: [],
          deadLetters: [],
        },
      );
      expect(plan(store, ids[0]!)).toMatch(/USING (COVERING )?INDEX events_audit_id/);
      for (const i of [0, 5, BUCKET - 1, BUCKET, 2 * BUCKET + 17, ids.length - 1]) {
        const page = queryEvents(store, { auditID: ids[i] }, { limit: 100 });
        expect(page.items.map((r) => r.auditID)).toEqual(i === 5 ? [ids[5], ids[5]] : [ids[i]]);
      }
      expect(queryEvents(store, { auditID: randomUUID() }, {}).items).toEqual([]);
      // With a time range and other filters, the same answers.
      expect(queryEvents(store, { auditID: ids[BUCKET], since: Date.UTC(2026, 0, 1) * 1000, user: 'alice@example.com' }, {}).items).toHaveLength(1);
      expect(queryEvents(store, { auditID: ids[BUCKET], since: Date.UTC(2026, 0, 2) * 1000 }, {}).items).toHaveLength(0);
      // An auditID that is not a UUID is stored as text and found the same way.
      fill(store, 0);
      const odd = normalise(toAuditEvent(ev({ auditID: 'not-a-uuid' })), 'c', { enabled: true, key: store.redactionKey });
      store.commitAll([odd], { alerts: [], deadLetters: [] });
      expect(queryEvents(store, { auditID: 'not-a-uuid' }, {}).items).toHaveLength(1);
    } finally {
      store.close();
    }
  });

  it('after retention removed the oldest buckets, still finds the rest', () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    try {
      const ids = fill(store, 2 * BUCKET + 10);
      store.db.prepare('DELETE FROM events WHERE id <= ?').run(BUCKET + 5);
      expect(queryEvents(store, { auditID: ids[0] }, {}).items).toEqual([]);
      expect(queryEvents(store, { auditID: ids[BUCKET + 6] }, {}).items).toHaveLength(1);
      expect(queryEvents(store, { auditID: ids.at(-1) }, {}).items).toHaveLength(1);
    } finally {
      store.close();
    }
  });

  it('migrates a store written before the index: built at the first open by a writer; a reader of the old store scans', () => {
    const path = join(tempDir(), 'k.db');
    let store = new SqliteStore(path);
    const ids = fill(store, 2000);
    // Make it the store an older kaudit wrote: schema version 4 (admission rows, no index).
    store.db.exec('DROP INDEX events_audit_id');
    store.db.pragma('user_version = 4');
    store.close();
    const reader = new SqliteStore(path, { readonly: true });
    try {
      expect(plan(reader, ids[0]!)).not.toMatch(/events_audit_id/);
      expect(queryEvents(reader, { auditID: ids[1500] }, {}).items.map((r) => r.auditID)).toEqual([ids[1500]]);
      store = new SqliteStore(path);
      expect(store.db.pragma('user_version', { simple: true })).toBe(5);
      expect(plan(store, ids[0]!)).toMatch(/USING (COVERING )?INDEX events_audit_id/);
      expect(queryEvents(store, { auditID: ids[1500] }, {}).items.map((r) => r.auditID)).toEqual([ids[1500]]);
      // The reader opened before the migration sees the index once it exists.
      expect(plan(reader, ids[0]!)).toMatch(/USING (COVERING )?INDEX events_audit_id/);
      expect(queryEvents(reader, { auditID: ids[10] }, {}).items.map((r) => r.auditID)).toEqual([ids[10]]);
      store.close();
    } finally {
      reader.close();
    }
  });
});
