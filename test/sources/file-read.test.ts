import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeRecord } from '../../src/events/decode.js';
import { readEventFiles, readFileRecords } from '../../src/sources/file-read.js';
import { ev, lines, tempDir } from '../helpers/events.js';

async function collect(path: string) {
  const out: { event?: unknown; error?: string; where: string }[] = [];
  for await (const r of readEventFiles([path])) out.push(r);
  return out;
}

describe('reading audit log files', () => {
  it('reads JSON lines, plain and gzipped, with line numbers for bad ones', async () => {
    const d = tempDir();
    const body = lines([ev(), ev()]) + 'not json\n' + JSON.stringify({ kind: 0 }) + '\n\n' + lines([ev()]);
    writeFileSync(join(d, 'a.log'), body);
    writeFileSync(join(d, 'a.log.gz'), gzipSync(body));
    for (const f of ['a.log', 'a.log.gz']) {
      const rs = await collect(join(d, f));
      expect(rs.filter((r) => r.event)).toHaveLength(3);
      const bad = rs.filter((r) => r.error);
      expect(bad.map((b) => b.where)).toEqual([`${join(d, f)}:3`, `${join(d, f)}:4`]);
      expect(bad[1]!.error).toContain('kind is 0');
    }
  });

  it('never drops or splits lines across read-buffer boundaries', async () => {
    const d = tempDir();
    const evs = Array.from({ length: 6000 }, () => ev({ userAgent: 'x'.repeat(Math.floor(Math.random() * 900)) }));
    writeFileSync(join(d, 'big.log'), lines(evs));
    let progress = 0;
    let n = 0;
    for await (const recs of readFileRecords(join(d, 'big.log'), { onBytes: (b) => (progress += b) })) n += recs.length;
    expect(n).toBe(6000);
    const rs = await collect(join(d, 'big.log'));
    expect(rs.filter((r) => r.error)).toEqual([]);
    expect(progress).toBeGreaterThan(4_000_000);
  });

  it('reads a file whose size is an exact multiple of the read size to its last line, and reports every byte', async () => {
    const d = tempDir();
    const evs = Array.from({ length: 2000 }, () => ev());
    let body = lines(evs);
    const size = 2 * 1024 * 1024;
    expect(body.length).toBeLessThan(size);
    // Pad the last event's user agent so the file is exactly two 1 MiB reads.
    const last = evs.at(-1)!;
    last.userAgent = 'x'.repeat(size - body.length + String(last.userAgent).length);
    body = lines(evs);
    expect(Buffer.byteLength(body)).toBe(size);
    writeFileSync(join(d, 'exact.log'), body);
    let progress = 0;
    const recs = [];
    for await (const batch of readFileRecords(join(d, 'exact.log'), { onBytes: (b) => (progress += b) })) recs.push(...batch);
    expect(recs).toHaveLength(2000);
    expect(JSON.parse(recs.at(-1)!.text as string).userAgent).toBe(last.userAgent);
    expect(progress).toBe(size);
  });

  it('reads a file that starts with a UTF-8 byte order mark as if it did not', async () => {
    const d = tempDir();
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const items = [ev(), ev(), ev()];
    writeFileSync(join(d, 'lines.log'), Buffer.concat([bom, Buffer.from(lines(items))]));
    writeFileSync(
      join(d, 'list.json'),
      Buffer.concat([bom, Buffer.from(JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }, null, 2))]),
    );
    writeFileSync(join(d, 'arr.json.gz'), gzipSync(Buffer.concat([bom, Buffer.from(JSON.stringify(items))])));
    for (const f of ['lines.log', 'list.json', 'arr.json.gz']) {
      const rs = await collect(join(d, f));
      expect(
        rs.filter((r) => r.error),
        f,
      ).toEqual([]);
      expect(
        rs.map((r) => (r.event as { auditID: string }).auditID),
        f,
      ).toEqual(items.map((e) => e.auditID));
    }
  });

  it('streams EventList and array documents, pretty-printed or not', async () => {
    const d = tempDir();
    const items = [ev(), ev(), { kind: 0 }, ev()];
    writeFileSync(join(d, 'list.json'), JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items }, null, 2));
    writeFileSync(join(d, 'list1.json'), JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }));
    writeFileSync(join(d, 'arr.json'), JSON.stringify(items, null, 1));
    writeFileSync(join(d, 'one.json'), JSON.stringify(ev(), null, 2));
    for (const f of ['list.json', 'list1.json', 'arr.json']) {
      const rs = await collect(join(d, f));
      expect(
        rs.filter((r) => r.event),
        f,
      ).toHaveLength(3);
      expect(
        rs.filter((r) => r.error),
        f,
      ).toHaveLength(1);
    }
    expect((await collect(join(d, 'one.json'))).filter((r) => r.event)).toHaveLength(1);
  });

  it("streams a pretty-printed EventList whose items lack kind and apiVersion (as the webhook sends them): they take the list's", async () => {
    const d = tempDir();
    const items = [ev(), ev(), ev()].map(({ kind: _k, apiVersion: _v, ...rest }) => rest);
    writeFileSync(join(d, 'beta.json'), JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1beta1', metadata: {}, items }, null, 2));
    const rs = await collect(join(d, 'beta.json'));
    expect(rs.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
    expect(rs.map((r) => r.event)).toEqual(items.map((i) => ({ kind: 'Event', apiVersion: 'audit.k8s.io/v1beta1', ...i })));
    expect(rs.map((r) => r.where)).toEqual(items.map((_, i) => `${join(d, 'beta.json')} item ${i}`));
  });

  it('says so when an EventList names its kind or apiVersion only after its items, and they differ from what the items took', async () => {
    const d = tempDir();
    const items = [ev(), ev()].map(({ kind: _k, apiVersion: _v, ...rest }) => rest);
    // Keys sorted (jq -S): apiVersion still comes before items, kind after; nothing to report.
    writeFileSync(join(d, 'sorted.json'), JSON.stringify({ apiVersion: 'audit.k8s.io/v1beta1', items, kind: 'EventList' }, null, 2));
    const sorted = await collect(join(d, 'sorted.json'));
    expect(sorted.map((r) => (r.event as { apiVersion: string }).apiVersion)).toEqual(['audit.k8s.io/v1beta1', 'audit.k8s.io/v1beta1']);
    writeFileSync(join(d, 'late.json'), JSON.stringify({ items, kind: 'EventList', apiVersion: 'audit.k8s.io/v1beta1' }, null, 2));
    const late = await collect(join(d, 'late.json'));
    expect(late.filter((r) => r.event)).toHaveLength(2);
    expect(late.filter((r) => r.error).map((r) => r.error)).toEqual([
      expect.stringMatching(
        /^the EventList names its kind or apiVersion after its items, which were read as audit\.k8s\.io\/v1: the list is audit\.k8s\.io\/v1beta1\./,
      ),
    ]);
    writeFileSync(join(d, 'pods.json'), JSON.stringify({ items, kind: 'PodList' }));
    const pods = await collect(join(d, 'pods.json'));
    expect(pods.filter((r) => r.error).map((r) => r.error)).toEqual([
      'not an audit EventList: a document with an items array has kind "PodList", expected "EventList"',
    ]);
  });

  it('keeps a one-line record as its stored text, and re-serialises a pretty-printed one (stored raw events are lines)', () => {
    const e = ev();
    const one = JSON.stringify(e);
    expect(decodeRecord({ text: one, where: 'x' })).toEqual([{ event: e, text: one }]);
    expect(decodeRecord({ text: Buffer.from(one), where: 'x' })).toEqual([{ event: e, text: one }]);
    expect(decodeRecord({ text: JSON.stringify(e, null, 2), where: 'x' })).toEqual([{ event: e, text: undefined }]);
    expect(decodeRecord({ text: one.replace(',', ',\r'), where: 'x' })).toEqual([{ event: e, text: undefined }]);
  });

  it('rejects an over-long line as bad input and reads on', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'long.log'), lines([ev()]) + JSON.stringify(ev({ userAgent: 'y'.repeat(5000) })) + '\n' + lines([ev()]));
    const out: string[] = [];
    for await (const recs of readFileRecords(join(d, 'long.log'), { maxLine: 2000 })) for (const r of recs) out.push(r.error ?? 'ok');
    expect(out).toEqual(['ok', expect.stringContaining('over the 2000-byte limit'), 'ok']);
  });

  it('rejects a missing file with its name, not a crash', async () => {
    await expect(collect('/nonexistent/audit.log')).rejects.toThrow(/ENOENT.*\/nonexistent\/audit.log/);
  });

  it('reports a truncated document without crashing', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'cut.json'), JSON.stringify({ kind: 'EventList', items: [ev(), ev()] }, null, 2).slice(0, -40));
    const rs = await collect(join(d, 'cut.json'));
    expect(rs.some((r) => r.error?.includes('not a valid JSON document'))).toBe(true);
  });
});
