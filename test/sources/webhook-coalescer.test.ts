import { describe, expect, it } from 'vitest';
import { WebhookCoalescer } from '../../src/sources/webhook-coalescer.js';
import type { BatchOutcome, RawBatch } from '../../src/pipeline/pipeline.js';
import { OverloadedError } from '../../src/errors.js';

/** A sink that holds each batch until released, and records what it got. */
function heldSink() {
  const got: RawBatch[] = [];
  const release: ((o: BatchOutcome | Error) => void)[] = [];
  return {
    got,
    release,
    submit(b: RawBatch): Promise<BatchOutcome> {
      got.push(b);
      return new Promise((resolve, reject) => release.push((o) => (o instanceof Error ? reject(o) : resolve(o))));
    },
  };
}

const recs = (tag: string, n: number) => Array.from({ length: n }, (_, i) => ({ text: '{}', where: `${tag} item ${i}` }));

describe('WebhookCoalescer', () => {
  it('passes requests straight through while the pipeline has room, merges them per cluster while it is busy', async () => {
    const sink = heldSink();
    const c = new WebhookCoalescer(sink, { maxInFlight: 2, maxEvents: 1000 });
    const a = c.submit('prod', recs('a', 400), 'a ');
    const b = c.submit('prod', recs('b', 400), 'b ');
    expect(sink.got.map((g) => g.records.length)).toEqual([400, 400]);
    // Busy: these wait, and merge by cluster up to 1000 events.
    const d = c.submit('prod', recs('d', 400), 'd ');
    const e = c.submit('staging', recs('e', 400), 'e ');
    const f = c.submit('prod', recs('f', 400), 'f ');
    const g = c.submit('prod', recs('g', 400), 'g ');
    expect(sink.got).toHaveLength(2);
    sink.release[0]!({ stored: 400, duplicates: 0, bad: [], alerts: [] });
    expect(await a).toEqual({ stored: 400, duplicates: 0, requests: 1, bad: [] });
    expect(sink.got[2]).toMatchObject({ cluster: 'prod', source: 'webhook:prod' });
    expect(sink.got[2]!.records.map((r) => r.where[0])).toEqual([...'d'.repeat(400), ...'f'.repeat(400)]);
    sink.release[1]!({ stored: 1, duplicates: 399, bad: [], alerts: [] });
    await b;
    expect(sink.got[3]!.cluster).toBe('staging');
    // The merged batch's bad records go to the request they came from.
    sink.release[2]!({ stored: 790, duplicates: 0, bad: [{ where: 'f item 7', reason: 'no' }], alerts: [] });
    expect(await d).toEqual({ stored: 790, duplicates: 0, requests: 2, bad: [] });
    expect(await f).toEqual({ stored: 790, duplicates: 0, requests: 2, bad: [{ where: 'f item 7', reason: 'no' }] });
    expect(sink.got[4]!.records.length).toBe(400);
    sink.release[3]!(new Error('disk full'));
    await expect(e).rejects.toThrow('disk full');
    sink.release[4]!({ stored: 400, duplicates: 0, bad: [], alerts: [] });
    await g;
  });

  it('refuses with OverloadedError when too many events wait', async () => {
    const sink = heldSink();
    const c = new WebhookCoalescer(sink, { maxInFlight: 1, maxPendingEvents: 800 });
    void c.submit('x', recs('a', 400), 'a ');
    void c.submit('x', recs('b', 400), 'b ');
    void c.submit('x', recs('c', 400), 'c ');
    await expect(c.submit('x', recs('d', 400), 'd ')).rejects.toBeInstanceOf(OverloadedError);
    expect(c.pending).toBe(800);
  });
});
