import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Pipeline, type RawBatch } from '../../src/pipeline/pipeline.js';
import { importFiles } from '../../src/sources/file-import.js';
import { queryEvents } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev, lines, tempDir } from '../helpers/events.js';

describe('file import batches', () => {
  it('closes a batch at its byte bound as well as its count, and stores every event once', async () => {
    const dir = tempDir('kaudit-import-');
    const path = join(dir, 'a.log');
    // 40 small events, then 10 large list responses (~60 KB each), then 40 small ones.
    const small = (i: number) => ev({ auditID: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` });
    const items = Array.from({ length: 400 }, (_, i) => ({ metadata: { name: `pod-${i}`, namespace: 'web' }, spec: { nodeName: 'n'.repeat(100) } }));
    const large = (i: number) =>
      ev({
        auditID: `00000000-0000-4000-9000-${String(i).padStart(12, '0')}`,
        level: 'RequestResponse',
        verb: 'list',
        responseObject: { kind: 'PodList', items },
      });
    const all = [
      ...Array.from({ length: 40 }, (_, i) => small(i)),
      ...Array.from({ length: 10 }, (_, i) => large(i)),
      ...Array.from({ length: 40 }, (_, i) => small(100 + i)),
    ];
    writeFileSync(path, lines(all));
    const bigBytes = Buffer.byteLength(JSON.stringify(all[45]));
    expect(bigBytes).toBeGreaterThan(50_000);
    const store = new SqliteStore(join(dir, 'a.db'));
    const pipeline = new Pipeline({ writer: store });
    const sizes: number[] = [];
    // The real pipeline, watched: each batch's record count on its way in.
    const sink = { submit: (b: RawBatch) => (sizes.push(b.records.length), pipeline.submit(b)) };
    const bound = 3 * bigBytes;
    const r = await importFiles([path], { sink, cluster: 'c', batchSize: 1000, batchBytes: bound });
    await pipeline.idle();
    expect(r.events).toBe(90);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(90);
    // By count alone this file is one batch; by bytes, a batch closes once it passes the bound: at most three large
    // events' worth and one more record each.
    expect(sizes.length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...sizes)).toBeLessThan(50);
    expect(queryEvents(store, { verb: 'list' }, { limit: 100 }).items).toHaveLength(10);
    store.close();
  });
});
