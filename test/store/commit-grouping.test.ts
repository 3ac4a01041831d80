import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Pipeline, type RawBatch } from '../../src/pipeline/pipeline.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { WriterThread } from '../../src/store/writer.js';
import { ev, tempDir } from '../helpers/events.js';

/**
 * How the pipeline and the writer thread size commit groups: a file import's batches (`more`) wait to be committed
 * with the next ones, since each commit rewrites the index pages it touched; a batch whose source waits for its
 * acknowledgement (a webhook's reply) is committed as soon as the pipeline has nothing else to do.
 */
describe('commit grouping', () => {
  const batch = (from: number, more?: boolean): RawBatch => ({
    source: 'test',
    cluster: 'c',
    more,
    records: Array.from({ length: 10 }, (_, i) => ({
      text: JSON.stringify(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + (from + i) * 1000).toISOString() })),
      where: `t:${from + i}`,
    })),
  });
  const stored = (path: string) => {
    const r = new SqliteStore(path, { readonly: true });
    try {
      return r.db.prepare('SELECT count(*) FROM events').pluck().get() as number;
    } finally {
      r.close();
    }
  };
  const settledYet = (p: Promise<unknown>) => Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 300))]);

  it('holds a batch whose source says more follows, and commits it with the next batch that is waited for', async () => {
    const path = join(tempDir(), 'k.db');
    const writer = await WriterThread.open(path);
    const pipeline = new Pipeline({ writer });
    try {
      const a = pipeline.submit(batch(0, true));
      expect(await settledYet(a)).toBe(false);
      expect(stored(path)).toBe(0);
      const b = pipeline.submit(batch(100));
      expect((await a).stored).toBe(10);
      expect((await b).stored).toBe(10);
      expect(stored(path)).toBe(20);
      // Nothing held now: a lone batch is committed without waiting for company.
      const c = pipeline.submit(batch(200));
      expect(await settledYet(c)).toBe(true);
      expect(stored(path)).toBe(30);
    } finally {
      await writer.close();
    }
  });

  it('commits a held batch in the end even when nothing follows it', async () => {
    const path = join(tempDir(), 'k.db');
    const writer = await WriterThread.open(path);
    const pipeline = new Pipeline({ writer });
    try {
      expect((await pipeline.submit(batch(0, true))).stored).toBe(10);
      expect(stored(path)).toBe(10);
    } finally {
      await writer.close();
    }
  });
});
