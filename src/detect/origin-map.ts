/**
 * A Map in least-recently-set order whose keys may carry an origin (the Kafka partition whose event set them last),
 * with an index from origin to its keys: one partition's share of the detection state is saved or dropped in time
 * proportional to that share, not to the whole state (a detector may own many partitions).
 */
export class OriginMap<V> {
  private readonly m = new Map<string, V>();
  private readonly originOf = new Map<string, string>();
  /** Keys per origin, in least-recently-set order (a key is deleted and added again on every set). */
  private readonly byOrigin = new Map<string, Set<string>>();

  get size(): number {
    return this.m.size;
  }

  get(key: string): V | undefined {
    return this.m.get(key);
  }

  has(key: string): boolean {
    return this.m.has(key);
  }

  /** Sets the value (as the most recent) and the key's origin (none: untagged). */
  set(key: string, value: V, origin?: string): void {
    this.delete(key);
    this.m.set(key, value);
    if (origin === undefined) return;
    this.originOf.set(key, origin);
    let keys = this.byOrigin.get(origin);
    if (!keys) this.byOrigin.set(origin, (keys = new Set()));
    keys.add(key);
  }

  delete(key: string): boolean {
    if (!this.m.delete(key)) return false;
    const o = this.originOf.get(key);
    if (o !== undefined) {
      this.originOf.delete(key);
      const keys = this.byOrigin.get(o)!;
      keys.delete(key);
      if (keys.size === 0) this.byOrigin.delete(o);
    }
    return true;
  }

  /** The least recently set key. */
  oldest(): string | undefined {
    return this.m.keys().next().value;
  }

  /** Deletes least recently set keys until at most `max` are left. */
  trim(max: number): void {
    while (this.m.size > max) this.delete(this.oldest()!);
  }

  /** [key, value] pairs, least recently set first. */
  entries(): IterableIterator<[string, V]> {
    return this.m.entries();
  }

  /** The keys of one origin, least recently set first (a copy: safe to delete while iterating). */
  keysOf(origin: string): string[] {
    const keys = this.byOrigin.get(origin);
    return keys ? [...keys] : [];
  }
}
