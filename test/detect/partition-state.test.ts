import { describe, expect, it } from 'vitest';
import { createDetector } from '../../src/detect/index.js';
import { stateEntries, trimState, type DetectionState } from '../../src/detect/saved-state.js';
import { RecentIds, SequenceState, ThresholdState } from '../../src/detect/state.js';
import { ev } from './helpers.js';

// Detection state split by the Kafka partition its events came from: a detector saves, drops and loads one
// partition's share when the partition moves to another detector (see src/sources/kafka-state.ts).

const denied = (user: string, at: string) => ({ verb: 'list', code: 403, user, objectRef: { resource: 'pods', namespace: 'web' }, at });
const rbac = (user: string, at: string) => ({
  verb: 'create',
  user,
  at,
  objectRef: { resource: 'rolebindings', apiGroup: 'rbac.authorization.k8s.io', namespace: 'web', name: 'rb' },
});
const pod = (user: string, at: string) => ({ verb: 'create', user, at, objectRef: { resource: 'pods', namespace: 'web', name: 'p1' } });
const copy = (s: unknown) => JSON.parse(JSON.stringify(s)) as unknown;
const denials = (user: string, from: number, n: number) => Array.from({ length: n }, (_, i) => ev(denied(user, `+${from + i}s`)));

describe('detection state by partition (engine)', { timeout: 30_000 }, () => {
  it('a partition moves: its windows go on in the new detector, the other partitions stay where they are, nothing fires twice', async () => {
    const a = await createDetector();
    // eve's events come from partition p0, mallory's from p1: six denials each (the rule fires at ten).
    await a.detect(denials('eve', 0, 6), 'events/0');
    await a.detect(denials('mallory', 0, 6), 'events/1');
    await a.detect([ev(rbac('bob', '+1s'))], 'events/0'); // the first step of a sequence, in p0
    expect(a.stateChanged('events/0')).toBe(true);
    const p0 = copy(a.saveState('events/0')) as DetectionState;
    expect(a.stateChanged('events/0')).toBe(false);
    expect(a.stateChanged('events/1')).toBe(true);
    // Only p0's entries: eve's window and bob's sequence, not mallory's window.
    expect(JSON.stringify(p0)).toContain('eve');
    expect(JSON.stringify(p0)).toContain('bob');
    expect(JSON.stringify(p0)).not.toContain('mallory');

    // p0 moves to detector b: a drops it, b loads it.
    expect(a.dropState('events/0')).toBeGreaterThanOrEqual(2);
    const b = await createDetector();
    const r = b.loadState(p0, 'events/0');
    expect(r.keys).toBeGreaterThanOrEqual(2);
    expect(r.skipped).toBe(0);

    // The rest of eve's burst and bob's sequence reach b: each fires there, once.
    const inB = await b.detect([...denials('eve', 10, 4), ev(pod('bob', '+20s'))], 'events/0');
    expect(inB.map((x) => x.rule).sort()).toEqual(['forbidden-burst', 'workload-after-rbac-change']);
    // a forgot them: the same events there start new windows and raise nothing.
    expect(await a.detect([...denials('eve', 10, 4), ev(pod('bob', '+20s'))], 'events/0')).toEqual([]);
    // mallory's window stayed in a, whole.
    expect((await a.detect(denials('mallory', 10, 4), 'events/1')).map((x) => x.rule)).toEqual(['forbidden-burst']);
    // A second load of the same snapshot (a partition given back) does not replace later windows b holds.
    b.loadState(p0, 'events/0');
    expect(await b.detect(denials('eve', 15, 1), 'events/0')).toEqual([]);
  });

  it('state without an origin (a single node) is saved whole and never dropped by a partition', async () => {
    const d = await createDetector();
    await d.detect(denials('eve', 0, 6));
    expect(d.dropState('events/0')).toBe(0);
    expect(JSON.stringify(d.saveState())).toContain('eve');
    expect(JSON.stringify(d.saveState('events/0'))).not.toContain('eve');
  });
});

describe('state structures with origins', () => {
  it('RecentIds, ThresholdState and SequenceState save, drop and load one origin', () => {
    const ids = new RecentIds(100, 1e12);
    ids.add('a', 1, 'p0');
    ids.add('b', 2, 'p1');
    ids.add('c', 3);
    // Saved with the time it was added at.
    expect(ids.save('p0')).toEqual([['a', 1]]);
    expect(ids.drop('p0')).toBe(1);
    expect(ids.has('a')).toBe(false);
    expect(ids.has('b') && ids.has('c')).toBe(true);
    const other = new RecentIds(100, 1e12);
    other.load([['a', 1]], 'p0');
    expect(other.save('p0')).toEqual([['a', 1]]);
    // Oldest first, each with its own time; an id added again (under another origin) keeps its first origin and time.
    const gens = new RecentIds(16, 1e12);
    for (let i = 0; i < 6; i++) gens.add(`x${i}`, i * 10, i % 2 === 0 ? 'p0' : 'p1');
    expect(gens.add('x0', 60, 'p1')).toBe(false);
    expect(gens.save('p0')).toEqual([
      ['x0', 0],
      ['x2', 20],
      ['x4', 40],
    ]);
    expect(gens.save('p1').map(([id]) => id)).toEqual(['x1', 'x3', 'x5']);
    expect(gens.save().map(([id]) => id)).toEqual(['x0', 'x1', 'x2', 'x3', 'x4', 'x5']);

    const t = new ThresholdState(3, 1e9, false, 100);
    t.add('eve', 1, '', 'p0');
    t.add('eve', 2, '', 'p0');
    t.add('bob', 2, '', 'p1');
    const saved = copy(t.save('p0'));
    expect(t.drop('p0')).toBe(1);
    expect(t.size).toBe(1);
    const t2 = new ThresholdState(3, 1e9, false, 100);
    expect(t2.load(saved, 'p0')).toBe(1);
    expect(t2.add('eve', 3, '', 'p0')).toMatchObject({ count: 3, firstUs: 1 });
    // A key held with a later event than the loaded one is kept.
    const t3 = new ThresholdState(3, 1e9, false, 100);
    t3.add('eve', 50, '', 'p9');
    expect(t3.load(saved, 'p0')).toBe(0);
    expect(t3.save('p9')).toHaveLength(1);

    const s = new SequenceState(2, 1e9, 100);
    s.advance('bob', 0, 1, 'r1', 'p0');
    s.advance('eve', 0, 1, 'r2', 'p1');
    const seq = copy(s.save('p0'));
    expect(s.drop('p0')).toBe(1);
    const s2 = new SequenceState(2, 1e9, 100);
    expect(s2.load(seq, 'p0')).toBe(1);
    expect(s2.advance('bob', 1, 2, 'r3', 'p0')?.ids).toEqual(['r1', 'r3']);
  });

  it('trimState keeps the newest entries of every part', () => {
    const state: DetectionState = {
      format: 'kaudit-detection-state',
      version: 1,
      savedAt: '',
      cores: [
        ['k', { alerted: Array.from({ length: 10 }, (_, i) => [`id${i}`, i]), threshold: Array.from({ length: 4 }, (_, i) => [`u${i}`, [i], [], null, i]) }],
      ],
      matchers: [['m', Array.from({ length: 6 }, (_, i) => [`s${i}`, i] as [string, number])]],
    };
    expect(stateEntries(state)).toBe(20);
    const half = trimState(state, 0.5);
    expect(stateEntries(half)).toBe(10);
    expect((half.cores[0]![1] as { alerted: [string, number][] }).alerted.map((e) => e[0])).toEqual(['id5', 'id6', 'id7', 'id8', 'id9']);
    expect(half.matchers[0]![1].map((e) => e[0])).toEqual(['s3', 's4', 's5']);
    expect(stateEntries(trimState(state, 0))).toBe(0);
  });
});
