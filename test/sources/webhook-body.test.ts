import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DocumentError, DocumentSplitter } from '../../src/sources/json-splitter.js';
import { readAuditBody } from '../../src/sources/webhook-body.js';
import { BodyBuffers } from '../../src/sources/body-buffers.js';
import { decodeRecord } from '../../src/events/decode.js';
import type { AuditEvent } from '../../src/events/types.js';

function split(body: string, chunk = 7): string[] {
  const out: string[] = [];
  const s = new DocumentSplitter((i) => out.push(i.bytes.toString()));
  const b = Buffer.from(body);
  for (let i = 0; i < b.length; i += chunk) s.push(b.subarray(i, i + chunk));
  s.end();
  return out;
}

function event(i: number, extra: Record<string, unknown> = {}) {
  return {
    level: 'Metadata',
    auditID: `id-${i}`,
    stage: 'ResponseComplete',
    requestURI: `/api/v1/pods?x="${i}"\\`,
    verb: 'get',
    user: { username: 'a\\"b' },
    requestReceivedTimestamp: '2026-01-01T00:00:00.000001Z',
    ...extra,
  };
}

async function read(body: string | Buffer, limit = 1 << 20, chunk = 13) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const parts: Buffer[] = [];
  for (let i = 0; i < b.length; i += chunk) parts.push(b.subarray(i, i + chunk));
  return readAuditBody(Readable.from(parts), limit, 'test');
}

describe('DocumentSplitter', () => {
  it('splits EventList items, arrays and single events across any chunking, with escapes and unicode', () => {
    const items = Array.from({ length: 20 }, (_, i) => event(i, { annotations: { k: 'ü€😀\\\\"}]{[,' + i } }));
    const list = JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
    for (const chunk of [1, 2, 3, 5, 64, 1 << 20]) {
      expect(split(list, chunk).map((t) => JSON.parse(t))).toEqual(items);
      expect(split(JSON.stringify(items), chunk).map((t) => JSON.parse(t))).toEqual(items);
    }
    expect(split('{"kind":"EventList","items":[]}')).toEqual([]);
    expect(split('[]')).toEqual([]);
    // Pretty-printed, with items first.
    const pretty = JSON.stringify({ items: items.slice(0, 2), kind: 'EventList' }, null, 2);
    expect(split(pretty, 3).map((t) => JSON.parse(t))).toEqual(items.slice(0, 2));
  });

  it('agrees with JSON.parse on random documents under random chunking', () => {
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const str = () =>
      Array.from({ length: Math.floor(rnd() * 8) }, () => ['a', '"', '\\', '{', ']', ',', ':', 'é', '\n', '\u0001'][Math.floor(rnd() * 10)]).join('');
    const value = (d: number): unknown => {
      const k = Math.floor(rnd() * (d > 3 ? 4 : 7));
      if (k === 0) return str();
      if (k === 1) return Math.floor(rnd() * 1e6) / 7;
      if (k === 2) return rnd() < 0.5;
      if (k === 3) return null;
      if (k === 4 || k === 5) return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [str(), value(d + 1)]));
      return Array.from({ length: Math.floor(rnd() * 4) }, () => value(d + 1));
    };
    for (let round = 0; round < 300; round++) {
      const items = Array.from({ length: Math.floor(rnd() * 6) }, () => value(0));
      const doc =
        rnd() < 0.5 ? JSON.stringify(items) : JSON.stringify({ kind: 'EventList', [str() || 'x']: value(1), items, z: value(2) }, null, rnd() < 0.3 ? 1 : 0);
      const b = Buffer.from(doc);
      const out: string[] = [];
      const sp = new DocumentSplitter((it) => out.push(it.bytes.toString()));
      for (let i = 0; i < b.length;) {
        const step = 1 + Math.floor(rnd() * 9);
        sp.push(b.subarray(i, i + step));
        i += step;
      }
      sp.end();
      expect(
        out.map((t) => JSON.parse(t)),
        doc,
      ).toEqual(items);
    }
  });

  it('passes an item nested deeper than it keeps track of as that item, with its neighbours (a request body can nest so)', () => {
    const deep = `{"auditID":"deep","requestObject":${'['.repeat(3000)}"]}[{",{"a":${'{"b":'.repeat(2000)}1${'}'.repeat(2000)}}${']'.repeat(3000)}}`;
    const items = [JSON.stringify(event(1)), deep, JSON.stringify(event(2))];
    for (const chunk of [1, 7, 1000, 1 << 20]) {
      expect(split(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[${items.join(',')}]}`, chunk)).toEqual(items);
      expect(split(`[${items.join(',')}]`, chunk)).toEqual(items);
    }
    // Still one event per item: an unbalanced deep item is not allowed to swallow the rest of the body.
    expect(() => split(`[${'['.repeat(3000)}`, 64)).toThrow(DocumentError);
  });

  it('gives each item its own bytes, without the whitespace before its comma or bracket', () => {
    const items = [JSON.stringify(event(1)), JSON.stringify(event(2))];
    for (const chunk of [1, 5, 1 << 20]) {
      expect(split(`[ ${items[0]} ,\n ${items[1]}\r\n\t]`, chunk)).toEqual(items);
      expect(split(`{"kind":"EventList","items":[\n  ${items[0]}\n  ,\n  ${items[1]}\n]}`, chunk)).toEqual(items);
    }
  });

  it('refuses structurally broken documents with a DocumentError', () => {
    for (const bad of ['', '   ', '{', '[1,', '{"items":[{}', '[1,]', '[,1]', '{"a":1}}', '[1] x', '"str"', '42', '{"items":[1]]', '{"a":"\\"}']) {
      let err: unknown;
      try {
        split(bad, 2);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(DocumentError);
    }
  });
});

describe('readAuditBody', () => {
  it('gives EventList items the list kind and apiVersion, in the value and the stored text', async () => {
    const body = JSON.stringify({
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1beta1',
      metadata: {},
      items: [event(1), { kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...event(2) }],
    });
    const { records } = await read(body);
    expect(records).toHaveLength(2);
    // Parsed later, by the pipeline, like a log line.
    const [one, two] = records.map((r) => decodeRecord(r)[0] as { event: AuditEvent; text?: string });
    expect(JSON.parse(one!.text!)).toEqual({ kind: 'Event', apiVersion: 'audit.k8s.io/v1beta1', ...event(1) });
    expect(one!.event).toEqual(JSON.parse(one!.text!));
    expect(two!.event.apiVersion).toBe('audit.k8s.io/v1');
    expect(JSON.parse(two!.text!)).toEqual({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...event(2) });
  });

  it('gives the items the list fields named after them too (the whole body is in hand), and refuses a late wrong version', async () => {
    const body = `{"items":[${JSON.stringify(event(1))}],"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1"}`;
    const { records } = await read(body);
    expect((decodeRecord(records[0]!)[0] as { event: AuditEvent }).event.apiVersion).toBe('audit.k8s.io/v1beta1');
    await expect(read(`{"items":[${JSON.stringify(event(1))}],"apiVersion":"audit.k8s.io/v1alpha1"}`)).rejects.toMatchObject({
      statusCode: 400,
      message: expect.stringContaining('apiVersion "audit.k8s.io/v1alpha1" is not audit.k8s.io/v1 or v1beta1'),
    });
  });

  it('takes one Event, and drops multi-line text so stored raw lines stay lines', async () => {
    const { records } = await read(JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...event(1) }, null, 2));
    expect(records).toHaveLength(1);
    expect(records[0]!.text).toBeUndefined();
    expect((records[0]!.value as { auditID: string }).auditID).toBe('id-1');
  });

  it("leaves an item that does not parse to the pipeline, as that item's bad input", async () => {
    const { records } = await read(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"a":tru},${JSON.stringify(event(1))}]}`);
    expect(records.map((r) => r.where)).toEqual(['test item 0', 'test item 1']);
    expect(decodeRecord(records[0]!)).toEqual([{ error: expect.stringMatching(/^not JSON/) }]);
    expect(decodeRecord(records[1]!)).toEqual([{ event: expect.objectContaining({ auditID: 'id-1' }), text: expect.any(String) }]);
  });

  it('refuses structural errors, wrong kinds and versions, and bodies over the limit', async () => {
    await expect(read('{"kind":"EventList","items":[{"a":1}}]}')).rejects.toMatchObject({ statusCode: 400 });
    await expect(read('{"kind":"PodList","items":[]}')).rejects.toMatchObject({ statusCode: 400 });
    await expect(read('{"kind":"EventList","apiVersion":"v1","items":[]}')).rejects.toMatchObject({ statusCode: 400 });
    await expect(read('{"kind":"EventList","items":5}')).rejects.toMatchObject({ statusCode: 400 });
    await expect(read(JSON.stringify([event(1), event(2)]), 100)).rejects.toMatchObject({ statusCode: 413 });
    expect((await read('{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":null}')).records).toEqual([]);
  });

  it('reads into a recycled buffer that is taken again only once released, growing past a short Content-Length', async () => {
    const pool = new BodyBuffers(1 << 20);
    const body = (n: number) => Buffer.from(JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [event(n)] }));
    const parts = (b: Buffer) => Readable.from([b.subarray(0, 10), b.subarray(10)]);
    const idOf = (r: { text?: string | Buffer }) => JSON.parse(r.text!.toString()).auditID as string;
    const a = await readAuditBody(parts(body(1)), 1 << 20, 'a', pool, body(1).length);
    // Not released: the next body gets another buffer, and a's record still reads a's bytes.
    const b = await readAuditBody(parts(body(2)), 1 << 20, 'b', pool, body(2).length);
    expect([idOf(a.records[0]!), idOf(b.records[0]!)]).toEqual(['id-1', 'id-2']);
    expect((b.records[0]!.text as Buffer).buffer).not.toBe((a.records[0]!.text as Buffer).buffer);
    a.release();
    a.release();
    expect(pool.bytes).toBe(64 * 1024);
    // Released: the next body is read into a's buffer.
    const c = await readAuditBody(parts(body(3)), 1 << 20, 'c', pool, 5);
    expect((c.records[0]!.text as Buffer).buffer).toBe((a.records[0]!.text as Buffer).buffer);
    expect([idOf(c.records[0]!), idOf(b.records[0]!)]).toEqual(['id-3', 'id-2']);
    // A body longer than the buffer it started in (Content-Length too short, or none) moves to a larger one.
    const big = Buffer.from(JSON.stringify(Array.from({ length: 400 }, (_, i) => event(i))));
    expect(big.length).toBeGreaterThan(64 * 1024);
    const d = await readAuditBody(Readable.from([big.subarray(0, 1000), big.subarray(1000)]), 1 << 20, 'd', pool, 1000);
    expect(d.records.map(idOf)).toEqual(Array.from({ length: 400 }, (_, i) => `id-${i}`));
    // A refused body gives its buffer back at once; the kept bytes never pass the bound.
    const before = pool.bytes;
    await expect(readAuditBody(Readable.from([Buffer.from('{"kind":"PodList","items":[]}')]), 1 << 20, 'e', pool)).rejects.toMatchObject({ statusCode: 400 });
    expect(pool.bytes).toBe(before);
    // Buffers in use and kept together stay within the bound: the first given back while another is in use is let go.
    const small = new BodyBuffers(64 * 1024);
    const [x, y] = [small.take(1), small.take(1)];
    small.give(x);
    expect(small.bytes).toBe(0);
    small.give(y);
    expect(small.bytes).toBe(64 * 1024);
  });
});
