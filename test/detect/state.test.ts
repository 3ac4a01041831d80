import { describe, expect, it } from 'vitest';
import { RecentIds, SequenceState, ThresholdState } from '../../src/detect/state.js';

const S = 1_000_000;

describe('detection state stays bounded and follows event time', () => {
  it('RecentIds forgets by age and by count', () => {
    const r = new RecentIds(3, 60 * S);
    r.add('a', 0);
    r.add('b', 10 * S);
    expect(r.has('a')).toBe(true);
    r.add('c', 61 * S); // a is now older than the ttl
    expect(r.has('a')).toBe(false);
    r.add('d', 62 * S);
    r.add('e', 63 * S); // over the count: the oldest (b) goes
    expect([r.has('b'), r.has('c'), r.has('d'), r.has('e')]).toEqual([false, true, true, true]);
    expect(r.size).toBe(3);
  });

  it('RecentIds remembers an id for its ttl and keeps the newest max', () => {
    const ttl = 800 * S;
    const r = new RecentIds(1000, ttl);
    for (let t = 0; t <= 2000; t++) r.add(`id-${t}`, t * S); // one a second
    for (let t = 0; t <= 2000; t++) {
      const age = (2000 - t) * S;
      expect(r.has(`id-${t}`), `age ${age / S} s`).toBe(age <= ttl);
    }
    // By count: 10,000 ids at one instant; the newest 1,000 stay.
    const c = new RecentIds(1000, ttl);
    for (let i = 0; i < 10_000; i++) c.add(`id-${i}`, 0);
    expect(c.size).toBe(1000);
    expect(c.has('id-9999') && c.has('id-9000')).toBe(true);
    expect(c.has('id-8999')).toBe(false);
    // Adding an id already held changes nothing and says so: it keeps its place, and goes when its turn comes.
    const m = new RecentIds(16, ttl);
    expect(m.add('kept', 0)).toBe(true);
    for (let i = 0; i < 14; i++) m.add(`x-${i}`, 0);
    expect(m.add('kept', 5)).toBe(false);
    expect(m.size).toBe(15);
    m.add('x-14', 0);
    expect(m.has('kept')).toBe(true);
    m.add('x-15', 0);
    expect(m.has('kept')).toBe(false);
    expect(m.has('x-15')).toBe(true);
    m.delete('x-15');
    expect(m.has('x-15')).toBe(false);
    expect(m.save().map(([id]) => id)).not.toContain('x-15');
  });

  it('RecentIds: events of sources at different lags interleaving in time are all kept, and forgotten in turn', () => {
    const r = new RecentIds(100_000, 3600 * S);
    // A tail catching up an hour behind the webhook's live events, alternating, each side moving forward.
    for (let i = 0; i < 20_000; i++) r.add(`id-${i}`, (i % 2 === 0 ? 0 : 3000 * S) + i * 1000);
    expect(r.size).toBe(20_000);
    expect(r.has('id-0') && r.has('id-19999')).toBe(true);
    // Time-to-live and count bounds still hold: an hour later, the early ids are gone.
    r.add('late', 6700 * S); // the newest of the others is at 3,020 s
    expect(r.has('id-1')).toBe(false);
    expect(r.size).toBe(1);
    expect(r.has('late')).toBe(true);
  });

  it('ThresholdState counts events that arrive slightly out of order', () => {
    const t = new ThresholdState(3, 60 * S, false, 10);
    expect(t.add('k', 30 * S, '')).toBeUndefined();
    expect(t.add('k', 10 * S, '')).toBeUndefined();
    expect(t.add('k', 20 * S, '')).toEqual({ count: 3, firstUs: 10 * S });
  });

  it('ThresholdState ignores events older than the window', () => {
    const t = new ThresholdState(3, 60 * S, true, 10);
    t.add('k', 0, 'a');
    t.add('k', 100 * S, 'b');
    expect(t.add('k', 101 * S, 'c')).toBeUndefined(); // a left the window
    expect(t.add('k', 102 * S, 'd')).toMatchObject({ count: 3, values: ['b', 'c', 'd'] });
  });

  it('keeps at most maxKeys keys', () => {
    const t = new ThresholdState(5, 60 * S, false, 100);
    for (let i = 0; i < 1000; i++) t.add(`user-${i}`, i, '');
    expect(t.size).toBe(100);
    const s = new SequenceState(2, 60 * S, 50);
    for (let i = 0; i < 1000; i++) s.advance(`user-${i}`, 0, i, `id-${i}`);
    expect(s.size).toBe(50);
    // The newest keys survive: their sequences still complete.
    expect(s.advance('user-999', 1, 2000, 'x')).toMatchObject({ ids: ['id-999', 'x'] });
    expect(s.advance('user-0', 1, 2000, 'y')).toBeUndefined();
  });
});

describe('detection state saved and loaded', () => {
  // Through JSON, as it is stored.
  const viaJson = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

  it('RecentIds: a loaded set remembers what the saved one did, and still forgets by age', () => {
    const a = new RecentIds(10, 60 * S);
    a.add('x', 0);
    a.add('y', 30 * S);
    const b = new RecentIds(10, 60 * S);
    expect(b.load(viaJson(a.save()))).toBe(2);
    expect([b.has('x'), b.has('y'), b.has('z')]).toEqual([true, true, false]);
    b.add('z', 70 * S); // x is now older than the ttl; y is not
    expect([b.has('x'), b.has('y')]).toEqual([false, true]);
  });

  it('ThresholdState: counting goes on from the saved count, and a key that fired stays quiet for its window', () => {
    const a = new ThresholdState(3, 60 * S, false, 10);
    a.add('k', 0, '');
    a.add('k', 1 * S, '');
    for (let i = 0; i < 3; i++) a.add('q', i * S, ''); // q fires at 2 s
    const b = new ThresholdState(3, 60 * S, false, 10);
    expect(b.load(viaJson(a.save()))).toBe(2);
    expect(b.add('k', 2 * S, '')).toEqual({ count: 3, firstUs: 0 });
    expect(b.add('q', 10 * S, '')).toBeUndefined(); // inside the window of q's alert
    const fresh = new ThresholdState(3, 60 * S, false, 10);
    expect(fresh.add('k', 2 * S, '')).toBeUndefined();
  });

  it('ThresholdState: the requests counted are kept, so a request sent again after a restart counts once; a state saved without them loads', () => {
    const a = new ThresholdState(3, 60 * S, false, 10);
    a.add('k', 0, '', undefined, 'r1');
    a.add('k', 1 * S, '', undefined, 'r2');
    const b = new ThresholdState(3, 60 * S, false, 10);
    b.load(viaJson(a.save()));
    expect(b.add('k', 1 * S, '', undefined, 'r2')).toBeUndefined(); // r2 again: still two
    expect(b.add('k', 2 * S, '', undefined, 'r3')).toEqual({ count: 3, firstUs: 0 });
    const old = new ThresholdState(3, 60 * S, false, 10);
    expect(old.load(viaJson(a.save().map((e) => e.slice(0, 5))))).toBe(1);
    expect(old.add('k', 2 * S, '', undefined, 'r3')).toEqual({ count: 3, firstUs: 0 });
  });

  it('ThresholdState: distinct values and their times are kept', () => {
    const a = new ThresholdState(3, 60 * S, true, 10);
    a.add('k', 0, 'a');
    a.add('k', 50 * S, 'b');
    const b = new ThresholdState(3, 60 * S, true, 10);
    b.load(viaJson(a.save()));
    expect(b.add('k', 70 * S, 'c')).toBeUndefined(); // a (at 0 s) has left the window
    expect(b.add('k', 71 * S, 'd')).toMatchObject({ count: 3, values: ['b', 'c', 'd'], firstUs: 50 * S });
  });

  it('SequenceState: a sequence in progress completes after the load', () => {
    const a = new SequenceState(2, 60 * S, 10);
    a.advance('eve', 0, 0, 'id-1');
    const b = new SequenceState(2, 60 * S, 10);
    expect(b.load(viaJson(a.save()))).toBe(1);
    expect(b.advance('eve', 1, 10 * S, 'id-2')).toEqual({ times: [0, 10 * S], ids: ['id-1', 'id-2'] });
  });

  it('takes damaged data without throwing, skipping what is not of its shape, within its own bounds', () => {
    const junk = [
      null,
      1,
      'x',
      {},
      [null],
      [[1, 2]],
      [['k']],
      [['k', 'not a number']],
      [['k', [1, 'x'], [], null, 1]],
      [['k', [1], [], 'x', 1]],
      [['k', [0, 1], ['a']]],
      [['k', [Infinity]]],
    ];
    for (const j of junk) {
      expect(new RecentIds(10, S).load(j)).toBe(0);
      expect(new ThresholdState(3, S, false, 10).load(j)).toBe(0);
      expect(new SequenceState(3, S, 10).load(j)).toBe(0);
    }
    // A sequence saved with more steps than this one has cannot continue here.
    expect(new SequenceState(2, S, 10).load([['k', [0, 1], ['a', 'b']]])).toBe(0);
    // At most maxKeys keys, the most recently used kept.
    const t = new ThresholdState(3, S, false, 2);
    expect(
      t.load([
        ['a', [0], [], null, 0],
        ['b', [0], [], null, 0],
        ['c', [0], [], null, 0],
      ]),
    ).toBe(3);
    expect(t.size).toBe(2);
    // Distinct values past what a key can hold (count - 1): the newest kept, so the next one fires at `count`.
    const d = new ThresholdState(3, 60 * S, true, 10);
    d.load([
      [
        'k',
        [],
        [
          ['a', 1],
          ['b', 2],
          ['c', 3],
          ['d', 4],
          ['e', 5],
        ],
        null,
        5,
      ],
    ]);
    expect(d.add('k', 6 * S, 'f')).toMatchObject({ count: 3, values: ['d', 'e', 'f'] });
    const ids = new RecentIds(2, 60 * S);
    ids.load([
      ['a', 0],
      ['b', 1],
      ['c', 2],
    ]);
    expect([ids.has('a'), ids.has('b'), ids.has('c')]).toEqual([false, true, true]);
  });
});
