import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalise } from '../../src/events/normalise.js';
import { toAuditEvent } from '../../src/events/decode.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { toRecords } from '../../src/store/records.js';
import { WriterThread } from '../../src/store/writer.js';
import { ev, tempDir } from '../helpers/events.js';

/** Group commit: several batches in one transaction, acknowledged only once it commits, rolled back as one. */
describe('group commit', () => {
  const batch = (store: { redactionKey: Buffer }, from: number, n: number, pad = 0) =>
    toRecords(
      Array.from({ length: n }, (_, i) =>
        normalise(
          toAuditEvent(
            ev({
              requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + (from + i) * 1000).toISOString(),
              annotations: pad ? { pad: 'x'.repeat(pad) } : {},
            }),
          ),
          'c',
          { enabled: true, key: store.redactionKey },
        ),
      ),
    );
  const count = (path: string) => {
    const r = new SqliteStore(path, { readonly: true });
    try {
      return {
        events: r.db.prepare('SELECT count(*) FROM events').pluck().get() as number,
        position: r.positionNow('src'),
        pending: r.db.prepare('SELECT count(*) FROM pending').pluck().get() as number,
      };
    } finally {
      r.close();
    }
  };

  it('keeps batches out of sight of other connections until the group commits', () => {
    const path = join(tempDir(), 'k.db');
    const store = new SqliteStore(path);
    store.grouped = true;
    const a = store.insert(batch(store, 0, 10));
    store.finish(a.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'src', position: 'a' } });
    const b = store.insert(batch(store, 10, 10));
    expect(store.uncommittedEvents).toBe(20);
    expect(count(path)).toEqual({ events: 0, position: undefined, pending: 0 });
    store.commitGroup();
    expect(store.uncommittedEvents).toBe(0);
    // b is stored and still pending detection; a is complete.
    expect(count(path)).toEqual({ events: 20, position: 'a', pending: 1 });
    store.finish(b.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'src', position: 'b' } });
    store.close();
    expect(count(path)).toEqual({ events: 20, position: 'b', pending: 0 });
  });

  it('rolls the whole group back when an operation in it fails, and the lost batches cannot be finished', () => {
    const path = join(tempDir(), 'k.db');
    const store = new SqliteStore(path);
    const first = store.insert(batch(store, 0, 5));
    store.finish(first.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'src', position: 'first' } });
    store.grouped = true;
    const a = store.insert(batch(store, 100, 10));
    store.finish(a.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'src', position: 'a' } });
    const b = store.insert(batch(store, 200, 10));
    // A real SQLite failure: the database may not grow past its current size ("database or disk is full").
    const pages = store.db.pragma('page_count', { simple: true }) as number;
    store.db.pragma(`max_page_count = ${pages}`);
    expect(() => store.insert(batch(store, 300, 400, 4000))).toThrow(/full/);
    expect(store.db.inTransaction).toBe(false);
    expect(() => store.finish(b.batch, { alerts: [], deadLetters: [] })).toThrow(/rolled back/);
    // Nothing of a or b is stored: the position is still the one committed before the group.
    expect(count(path)).toEqual({ events: 5, position: 'first', pending: 0 });
    store.db.pragma('max_page_count = 1073741823');
    const c = store.insert(batch(store, 100, 10));
    expect(c.flags.every(Boolean)).toBe(true);
    store.finish(c.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'src', position: 'c' } });
    store.commitGroup();
    store.close();
    expect(count(path)).toEqual({ events: 15, position: 'c', pending: 0 });
  });

  it('hands back, for detection, a batch whose events were committed and whose finish was then rolled back (a full disk), when its events are resent', () => {
    const path = join(tempDir(), 'k.db');
    const store = new SqliteStore(path);
    store.grouped = true;
    const events = Array.from({ length: 10 }, (_, i) =>
      normalise(toAuditEvent(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString() })), 'c', {
        enabled: true,
        key: store.redactionKey,
      }),
    );
    const records = () => toRecords(events);
    const a = store.insert(records());
    store.commitGroup();
    // The finish cannot be written: the database may not grow (a real SQLite "database or disk is full").
    store.db.pragma(`max_page_count = ${store.db.pragma('page_count', { simple: true }) as number}`);
    const deadLetters = Array.from({ length: 50 }, (_, i) => ({ source: 'src', where: `x:${i}`, reason: 'bad', data: 'y'.repeat(20_000) }));
    expect(() => {
      store.finish(a.batch, { alerts: [], deadLetters, checkpoint: { source: 'src', position: 'a' } });
      store.commitGroup();
    }).toThrow(/full/);
    store.db.pragma('max_page_count = 1073741823');
    // Its events stay committed, marked pending by this (live) writer; the source resends them: duplicates, and the
    // batch is handed back now rather than at the next start.
    expect(count(path)).toEqual({ events: 10, position: undefined, pending: 1 });
    const again = store.insert(records());
    expect(again.flags.some(Boolean)).toBe(false);
    expect(again.orphans).toBe(true);
    const taken = store.pending();
    expect(taken).toHaveLength(1);
    expect(taken[0]!.events).toHaveLength(10);
    store.finish(taken[0]!.batch, { alerts: [], deadLetters: [] });
    store.finish(again.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'src', position: 'a' } });
    store.commitGroup();
    expect(store.pending()).toEqual([]);
    store.close();
    expect(count(path)).toEqual({ events: 10, position: 'a', pending: 0 });
  });

  it('acknowledges a finish on the writer thread only once it is committed', async () => {
    const path = join(tempDir(), 'k.db');
    const w = await WriterThread.open(path);
    const key = { redactionKey: w.redactionKey };
    // Several batches in flight at once, as the pipeline sends them: each finish, once resolved, is visible.
    const inserts = [0, 1, 2, 3].map((i) => w.insert(batch(key, i * 50, 50)));
    const finishes = inserts.map(async (p, i) => {
      const { batch: id } = await p;
      await w.finish(id, { alerts: [], deadLetters: [], checkpoint: { source: `src${i}`, position: String(i) } });
      const r = new SqliteStore(path, { readonly: true });
      try {
        expect(r.positionNow(`src${i}`)).toBe(String(i));
        expect(r.db.prepare('SELECT count(*) FROM events').pluck().get() as number).toBeGreaterThanOrEqual((i + 1) * 50);
      } finally {
        r.close();
      }
    });
    await Promise.all(finishes);
    await w.close();
    expect(count(path)).toEqual({ events: 200, position: undefined, pending: 0 });
  });
});

describe('blob codecs', () => {
  it('reads the deflate blobs of a store written before Brotli, migrated or not, beside new Brotli blobs', async () => {
    const { deflateRawSync } = await import('node:zlib');
    const path = join(tempDir(), 'k.db');
    const key = Buffer.alloc(32);
    const make = (from: number) =>
      Array.from({ length: 3 }, (_, i) =>
        normalise(toAuditEvent(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + (from + i) * 1000).toISOString() })), 'c', {
          enabled: false,
          key,
        }),
      );
    const old = make(0);
    let store = new SqliteStore(path);
    store.commitAll(old, { alerts: [], deadLetters: [] });
    // Turn it into what an older kaudit left: schema version 2, no codec column (nor admission table, nor auditID index), its blob raw deflate.
    store.db.prepare('UPDATE blobs SET data = ?').run(deflateRawSync(Buffer.from(old.map((e) => e.raw).join('\n'))));
    store.db.exec('ALTER TABLE blobs DROP COLUMN codec; DROP TABLE admission');
    store.db.exec('DROP TABLE audit_id_index; DROP TABLE audit_id_runs');
    store.db.pragma('user_version = 2');
    store.close();
    const rawOf = (s: SqliteStore) =>
      (s.db.prepare('SELECT blob, blob_idx FROM events ORDER BY id').all() as { blob: number; blob_idx: number }[]).map((r) => s.rawEvent(r.blob, r.blob_idx));
    const reader = new SqliteStore(path, { readonly: true });
    expect(rawOf(reader)).toEqual(old.map((e) => e.raw));
    reader.close();
    store = new SqliteStore(path);
    expect(store.db.pragma('user_version', { simple: true })).toBe(6);
    const fresh = make(10);
    store.commitAll(fresh, { alerts: [], deadLetters: [] });
    expect(store.db.prepare('SELECT codec FROM blobs ORDER BY id').pluck().all()).toEqual([0, 1]);
    expect(rawOf(store)).toEqual([...old, ...fresh].map((e) => e.raw));
    store.close();
  });
});

describe('group commit on the writer thread', () => {
  it('fails only the operation that failed when the group was not rolled back', async () => {
    const path = join(tempDir(), 'k.db');
    const w = await WriterThread.open(path);
    const key = { redactionKey: w.redactionKey };
    const events = (from: number) =>
      toRecords(
        Array.from({ length: 5 }, (_, i) =>
          normalise(toAuditEvent(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + (from + i) * 1000).toISOString() })), 'c', {
            enabled: true,
            key: key.redactionKey,
          }),
        ),
      );
    const a = await w.insert(events(0));
    const b = await w.insert(events(100));
    // Sent together, so they meet in one group: the middle one names no open batch, which rolls nothing back.
    const fa = w.finish(a.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'a', position: '1' } });
    const bad = w.finish(a.batch + b.batch + 1000, { alerts: [], deadLetters: [] });
    const fb = w.finish(b.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'b', position: '2' } });
    await Promise.all([expect(bad).rejects.toThrow(/no batch/), expect(fa).resolves.toEqual([]), expect(fb).resolves.toEqual([])]);
    await w.close();
    const r = new SqliteStore(path, { readonly: true });
    expect([r.positionNow('a'), r.positionNow('b')]).toEqual(['1', '2']);
    r.close();
  });

  it('fails the finishes waiting on a group that an operation rolled back, and stores none of them', async () => {
    const path = join(tempDir(), 'k.db');
    const w = await WriterThread.open(path);
    const one = toRecords([normalise(toAuditEvent(ev()), 'c', { enabled: true, key: w.redactionKey })]);
    const a = await w.insert(one);
    // The writer commits as soon as no message waits for it: keep it busy with a large insert, so that the finish and
    // the malformed batch posted after it are both waiting when it gets to them, and land in one group. (Without it,
    // on an idle machine the writer could commit the finish before the malformed batch arrived.)
    const bulk = Array.from({ length: 20_000 }, (_, i) =>
      normalise(toAuditEvent(ev({ auditID: `bulk-${i}`, requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 2) + i).toISOString() })), 'c', {
        enabled: true,
        key: w.redactionKey,
      }),
    );
    const busy = w.insert(toRecords(bulk));
    const fa = w.finish(a.batch, { alerts: [], deadLetters: [], checkpoint: { source: 'a', position: '1' } });
    // A malformed batch (its text fields are not a string): the insert throws inside the group, which is rolled back.
    const broken = w.insert({ count: 1, nums: new Float64Array(17), text: 0 as unknown as string, dict: '', raw: new Uint8Array(0) });
    await Promise.all([busy.catch(() => undefined), expect(broken).rejects.toThrow(/indexOf/), expect(fa).rejects.toThrow(/rolled back/)]);
    await w.close();
    const r = new SqliteStore(path, { readonly: true });
    expect(r.positionNow('a')).toBeUndefined();
    r.close();
  });
});

describe('writer thread buffers', () => {
  it("hands each batch's raw buffer back for the next batches, which store their own lines, not the old ones", async () => {
    const { Pipeline } = await import('../../src/pipeline/pipeline.js');
    const { queryEvents } = await import('../../src/store/queries.js');
    const path = join(tempDir(), 'k.db');
    const writer = await WriterThread.open(path);
    const pipeline = new Pipeline({ writer });
    // Long lines first, then shorter ones written into the same (recycled) buffers: a stale byte past a line's end
    // or a wrong length would show in what is read back.
    const lines: string[] = [];
    for (let b = 0; b < 6; b++) {
      const batch = Array.from({ length: 50 }, (_, i) =>
        JSON.stringify(
          ev({
            requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + (b * 50 + i) * 1000).toISOString(),
            annotations: { pad: 'x'.repeat(b < 3 ? 2000 : 10 + i) },
          }),
        ),
      );
      lines.push(...batch);
      await pipeline.submit({ source: 'src', cluster: 'c', records: batch.map((text, i) => ({ text, where: `${b}:${i}` })) });
      if (b === 2) expect(writer.spareBuffers).toBeGreaterThan(0);
    }
    await pipeline.idle();
    await writer.close();
    const reader = new SqliteStore(path, { readonly: true });
    try {
      const rows = queryEvents(reader, {}, { limit: 1000, includeEvent: true }).items;
      expect(rows).toHaveLength(lines.length);
      const want = new Map(lines.map((l) => [JSON.parse(l).auditID as string, JSON.parse(l)]));
      for (const r of rows) expect(r.event).toEqual(want.get(r.auditID));
    } finally {
      reader.close();
    }
  });

  it('keeps the larger buffers when more come back than it keeps', async () => {
    const writer = await WriterThread.open(join(tempDir(), 'k.db'));
    const key = { redactionKey: writer.redactionKey };
    const records = (from: number, n: number, pad: number) =>
      toRecords(
        Array.from({ length: n }, (_, i) =>
          normalise(
            toAuditEvent(
              ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + (from + i) * 1000).toISOString(), annotations: { pad: 'x'.repeat(pad) } }),
            ),
            'c',
            { enabled: true, key: key.redactionKey },
          ),
        ),
      );
    // Small batches fill every place with small buffers...
    for (let b = 0; b < 10; b++) await writer.insert(records(b * 10, 10, 10));
    expect(writer.spareBuffers).toBe(8);
    // ...then a large one comes back: it takes the place of a small one, so a large batch finds it.
    const large = records(1000, 50, 40_000);
    const size = large.raw.buffer.byteLength;
    await writer.insert(large);
    expect(writer.spareBuffers).toBe(8);
    expect(writer.rawBuffer(size).length).toBeGreaterThanOrEqual(size);
    expect(writer.spareBuffers).toBe(7);
    await writer.close();
  });
});
