/**
 * Detection state, all of it bounded and all of it on event time (requestReceivedTimestamp), so a replayed log
 * raises the same alerts as the live stream did:
 *  - RecentIds: request ids a rule has already handled (one alert per rule and auditID, across stages and batches);
 *  - ThresholdState: counts or distinct counts per key in a sliding window, one alert per key per window;
 *  - SequenceState: per key, the time each step of an ordered sequence was last reached.
 * Maps are kept in least-recently-used order (delete + set on every touch), so the oldest key is evicted first.
 */

/** A bounded set of ids, each remembered for `ttlUs` of event time, at most `max` at once. */
export class RecentIds {
  private readonly m = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly ttlUs: number,
  ) {}

  has(id: string): boolean {
    return this.m.has(id);
  }

  add(id: string, t: number): void {
    this.m.delete(id);
    this.m.set(id, t);
    this.prune(t);
  }

  private prune(now: number): void {
    for (const [k, t] of this.m) {
      if (this.m.size <= this.max && t >= now - this.ttlUs) break;
      this.m.delete(k);
    }
  }

  get size(): number {
    return this.m.size;
  }
}

interface ThresholdKey {
  /** Event times (count mode), oldest first. */
  times: number[];
  /** Distinct value -> last time seen (distinct mode). */
  values: Map<string, number>;
  /** When the last alert for this key fired; the next needs a new window. */
  firedAt: number;
  last: number;
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
  private readonly keys = new Map<string, ThresholdKey>();
  private sinceSweep = 0;

  constructor(
    readonly count: number,
    readonly windowUs: number,
    readonly distinct: boolean,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.keys.size;
  }

  /** Records one matching event; returns the hit when this event completes the threshold. */
  add(key: string, t: number, value: string): ThresholdHit | undefined {
    let k = this.keys.get(key);
    if (k) this.keys.delete(key);
    else k = { times: [], values: new Map(), firedAt: -Infinity, last: t };
    this.keys.set(key, k);
    if (t > k.last) k.last = t;
    this.evict(t);
    if (t < k.firedAt + this.windowUs) return undefined; // inside the window of the last alert
    // The window ends at the latest event time seen for the key: events may arrive slightly out of order.
    const from = k.last - this.windowUs;
    if (this.distinct) {
      const prev = k.values.get(value);
      if (prev === undefined || t > prev) {
        k.values.delete(value);
        k.values.set(value, t);
      }
      for (const [v, vt] of k.values) if (vt < from) k.values.delete(v);
      if (k.values.size >= this.count) {
        const values = [...k.values.keys()];
        const firstUs = Math.min(...k.values.values());
        k.values.clear();
        k.firedAt = t;
        return { count: values.length, firstUs, values };
      }
      return undefined;
    }
    // Times sorted, only those in the window, and only the last `count` of them.
    let i = k.times.length;
    while (i > 0 && k.times[i - 1]! > t) i--;
    k.times.splice(i, 0, t);
    while (k.times.length > 0 && k.times[0]! < from) k.times.shift();
    if (k.times.length > this.count) k.times.splice(0, k.times.length - this.count);
    if (k.times.length >= this.count) {
      const firstUs = k.times[0]!;
      const count = k.times.length;
      k.times = [];
      k.firedAt = t;
      return { count, firstUs };
    }
    return undefined;
  }

  private evict(now: number): void {
    while (this.keys.size > this.maxKeys) {
      const first = this.keys.keys().next().value as string;
      this.keys.delete(first);
    }
    // Now and then drop keys idle for more than a window (oldest first: LRU order).
    if (++this.sinceSweep < 1024) return;
    this.sinceSweep = 0;
    for (const [key, k] of this.keys) {
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
  private readonly keys = new Map<string, SequenceProgress>();

  constructor(
    readonly steps: number,
    readonly withinUs: number,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.keys.size;
  }

  /** Applies one event that matched step `step` for `key`. Returns the progress when the sequence completes. */
  advance(key: string, step: number, t: number, id: string): SequenceProgress | undefined {
    let p = this.keys.get(key);
    if (step === 0) {
      // A new first step restarts the sequence (the window runs from the latest first step).
      if (p) this.keys.delete(key);
      p = { times: [t], ids: [id] };
      this.keys.set(key, p);
      while (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value as string);
      return undefined;
    }
    if (!p || p.times.length !== step) return undefined;
    const start = p.times[0]!;
    const prev = p.times[step - 1]!;
    if (t < prev || t - start > this.withinUs) {
      if (t - start > this.withinUs) this.keys.delete(key);
      return undefined;
    }
    p.times.push(t);
    p.ids.push(id);
    this.keys.delete(key);
    if (p.times.length === this.steps) return p;
    this.keys.set(key, p);
    return undefined;
  }
}
