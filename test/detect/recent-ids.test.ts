import { describe, expect, it } from 'vitest';
import { RecentIds } from '../../src/detect/recent-ids.js';
import { rng } from '../helpers/rng.js';

/** A v4-shaped UUID from the seeded generator, so a failing seed replays with the same ids. */
function uuid(rand: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(rand() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

interface Entry {
  id: string;
  t: number;
  gone: boolean;
}

/**
 * What RecentIds promises, kept as a plain list in the order ids were added (deleted ones stay, marked, until they
 * reach the front, as in the ring): forget from the front while over the bound or older than the ttl; a list as long
 * as the ring drops its deleted entries and the ring doubles (from 256 positions, or `max` when reserved) until it
 * reaches `max`; then it drops its deleted entries when at least an eighth are deleted, else its oldest.
 */
class Model {
  list: Entry[] = [];
  origin = new Map<string, string>();
  cap: number;
  constructor(
    readonly max: number,
    readonly ttl: number,
    reserve: boolean,
  ) {
    this.cap = reserve ? max : Math.min(max, 256);
  }
  get live(): Entry[] {
    return this.list.filter((e) => !e.gone);
  }
  find(id: string): Entry | undefined {
    return this.list.find((e) => !e.gone && e.id === id);
  }
  forget(e: Entry): void {
    e.gone = true;
    this.origin.delete(e.id);
  }
  add(id: string, t: number, origin?: string): boolean {
    if (this.find(id)) return false;
    const cutoff = t - this.ttl;
    while (this.list.length > 0) {
      const e = this.list[0]!;
      if (!e.gone && this.live.length + 1 <= this.max && e.t >= cutoff) break;
      if (!e.gone) this.forget(e);
      this.list.shift();
    }
    if (this.list.length === this.cap && this.cap < this.max) {
      this.list = this.live;
      this.cap = Math.min(this.max, this.cap * 2);
    } else if (this.list.length === this.max) {
      if (this.max - this.live.length < Math.max(1, this.max >> 3)) {
        while (this.list[0]!.gone) this.list.shift();
        this.forget(this.list.shift()!);
      } else this.list = this.live;
    }
    this.list.push({ id, t, gone: false });
    if (origin !== undefined) this.origin.set(id, origin);
    return true;
  }
  delete(id: string): void {
    const e = this.find(id);
    if (e) this.forget(e);
  }
  drop(origin: string): number {
    const ids = [...this.origin].filter(([, o]) => o === origin).map(([id]) => id);
    for (const id of ids) this.delete(id);
    return ids.length;
  }
  save(origin?: string): [string, number][] {
    return this.live.filter((e) => origin === undefined || this.origin.get(e.id) === origin).map((e) => [e.id, e.t]);
  }
}

describe('RecentIds keeps UUIDs as 16 bytes in a table', () => {
  it('matches the model over random adds, deletes and drops of UUIDs and other ids', () => {
    for (const [seed, max, reserve] of [
      [1, 7, false],
      [2, 64, true],
      [3, 200, true],
      [4, 1000, false], // grows from 256 slots to 1,500 while the ops run
    ] as const) {
      const rand = rng(seed);
      const r = new RecentIds(max, 1000, reserve);
      const m = new Model(max, 1000, reserve);
      // A pool a little larger than the bound, so ids come back: UUIDs (some with leading zero words, one all
      // zeros) and ids that are not canonical UUIDs (a client's Audit-ID, an uppercase UUID).
      const pool = Array.from({ length: max * 3 }, (_, i) => {
        const u = uuid(rand);
        if (i % 11 === 0) return u.toUpperCase();
        if (i % 13 === 0) return `client-audit-${i}`;
        if (i % 17 === 0) return '00000000-0000-0000-0000-' + u.slice(24);
        return u;
      });
      pool.push('00000000-0000-0000-0000-000000000000');
      let t = 0;
      for (let step = 0; step < 20_000; step++) {
        const id = pool[Math.floor(rand() * pool.length)]!;
        const x = rand();
        t += Math.floor(rand() * 3); // ~1 unit an op: the ttl of 1,000 spans ~1,000 ops
        const at = x < 0.1 ? t - Math.floor(rand() * 500) : t; // some older times (a lagging source)
        const where = `seed ${seed}, step ${step}`;
        if (x < 0.7) {
          const origin = rand() < 0.5 ? `p${Math.floor(rand() * 3)}` : undefined;
          expect(r.add(id, at, origin), where).toBe(m.add(id, at, origin));
        } else if (x < 0.85) {
          r.delete(id);
          m.delete(id);
        } else if (x < 0.86) {
          const o = `p${Math.floor(rand() * 3)}`;
          expect(r.drop(o), where).toBe(m.drop(o));
        } else {
          expect(r.has(id), where).toBe(!!m.find(id));
        }
        expect(r.size, where).toBe(m.live.length);
        if (step % 997 === 0) {
          expect(r.save(), where).toEqual(m.save());
          for (const o of ['p0', 'p1', 'p2']) expect(r.save(o), where).toEqual(m.save(o));
          for (const p of pool) expect(r.has(p), `${where}: ${p}`).toBe(!!m.find(p));
        }
      }
    }
  });

  it.each([false, true])(
    'holds its bound with sequential UUIDs (the ids of one apiserver differ in their last digits) and saves them exactly (reserve: %s)',
    (reserve) => {
      const max = 5000;
      const r = new RecentIds(max, 1e12, reserve);
      const id = (i: number) => `3f2a9c1e-0b7d-4c55-9e01-${i.toString(16).padStart(12, '0')}`;
      for (let i = 0; i < 3 * max; i++) expect(r.add(id(i), i)).toBe(true);
      expect(r.size).toBe(max);
      for (let i = 0; i < 3 * max; i++) expect(r.has(id(i))).toBe(i >= 2 * max);
      const saved = r.save();
      expect(saved[0]).toEqual([id(2 * max), 2 * max]);
      expect(saved.at(-1)).toEqual([id(3 * max - 1), 3 * max - 1]);
      // Deleting every other one shifts the table's later keys back; all the rest are still found.
      for (let i = 2 * max; i < 3 * max; i += 2) r.delete(id(i));
      for (let i = 2 * max; i < 3 * max; i++) expect(r.has(id(i))).toBe(i % 2 === 1);
      // Its memory at the bound: 1.5 table slots of 20 bytes and 12 bytes of ring an id (reserved or grown to).
      expect(r.residentBytes).toBe(max * 42);
      const copy = new RecentIds(max, 1e12, reserve);
      expect(copy.residentBytes).toBe(0);
      expect(copy.load(r.save())).toBe(max / 2);
      expect(copy.save()).toEqual(r.save());
    },
  );

  it('takes its whole size at its first id when made to reserve it, else what it holds', () => {
    const id = (i: number) => `0b7d3f2a-9c1e-4c55-9e01-${i.toString(16).padStart(12, '0')}`;
    const reserved = new RecentIds(100_000, 1e12, true);
    const grown = new RecentIds(100_000, 1e12);
    expect([reserved.residentBytes, grown.residentBytes]).toEqual([0, 0]);
    for (let i = 0; i < 1000; i++) {
      reserved.add(id(i), i);
      grown.add(id(i), i);
    }
    expect(reserved.residentBytes).toBe(4_200_000);
    // 1,000 ids: 2,048 slots (doubled from 256 while over 2/3 full) and a ring of 1,024 positions (doubled from 256).
    expect(grown.residentBytes).toBe(2048 * 20 + 1024 * 12);
    for (let i = 0; i < 1000; i++) expect(grown.has(id(i)) && reserved.has(id(i))).toBe(true);
  });
});
