import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BodySplitter, readAuditBody, WebhookError } from '../../src/api/webhook.js';

function split(body: string, chunk = 7): string[] {
  const out: string[] = [];
  const s = new BodySplitter((i) => out.push(i.text));
  const b = Buffer.from(body);
  for (let i = 0; i < b.length; i += chunk) s.push(b.subarray(i, i + chunk));
  s.end();
  return out;
}

function event(i: number, extra: Record<string, unknown> = {}) {
  return { level: 'Metadata', auditID: `id-${i}`, stage: 'ResponseComplete', requestURI: `/api/v1/pods?x="${i}"\\`, verb: 'get', user: { username: 'a\\"b' }, requestReceivedTimestamp: '2026-01-01T00:00:00.000001Z', ...extra };
}

async function read(body: string | Buffer, limit = 1 << 20, chunk = 13) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const parts: Buffer[] = [];
  for (let i = 0; i < b.length; i += chunk) parts.push(b.subarray(i, i + chunk));
  return readAuditBody(Readable.from(parts), limit, 'test');
}

describe('BodySplitter', () => {
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

  it('refuses structurally broken bodies with a 400', () => {
    for (const bad of ['', '   ', '{', '[1,', '{"items":[{}', '[1,]', '[,1]', '{"a":1}}', '[1] x', '"str"', '42', '{"items":[1]]', '{"a":"\\"}']) {
      let err: unknown;
      try {
        split(bad, 2);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(WebhookError);
      expect((err as WebhookError).statusCode, bad).toBe(400);
    }
  });
});

describe('readAuditBody', () => {
  it('gives EventList items the list kind and apiVersion, in the value and the stored text', async () => {
    const body = JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1beta1', metadata: {}, items: [event(1), { kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...event(2) }] });
    const { records } = await read(body);
    expect(records).toHaveLength(2);
    expect(JSON.parse(records[0]!.text as string)).toEqual({ kind: 'Event', apiVersion: 'audit.k8s.io/v1beta1', ...event(1) });
    expect(records[0]!.value).toEqual(JSON.parse(records[0]!.text as string));
    expect((records[1]!.value as { apiVersion: string }).apiVersion).toBe('audit.k8s.io/v1');
  });

  it('takes one Event, and drops multi-line text so stored raw lines stay lines', async () => {
    const { records } = await read(JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...event(1) }, null, 2));
    expect(records).toHaveLength(1);
    expect(records[0]!.text).toBeUndefined();
    expect((records[0]!.value as { auditID: string }).auditID).toBe('id-1');
  });

  it('refuses item syntax errors, wrong kinds and versions, and bodies over the limit', async () => {
    await expect(read('{"kind":"EventList","items":[{"a":tru}]}')).rejects.toMatchObject({ statusCode: 400, message: expect.stringContaining('event 0') });
    await expect(read('{"kind":"PodList","items":[]}')).rejects.toMatchObject({ statusCode: 400 });
    await expect(read('{"kind":"EventList","apiVersion":"v1","items":[]}')).rejects.toMatchObject({ statusCode: 400 });
    await expect(read('{"kind":"EventList","items":5}')).rejects.toMatchObject({ statusCode: 400 });
    await expect(read(JSON.stringify([event(1), event(2)]), 100)).rejects.toMatchObject({ statusCode: 413 });
    expect((await read('{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":null}')).records).toEqual([]);
  });
});
