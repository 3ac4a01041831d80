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
