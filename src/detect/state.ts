/**
 * Detection state, all of it bounded and all of it on event time (requestReceivedTimestamp), so a replayed log
 * raises the same alerts as the live stream did:
 *  - RecentIds (recent-ids.ts): request ids a rule has already handled (one alert per rule and auditID, across stages
 *    and batches);
 *  - ThresholdState: counts or distinct counts per key in a sliding window, one alert per key per window;
 *  - SequenceState: per key, the time each step of an ordered sequence was last reached.
 * Maps are kept in least-recently-used order (delete + set on every touch), so the oldest key is evicted first.
 *
 * Each can be saved as plain JSON data and loaded into a fresh instance (`save`/`load`), so `kaudit serve` carries open
 * windows across a restart. `load` takes untrusted data (a file or row that may be damaged): anything of the wrong
 * shape is skipped, never thrown, and the bounds of the instance loading it apply.
 *
 * A batch whose commit failed is sent again by its source (the webhook's retry, the tail's re-read), so detection
 * sees its requests twice. Counting is by request (a count-mode window keeps its events' auditIDs, a distinct-mode
 * one its values), so the second pass counts nothing twice; and an alert the failed batch raised is taken back
 * (`unfire`: the state before the request that fired it is put back), so the second pass raises it again, once.
 *
 * Entries may carry an origin: the Kafka partition whose event touched them last. A detector saves, loads and drops
 * one partition's share (`save(origin)`, `load(data, origin)`, `drop(origin)`) when partitions move between detectors.
 */

import { OriginMap } from './origin-map.js';

export { RecentIds } from './recent-ids.js';

/** A finite number, or undefined. */
function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function numbers(v: unknown): number[] | undefined {
  return Array.isArray(v) && v.every((x) => num(x) !== undefined) ? (v as number[]) : undefined;
}

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
}

/** The entries of saved data: an array of arrays, else none. */
function entries(data: unknown): unknown[][] {
  return Array.isArray(data) ? data.filter((e): e is unknown[] => Array.isArray(e)) : [];
}

interface ThresholdKey {
  /** Event times (count mode), oldest first. */
  times: number[];
  /** The auditIDs of `times`, in the same order ('' for times loaded from a state saved without them). */
  ids: string[];
  /** Distinct value -> last time seen (distinct mode). */
  values: Map<string, number>;
  /** When the last alert for this key fired; the next needs a new window. */
  firedAt: number;
  last: number;
}

/** A key as it was before the request that fired it, kept to be put back if that request's alert is not stored. */
interface Undo<T> {
  key: string;
  before: T;
  /** The key's fire time (threshold) that this undo belongs to; a key that fired again since is left alone. */
  at: number;
  origin?: string;
}

/** How many fires each state remembers to take back: more than the alerts of the batches in flight at once. */
const UNDO_MAX = 4096;

function remember<T>(m: Map<string, Undo<T>>, id: string, u: Undo<T>): void {
  if (!id) return;
  m.delete(id);
  m.set(id, u);
  if (m.size > UNDO_MAX) m.delete(m.keys().next().value!);
}

export interface ThresholdHit {
  count: number;
  firstUs: number;
  values?: string[];
}

/**
 * Counts (or distinct values) per key within a sliding window of event time. Reaching `count` fires once; the key is
 * then quiet for one window from that event and counting starts again after it, so a long burst raises one alert
 * per window, not one per event past the threshold.
 */
export class ThresholdState {
  /** Per key, with the partition whose event touched it last (Kafka detectors only). */
  private readonly keys = new OriginMap<ThresholdKey>();
  private sinceSweep = 0;
  /** By the auditID that fired: the key before it (see unfire). */
  private readonly fired = new Map<string, Undo<Pick<ThresholdKey, 'times' | 'ids' | 'values' | 'firedAt'>>>();

  constructor(
    readonly count: number,
    readonly windowUs: number,
    readonly distinct: boolean,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.keys.size;
  }

  /**
   * Records one matching event (request `id`); returns the hit when this event completes the threshold. A request
   * already counted in the window (sent again after its batch was refused) changes nothing.
   */
  add(key: string, t: number, value: string, origin?: string, id = ''): ThresholdHit | undefined {
    const k: ThresholdKey = this.keys.get(key) ?? { times: [], ids: [], values: new Map(), firedAt: -Infinity, last: t };
    this.keys.set(key, k, origin);
    if (t > k.last) k.last = t;
    this.evict(t);
    if (t < k.firedAt + this.windowUs) return undefined; // inside the window of the last alert
    // The window ends at the latest event time seen for the key: events may arrive slightly out of order.
    const from = k.last - this.windowUs;
    if (this.distinct) {
      const prev = k.values.get(value);
      const prevFiredAt = k.firedAt;
      if (prev === undefined || t > prev) {
        k.values.delete(value);
        k.values.set(value, t);
      }
      for (const [v, vt] of k.values) if (vt < from) k.values.delete(v);
      if (k.values.size >= this.count) {
        const values = [...k.values.keys()];
        const firstUs = Math.min(...k.values.values());
        const before = new Map(k.values);
        if (prev === undefined) before.delete(value);
        else before.set(value, prev);
        remember(this.fired, id, { key, before: { times: [], ids: [], values: before, firedAt: prevFiredAt }, at: t, origin });
        k.values = new Map();
        k.firedAt = t;
        return { count: values.length, firstUs, values };
      }
      return undefined;
    }
    if (id && k.ids.includes(id)) return undefined;
    // Times sorted, only those in the window, and only the last `count` of them.
    let i = k.times.length;
    while (i > 0 && k.times[i - 1]! > t) i--;
    k.times.splice(i, 0, t);
    k.ids.splice(i, 0, id);
    while (k.times.length > 0 && k.times[0]! < from) {
      k.times.shift();
      k.ids.shift();
    }
    if (k.times.length > this.count) {
      k.times.splice(0, k.times.length - this.count);
      k.ids.splice(0, k.ids.length - this.count);
    }
    if (k.times.length >= this.count) {
      const firstUs = k.times[0]!;
      const count = k.times.length;
      const at = k.ids.lastIndexOf(id);
      const before = {
        times: k.times.filter((_, j) => j !== at),
        ids: k.ids.filter((_, j) => j !== at),
        values: new Map<string, number>(),
        firedAt: k.firedAt,
      };
      remember(this.fired, id, { key, before, at: t, origin });
      k.times = [];
      k.ids = [];
      k.firedAt = t;
      return { count, firstUs };
    }
    return undefined;
  }

  /**
   * Takes back the alert request `id` fired (its batch was not stored): the key is as it was before that request, so
   * the request, sent again, fires it again. Whether there was such a fire to take back.
   */
  unfire(id: string): boolean {
    const u = this.fired.get(id);
    if (!u) return false;
    this.fired.delete(id);
    const k = this.keys.get(u.key);
    if (!k || k.firedAt !== u.at) return false;
    Object.assign(k, u.before);
    this.keys.set(u.key, k, u.origin);
    return true;
  }

  /**
   * [key, times, [value, time][], firedAt (null: never), last, ids of times] per key, least recently used first (only
   * keys `origin` touched last, when given). The ids came last, so a state saved before them still loads.
   */
  save(origin?: string): [string, number[], [string, number][], number | null, number, string[]][] {
    const keys = origin === undefined ? [...this.keys.entries()] : this.keys.keysOf(origin).map((key) => [key, this.keys.get(key)!] as const);
    return keys.map(([key, k]) => [key, k.times, [...k.values], Number.isFinite(k.firedAt) ? k.firedAt : null, k.last, k.ids]);
  }

  /** Forgets the keys one origin touched last. */
  drop(origin: string): number {
    const keys = this.keys.keysOf(origin);
    for (const key of keys) this.keys.delete(key);
    return keys.length;
  }

  /**
   * Adds saved keys, tagged with `origin` when given; returns how many were taken. A key already held that saw an event
   * at least as late (fed by another partition too) is kept: the later window wins.
   */
  load(data: unknown, origin?: string): number {
    let n = 0;
    for (const [key, times, values, firedAt, last, ids] of entries(data)) {
      const t = numbers(times);
      const vs = entries(values).filter((e) => typeof e[0] === 'string' && num(e[1]) !== undefined) as [string, number][];
      const fired = firedAt === null ? -Infinity : num(firedAt);
      const l = num(last);
      if (typeof key !== 'string' || !t || fired === undefined || l === undefined) continue;
      const held = this.keys.get(key);
      if (held && held.last >= l) continue;
      // What this instance could hold: fewer than `count` times or values (reaching it fires and clears them).
      const newest = vs.sort((a, b) => a[1] - b[1]).slice(-(this.count - 1) || vs.length);
      const savedIds = strings(ids);
      const byTime = t.map((time, j) => [time, savedIds?.length === t.length ? savedIds[j]! : ''] as [number, string]).sort((a, b) => a[0] - b[0]);
      const kept = byTime.slice(-this.count);
      this.keys.set(key, { times: kept.map((x) => x[0]), ids: kept.map((x) => x[1]), values: new Map(newest), firedAt: fired, last: l }, origin);
      n++;
    }
    this.keys.trim(this.maxKeys);
    return n;
  }

  private evict(now: number): void {
    this.keys.trim(this.maxKeys);
    // Now and then drop keys idle for more than a window (oldest first: LRU order).
    if (++this.sinceSweep < 1024) return;
    this.sinceSweep = 0;
    for (const [key, k] of this.keys.entries()) {
      if (k.last >= now - this.windowUs || k.firedAt >= now - this.windowUs) break;
      this.keys.delete(key);
    }
  }
}

export interface SequenceProgress {
  /** Time the step was reached, per step (index 0 = first step). */
  times: number[];
  /** auditIDs of the events that reached each step. */
  ids: string[];
}

/**
 * Ordered steps by one key within `withinUs` of the first step. An event may advance several keys' progress; the
 * last step completes the sequence, which fires and resets the key.
 */
export class SequenceState {
  /** Per key, with the partition whose event advanced it last (Kafka detectors only). */
  private readonly keys = new OriginMap<SequenceProgress>();
  /** By the auditID that completed a sequence: its progress before that step (see unfire). */
  private readonly completed = new Map<string, Undo<SequenceProgress>>();

  constructor(
    readonly steps: number,
    readonly withinUs: number,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.keys.size;
  }

  /** [key, times, ids] per key, least recently used first (only keys `origin` advanced last, when given). */
  save(origin?: string): [string, number[], string[]][] {
    const keys = origin === undefined ? [...this.keys.entries()] : this.keys.keysOf(origin).map((key) => [key, this.keys.get(key)!] as const);
    return keys.map(([key, p]) => [key, p.times, p.ids]);
  }

  /** Forgets the keys one origin advanced last. */
  drop(origin: string): number {
    const keys = this.keys.keysOf(origin);
    for (const key of keys) this.keys.delete(key);
    return keys.length;
  }

  /**
   * Adds saved keys (progress of a complete or impossible length is skipped), tagged with `origin` when given; returns
   * how many were taken. A key already held whose last step is at least as late is kept.
   */
  load(data: unknown, origin?: string): number {
    let n = 0;
    for (const [key, times, ids] of entries(data)) {
      const t = numbers(times);
      const i = strings(ids);
      if (typeof key !== 'string' || !t || !i || t.length !== i.length || t.length === 0 || t.length >= this.steps) continue;
      const held = this.keys.get(key);
      if (held && held.times[held.times.length - 1]! >= t[t.length - 1]!) continue;
      this.keys.set(key, { times: [...t], ids: [...i] }, origin);
      n++;
    }
    this.keys.trim(this.maxKeys);
    return n;
  }

  /**
   * Takes back the sequence request `id` completed (its batch was not stored): the key's progress is as it was before
   * that step, so the request, sent again, completes it again. Not when a sequence for the key has started since.
   */
  unfire(id: string): boolean {
    const u = this.completed.get(id);
    if (!u) return false;
    this.completed.delete(id);
    if (this.keys.get(u.key)) return false;
    this.keys.set(u.key, u.before, u.origin);
    return true;
  }

  /** Applies one event that matched step `step` for `key`. Returns the progress when the sequence completes. */
  advance(key: string, step: number, t: number, id: string, origin?: string): SequenceProgress | undefined {
    let p = this.keys.get(key);
    if (step === 0) {
      // A new first step restarts the sequence (the window runs from the latest first step).
      p = { times: [t], ids: [id] };
      this.keys.set(key, p, origin);
      this.keys.trim(this.maxKeys);
      return undefined;
    }
    if (!p || p.times.length !== step) return undefined;
    const start = p.times[0]!;
    const prev = p.times[step - 1]!;
    if (t < prev || t - start > this.withinUs) {
      if (t - start > this.withinUs) this.keys.delete(key);
      return undefined;
    }
    if (step + 1 === this.steps) remember(this.completed, id, { key, before: { times: [...p.times], ids: [...p.ids] }, at: t, origin });
    p.times.push(t);
    p.ids.push(id);
    this.keys.delete(key);
    if (p.times.length === this.steps) return p;
    this.keys.set(key, p, origin);
    return undefined;
  }
}
