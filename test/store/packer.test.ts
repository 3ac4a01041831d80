import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { RecordPacker } from '../../src/store/records.js';
import { ev, tempDir } from '../helpers/events.js';

describe('batch dictionary', () => {
  it('gives every distinct string one entry and every row its own string, however many strings look alike', () => {
    // Strings of one length that differ in a single character, at every position in turn: whatever characters an
    // index samples, many of these share them, and one set differs only where it does not look.
    const base = 'system:serviceaccount:team-a:deploy-controller-x';
    const users: string[] = [];
    for (let p = 0; p < base.length; p++) for (const c of 'QRS') users.push(base.slice(0, p) + c + base.slice(p + 1));
    users.push(base, '', 'alice@example.com', 'system:anonymous');
    const distinct = new Set(users);
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    try {
      const redaction = { enabled: true, key: store.redactionKey };
      // Each user twice, in two rounds, so that every string is looked up again after all the others went in.
      const events = [...users, ...users].map((u) => normalise(toAuditEvent(ev({ user: { username: u, groups: ['g'] } })), 'c1', redaction));
      const p = new RecordPacker(events.length);
      for (const e of events) p.add(e);
      const records = p.finish();
      expect(records.dict.split('\u0000').filter((d) => distinct.has(d))).toHaveLength(distinct.size);
      expect(store.insert(records).flags.every(Boolean)).toBe(true);
      const rows = store.db.prepare('SELECT d.value AS user FROM events e JOIN dict d ON d.id = e.user ORDER BY e.blob_idx').all() as { user: string }[];
      expect(rows.map((r) => r.user)).toEqual(events.map((e) => e.user));
      const ids = store.db
        .prepare('SELECT count(*) AS n FROM dict WHERE value IN (SELECT value FROM dict) AND id IN (SELECT DISTINCT user FROM events)')
        .get() as { n: number };
      expect(ids.n).toBe(distinct.size);
    } finally {
      store.close();
    }
  });
});

describe('raw lines packed from read chunks', () => {
  it('stores each line byte for byte whether it shares its chunk with the one before, follows a CR, or stands alone', () => {
    const redaction = { enabled: true, key: Buffer.alloc(32) };
    const lines = Array.from({ length: 9 }, (_, i) => JSON.stringify(ev({ verb: i % 2 ? 'get' : 'list', user: { username: `u${i}é` } })));
    // Lines 0-3 in one chunk (LF), 4-5 in a chunk with CRLF endings, 6 as a string of its own, 7-8 in a third chunk.
    const chunkA = Buffer.from(lines.slice(0, 4).join('\n') + '\n');
    const chunkB = Buffer.from(lines.slice(4, 6).join('\r\n') + '\r\n');
    const chunkC = Buffer.from('\n' + lines.slice(7).join('\n'));
    const spans: [Buffer | undefined, number, number][] = [];
    const at = (chunk: Buffer, from: number, n: number) => {
      let start = from;
      for (let i = 0; i < n; i++) {
        let end = chunk.indexOf(10, start);
        if (end < 0) end = chunk.length;
        const stop = chunk[end - 1] === 13 ? end - 1 : end;
        spans.push([chunk, start, stop]);
        start = end + 1;
      }
    };
    at(chunkA, 0, 4);
    at(chunkB, 0, 2);
    spans.push([undefined, 0, 0]);
    at(chunkC, 1, 2);
    const p = new RecordPacker(2, 64);
    lines.forEach((text, i) => {
      const n = normalise(toAuditEvent(JSON.parse(text)), 'c1', redaction, text);
      const [b, s, e] = spans[i]!;
      expect(b === undefined || b.toString('utf8', s, e) === text).toBe(true);
      if (b) p.add(n, b, s, e);
      else p.add(n);
    });
    const records = p.finish();
    expect(records.count).toBe(9);
    expect(Buffer.from(records.raw).toString('utf8')).toBe(lines.join('\n'));
  });
});
