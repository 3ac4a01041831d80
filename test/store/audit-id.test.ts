import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { decodeAuditID, encodeAuditID } from '../../src/store/audit-id.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { RecordPacker, toRecords } from '../../src/store/records.js';
import { ev, tempDir } from '../helpers/events.js';

describe('auditID encoding', () => {
  it('keeps a UUID as its 16 bytes, and gives it back as it was', () => {
    for (let i = 0; i < 200; i++) {
      const id = randomUUID();
      const enc = encodeAuditID(id);
      expect(Buffer.isBuffer(enc)).toBe(true);
      expect((enc as Buffer).toString('hex')).toBe(id.replaceAll('-', ''));
      expect(decodeAuditID(enc)).toBe(id);
    }
  });

  it('keeps anything that is not a lowercase 8-4-4-4-12 UUID as text, unchanged', () => {
    for (const id of [
      '',
      'abc',
      'A1B2C3D4-0000-4000-8000-000000000000',
      '0000000g-0000-4000-8000-000000000000',
      '00000000-0000-4000-8000-00000000000',
      '00000000-0000-4000-8000-0000000000000',
      '000000000000-4000-8000-000000000000-',
      '00000000_0000_4000_8000_000000000000',
    ]) {
      expect(encodeAuditID(id)).toBe(id);
      expect(decodeAuditID(encodeAuditID(id))).toBe(id);
    }
  });
});

describe('auditIDs through the store', () => {
  it('stores each event of a batch with its own auditID (the writer reuses one buffer to bind them)', () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    try {
      const ids = Array.from({ length: 50 }, (_, i) => (i === 7 ? 'not-a-uuid' : randomUUID()));
      const events = ids.map((auditID) => normalise(toAuditEvent(ev({ auditID })), 'c', { enabled: true, key: store.redactionKey }));
      const { flags } = store.insert(toRecords(events));
      expect(flags.every(Boolean)).toBe(true);
      const rows = store.db.prepare('SELECT audit_id FROM events ORDER BY blob_idx').pluck().all() as (Buffer | string)[];
      expect(rows.map(decodeAuditID)).toEqual(ids);
      // The same batch again: every event is recognised by its key, none is stored twice.
      expect(store.insert(toRecords(events)).flags.some(Boolean)).toBe(false);
    } finally {
      store.close();
    }
  });
});

describe('packing a batch', () => {
  it('leaves rows and raw lines in step when an event cannot be packed (all or nothing)', () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    try {
      const redaction = { enabled: true, key: store.redactionKey };
      const [a, bad, b] = [ev(), ev(), ev()].map((e) => normalise(toAuditEvent(e), 'c', redaction, JSON.stringify(e)));
      // A field of a type nothing checked (validation now refuses this one; the packer must not half-write it anyway).
      (bad as { userAgent: unknown }).userAgent = 7;
      const p = new RecordPacker(3);
      p.add(a!);
      expect(() => p.add(bad!)).toThrow();
      p.add(b!);
      const records = p.finish();
      expect(records.count).toBe(2);
      expect(store.insert(records).flags).toEqual([true, true]);
      const rows = store.db.prepare('SELECT audit_id, blob, blob_idx FROM events ORDER BY blob_idx').all() as {
        audit_id: Buffer | string;
        blob: number;
        blob_idx: number;
      }[];
      expect(rows.map((r) => decodeAuditID(r.audit_id))).toEqual([a!.auditID, b!.auditID]);
      // Each row's raw line is its own event's.
      expect(rows.map((r) => (JSON.parse(store.rawEvent(r.blob, r.blob_idx)!) as { auditID: string }).auditID)).toEqual([a!.auditID, b!.auditID]);
    } finally {
      store.close();
    }
  });
});
