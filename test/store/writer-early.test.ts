import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { dropEarlyWriter, startWriterEarly, WriterThread } from '../../src/store/writer.js';
import { ev, tempDir } from '../helpers/events.js';

/**
 * `kaudit ingest` starts its writer thread before it knows the store (startWriterEarly), and tells it the store once
 * the config is read: the thread must then be the one that writes, behave as one started with its store, and fail as
 * one would when the store cannot be opened.
 */
describe('a writer thread started before its store is known', () => {
  const records = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      text: JSON.stringify(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString() })),
      where: `t:${i}`,
    }));

  it('is taken by the next store opened, which stores through it', async () => {
    const path = join(tempDir(), 'k.db');
    startWriterEarly();
    const writer = await WriterThread.open(path);
    // Taken: a second writer opened now starts a thread of its own (and a second early one would be a new thread).
    const other = await WriterThread.open(join(tempDir(), 'other.db'));
    try {
      expect(writer.redactionKey.length).toBe(32);
      expect(other.redactionKey.equals(writer.redactionKey)).toBe(false);
      const r = await new Pipeline({ writer }).submit({ source: 'test', cluster: 'c', records: records(25) });
      expect(r.stored).toBe(25);
      const reader = new SqliteStore(path, { readonly: true });
      try {
        expect(reader.db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(25);
      } finally {
        reader.close();
      }
    } finally {
      await writer.close();
      await other.close();
    }
  });

  it('reports a store it cannot open as a thread started with it does', async () => {
    const dir = tempDir();
    // A directory where the store file should be: SQLite cannot open it.
    const path = join(dir, 'is-a-dir.db');
    mkdirSync(path);
    writeFileSync(join(path, 'x'), '');
    const fresh = await WriterThread.open(path).then(
      () => 'opened',
      (e: Error) => e.message,
    );
    startWriterEarly();
    const early = await WriterThread.open(path).then(
      () => 'opened',
      (e: Error) => e.message,
    );
    expect(fresh).not.toBe('opened');
    expect(early).toBe(fresh);
  });

  it('is ended, unused, when the store is not SQLite', async () => {
    startWriterEarly();
    // Stopped (its exit code once it has), not left running.
    expect(typeof (await dropEarlyWriter())).toBe('number');
    expect(await dropEarlyWriter()).toBeUndefined();
    // Nothing left to take: the next writer starts its own thread, with its store from the start.
    const path = join(tempDir(), 'k.db');
    const writer = await WriterThread.open(path);
    try {
      expect((await new Pipeline({ writer }).submit({ source: 'test', cluster: 'c', records: records(3) })).stored).toBe(3);
    } finally {
      await writer.close();
    }
  });
});
