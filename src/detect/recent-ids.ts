/**
 * A bounded set of request ids, each remembered for a time-to-live of event time, at most `max` at once.
 *
 * Two-stage rules (pods/exec: ResponseStarted, then ResponseComplete hours later) hold up to 100,000 ids for a day, so
 * the cost of an entry is what `kaudit serve`'s memory grows by until the sets are full. An id is kept in one of a few
 * generations (plain `Set`s, about 16 bytes an entry) instead of a `Map` from id to time (about 52: the table's third
 * slot and a heap number for a time in microseconds). A generation holds at most `max / GENERATIONS` ids and the ids of
 * at most `ttl / GENERATIONS` of event time from its first (older times join it too); it carries the newest time added
 * to it, and it is forgotten whole, when that time is older than the time-to-live or when the set holds more than `max`
 * ids. So an id is remembered for at least
 * the time-to-live and at most one generation's span longer, and the set keeps between `max * (1 - 1/GENERATIONS)` and
 * `max` ids. Adding an id already held changes nothing: the oldest ids go first.
 *
 * Saved as [id, time] pairs, oldest first, each with its generation's newest time. Ids may carry an origin (the Kafka
 * partition whose event added them last), to save, load and drop one partition's share.
 */

const GENERATIONS = 8;

interface Generation {
  ids: Set<string>;
  /** The event time (µs) it was opened at: a later time past `start + span` opens the next. */
  start: number;
  /** The newest event time added to it: the whole generation is forgotten when this one's time is up. */
  newest: number;
}

/** A finite number, or undefined. */
function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export class RecentIds {
  /** Oldest first; the last is the one ids are added to. */
  private gens: Generation[] = [];
  private count = 0;
  private readonly perGeneration: number;
  private readonly span: number;
  /** Only for ids added with an origin. */
  private readonly originOf = new Map<string, string>();
  private readonly byOrigin = new Map<string, Set<string>>();

  constructor(
    private readonly max: number,
    private readonly ttlUs: number,
  ) {
    this.perGeneration = Math.max(1, Math.ceil(max / GENERATIONS));
    this.span = ttlUs / GENERATIONS;
  }

  has(id: string): boolean {
    for (let i = this.gens.length - 1; i >= 0; i--) if (this.gens[i]!.ids.has(id)) return true;
    return false;
  }

  delete(id: string): void {
    for (let i = this.gens.length - 1; i >= 0; i--) {
      const g = this.gens[i]!;
      if (!g.ids.delete(id)) continue;
      this.count--;
      this.untag(id);
      if (g.ids.size === 0 && i < this.gens.length - 1) this.gens.splice(i, 1);
      return;
    }
  }

  /**
   * Remembers `id` from event time `t` (tagged with `origin` when given) and returns true; an id already held is left
   * as it is (its generation, time and origin) and false is returned. One look through the generations either way, so
   * the engine's "already handled? else remember" is a single call.
   */
  add(id: string, t: number, origin?: string): boolean {
    if (this.has(id)) return false;
    let g = this.gens[this.gens.length - 1];
    // An older time than the generation's start joins it (it is then remembered longer, never shorter): events of
    // sources or partitions at different lags interleave, and must not open a generation each.
    if (!g || g.ids.size >= this.perGeneration || t > g.start + this.span) {
      g = { ids: new Set(), start: t, newest: t };
      this.gens.push(g);
    }
    g.ids.add(id);
    if (t > g.newest) g.newest = t;
    this.count++;
    if (origin !== undefined) {
      this.originOf.set(id, origin);
      let ids = this.byOrigin.get(origin);
      if (!ids) this.byOrigin.set(origin, (ids = new Set()));
      ids.add(id);
    }
    this.prune(t);
    return true;
  }

  private prune(now: number): void {
    while (this.gens.length > 0 && (this.count > this.max || this.gens[0]!.newest < now - this.ttlUs)) {
      const g = this.gens.shift()!;
      this.count -= g.ids.size;
      if (this.originOf.size > 0) for (const id of g.ids) this.untag(id);
    }
  }

  private untag(id: string): void {
    const o = this.originOf.get(id);
    if (o === undefined) return;
    this.originOf.delete(id);
    const ids = this.byOrigin.get(o)!;
    ids.delete(id);
    if (ids.size === 0) this.byOrigin.delete(o);
  }

  /** Forgets the ids of one origin. */
  drop(origin: string): number {
    const ids = [...(this.byOrigin.get(origin) ?? [])];
    for (const id of ids) this.delete(id);
    return ids.length;
  }

  get size(): number {
    return this.count;
  }

  /** Generations held (each `has` of an id not held looks in all of them). */
  get generations(): number {
    return this.gens.length;
  }

  /** [id, time] pairs, oldest first (only those of `origin`, when given); an id's time is its generation's newest. */
  save(origin?: string): [string, number][] {
    const out: [string, number][] = [];
    if (origin === undefined) {
      for (const g of this.gens) for (const id of g.ids) out.push([id, g.newest]);
      return out;
    }
    // An origin's ids in the order they were added, which is their generations' order: only its own are visited (a
    // detector saves each of its partitions on its own).
    for (const id of this.byOrigin.get(origin) ?? []) {
      for (let i = this.gens.length - 1; i >= 0; i--) {
        const g = this.gens[i]!;
        if (g.ids.has(id)) {
          out.push([id, g.newest]);
          break;
        }
      }
    }
    return out;
  }

  /**
   * Adds saved pairs (in their order, so the oldest stays first), tagged with `origin` when given; returns how many were
   * taken. An id already held is kept as it is. Anything of the wrong shape is skipped.
   */
  load(data: unknown, origin?: string): number {
    let n = 0;
    for (const e of Array.isArray(data) ? data : []) {
      if (!Array.isArray(e)) continue;
      const [id, t] = e as unknown[];
      const time = num(t);
      if (typeof id === 'string' && time !== undefined && this.add(id, time, origin)) n++;
    }
    return n;
  }
}
