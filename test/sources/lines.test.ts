import { describe, expect, it } from 'vitest';
import { LineSplitter, lineText, type Line, type LongLine } from '../../src/sources/lines.js';

describe('line splitter keeping bytes', () => {
  it('gives every line of ASCII and non-ASCII chunks its text and bytes, however often a text is asked for', () => {
    const lines = Array.from({ length: 300 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(i % 50)}"}`);
    lines[7] = '{"user":"jürgen"}';
    lines[120] = '{"crlf":true}\r';
    const chunks = [Buffer.from(lines.slice(0, 100).join('\n') + '\n'), Buffer.from(lines.slice(100).join('\n') + '\n')];
    // The second chunk is split mid-line so one line is carried across two pushes.
    const cut = 2000;
    const pushes = [chunks[0]!, chunks[1]!.subarray(0, cut), chunks[1]!.subarray(cut)];
    const out: Line[] = [];
    const s = new LineSplitter(1 << 20, 0, 0, true);
    for (const c of pushes) s.push(Buffer.from(c), (l: Line | LongLine) => out.push(l as Line));
    expect(out).toHaveLength(300);
    // All three kinds: lines of an ASCII chunk (decoded from it), of other chunks, and one carried across two.
    expect(out.filter((l) => l.text === undefined).length).toBeGreaterThan(100);
    expect(out.filter((l) => l.text !== undefined).length).toBeGreaterThan(100);
    const want = lines.map((l) => l.replace(/\r$/, ''));
    // Asked in order, then asked again out of order: the same text each time.
    expect(out.map(lineText)).toEqual(want);
    for (const i of [5, 250, 0, 299, 120, 7]) expect(lineText(out[i]!)).toBe(want[i]);
    for (let i = 0; i < out.length; i++) {
      const l = out[i]!;
      expect(l.data!.toString('utf8', l.dataStart, l.dataEnd)).toBe(want[i]);
    }
  });

  it('gives an unterminated last line (flushed at the end of a file) its text and bytes, without a trailing CR', () => {
    for (const last of ['{"user":"jürgen"}\r', '{"n":1}\r', '{"n":2}']) {
      const out: Line[] = [];
      const s = new LineSplitter(1 << 20, 0, 0, true);
      s.push(Buffer.from(`{"n":0}\n${last}`), (l) => out.push(l as Line));
      s.flush((l) => out.push(l as Line));
      expect(out).toHaveLength(2);
      const l = out[1]!;
      const want = last.replace(/\r$/, '');
      expect(lineText(l)).toBe(want);
      expect(l.data).toBeDefined();
      expect(l.data!.toString('utf8', l.dataStart, l.dataEnd)).toBe(want);
      expect(l.end).toBe(Buffer.byteLength(`{"n":0}\n${last}`));
    }
  });

  it('leaves out a byte order mark at the start of the stream, counting its bytes in the offsets, and only there', () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    for (const keepBytes of [true, false]) {
      const out: Line[] = [];
      const s = new LineSplitter(1 << 20, 0, 0, keepBytes);
      s.push(Buffer.concat([bom, Buffer.from('{"n":0}\n{"n":1}\n')]), (l) => out.push(l as Line));
      // A mark further on is the line's own (bad input, reported as such), not skipped.
      s.push(Buffer.concat([bom, Buffer.from('{"n":2}\n')]), (l) => out.push(l as Line));
      expect(out.map(lineText)).toEqual(['{"n":0}', '{"n":1}', '\ufeff{"n":2}']);
      expect(out.map((l) => l.end)).toEqual([11, 19, 30]);
      if (keepBytes) expect(out[0]!.data!.toString('utf8', out[0]!.dataStart, out[0]!.dataEnd)).toBe('{"n":0}');
    }
    // Resumed from a checkpoint past the start, a stream's first bytes are not the file's.
    const out: Line[] = [];
    new LineSplitter(1 << 20, 100, 0, true).push(Buffer.concat([bom, Buffer.from('{"n":3}\n')]), (l) => out.push(l as Line));
    expect(lineText(out[0]!)).toBe('\ufeff{"n":3}');
  });
});
