/**
 * A bounded set of request ids, each remembered for at least a time-to-live of event time, at most `max` at once.
 *
 * Two-stage rules (pods/exec: ResponseStarted, then ResponseComplete hours later) hold up to 100,000 ids for a day, so
 * what an entry costs, and when it is paid, is what `kaudit serve`'s memory does under load. The apiserver's audit ids
 * are UUIDs (36 characters, or the client's `Audit-ID` header when it sent one): a canonical lowercase UUID is kept as
 * its 16 bytes in an open-addressing table (linear probing, backward-shift deletion) outside V8's heap, with a ring of
 * the order ids came in; 42 bytes an id of `max` in all at the bound. A set made with `reserve` (`kaudit serve`, where
 * memory must hold flat under load) takes that whole size, written through, at its first id: it costs nothing more as
 * it fills, where strings in `Set`s grew the heap, and V8's headroom above it, until the bound; one that never gets an
 * id costs nothing. Otherwise (a one-shot import) the table starts small and doubles as ids come, so it costs what it
 * holds. Any other id (a client's own `Audit-ID`) is kept as a string in a `Map`.
 *
 * Ids are forgotten in the order they were added (a ring of positions with their event times): the oldest while the
 * set would be over `max`, or while the oldest is older than the time-to-live before the time of the id being added. An
 * id added with an older time than ones before it (sources at different lags interleave) waits behind them: it is
 * remembered longer, never shorter. Adding an id already held changes nothing.
 *
 * Saved as [id, time] pairs, oldest first. Ids may carry an origin (the Kafka partition whose event added them), to
 * save, load and drop one partition's share.
 */

import { randomInt } from 'node:crypto';

/**
 * Table slots per id of `max`: at a load of at most 2/3, a has-then-add of a new id costs about what the generations
 * of `Set`s before it did (~0.56 us against ~0.4-0.8; 0.69 at 3/4, 0.43 at 1/2: benchmarks/recent-ids.mjs and
 * benchmarks/NOTES.md).
 */
const SLOTS_PER_ID = 1.5;
/** A growing set's first size: table slots, and ring positions. */
const FIRST_SLOTS = 256;
/** A ring position whose id was deleted (`delete`, `drop`); skipped when it reaches the head. */
const GONE = -1;
/** A ring position holding an id that is not a canonical UUID (kept in `others`). */
const OTHER = -2;

/** Hex digit values of '0'-'9' and 'a'-'f' (only lowercase: the canonical form, which `save` gives back). */
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[97 + i] = 10 + i;

/** The 16 bytes of the last UUID parsed (as four 32-bit words), and that id (the engine asks `has`, then `add`). */
const words = new Uint32Array(4);
let parsed: string | undefined;
let parsedOk = false;

/** Reads a canonical UUID (8-4-4-4-12 lowercase hex digits) into `words`; false for anything else. */
function parseUuid(id: string): boolean {
  if (id === parsed) return parsedOk;
  parsed = id;
  parsedOk = readUuid(id);
  return parsedOk;
}

function readUuid(id: string): boolean {
  if (id.length !== 36) return false;
  if (id.charCodeAt(8) !== 45 || id.charCodeAt(13) !== 45 || id.charCodeAt(18) !== 45 || id.charCodeAt(23) !== 45) return false;
  let w = 0;
  let digits = 0;
  let k = 0;
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) continue;
    const c = id.charCodeAt(i);
    const v = c < 128 ? HEX[c]! : -1;
    if (v < 0) return false;
    w = (w << 4) | v;
    if (++digits === 8) {
      words[k++] = w;
      w = 0;
      digits = 0;
    }
  }
  return true;
}

function hex8(w: number): string {
  return (w >>> 0).toString(16).padStart(8, '0');
}

/** The canonical text of the UUID held at `slot` of `keys`. */
function formatUuid(keys: Uint32Array, slot: number): string {
  const a = hex8(keys[slot * 4]!);
  const b = hex8(keys[slot * 4 + 1]!);
  const c = hex8(keys[slot * 4 + 2]!);
  const d = hex8(keys[slot * 4 + 3]!);
  return `${a}-${b.slice(0, 4)}-${b.slice(4)}-${c.slice(0, 4)}-${c.slice(4)}${d}`;
}

/** murmur3's 32-bit finaliser: every input bit moves every output bit. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** A finite number, or undefined. */
function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export class RecentIds {
  /** The table: four key words and a ring position + 1 per slot (0: empty). */
  private keys: Uint32Array;
  private posOf: Int32Array;
  private slots: number;
  /** The table's slots at the bound. */
  private readonly fullSlots: number;
  /** Drawn at random for each set, so that ids a client chooses cannot be picked to collide. */
  private readonly seed = randomInt(0x7fffffff);
  /**
   * The ring, in the order ids were added: each position's table slot (or GONE, OTHER) and event time; `cap`
   * positions, `max` once it has grown to it.
   */
  private slotAt: Int32Array;
  private timeAt: Float64Array;
  private cap: number;
  private head = 0;
  /** Positions in use from `head`, deleted ones included. */
  private used = 0;
  private count = 0;
  private committed = false;
  /** Ids that are not canonical UUIDs: id -> ring position, and back. */
  private readonly others = new Map<string, number>();
  private readonly otherAt = new Map<number, string>();
  /** Each ring position's origin (an index into `perOrigin`; 0: none): made when the first id with an origin comes. */
  private originAt: Int32Array | undefined;
  private readonly originIndex = new Map<string, number>();
  /** Ids held per origin index. */
  private readonly perOrigin: number[] = [0];

  constructor(
    private readonly max: number,
    private readonly ttlUs: number,
    private readonly reserve = false,
  ) {
    this.max = Math.max(1, Math.floor(max));
    this.fullSlots = Math.max(8, Math.ceil(this.max * SLOTS_PER_ID));
    this.slots = reserve ? this.fullSlots : Math.min(this.fullSlots, FIRST_SLOTS);
    this.keys = new Uint32Array(this.slots * 4);
    this.posOf = new Int32Array(this.slots);
    this.cap = reserve ? this.max : Math.min(this.max, FIRST_SLOTS);
    this.slotAt = new Int32Array(this.cap);
    this.timeAt = new Float64Array(this.cap);
  }

  /** The home slot of a key. */
  private home(w0: number, w1: number, w2: number, w3: number): number {
    let h = fmix(w0 ^ this.seed);
    h = fmix(h ^ w1);
    h = fmix(h ^ w2);
    h = fmix(h ^ w3);
    return (h >>> 0) % this.slots;
  }

  /** The slot holding the key in `words`, or -1. */
  private find(): number {
    const k = this.keys;
    const w0 = words[0]!;
    const w1 = words[1]!;
    const w2 = words[2]!;
    const w3 = words[3]!;
    for (let i = this.home(w0, w1, w2, w3); ; i = i + 1 === this.slots ? 0 : i + 1) {
      if (this.posOf[i] === 0) return -1;
      const o = i * 4;
      if (k[o] === w0 && k[o + 1] === w1 && k[o + 2] === w2 && k[o + 3] === w3) return i;
    }
  }

  /** The ring position of `id`, or -1. */
  private positionOf(id: string): number {
    if (!parseUuid(id)) return this.others.get(id) ?? -1;
    const slot = this.find();
    return slot < 0 ? -1 : this.posOf[slot]! - 1;
  }

  has(id: string): boolean {
    return this.positionOf(id) >= 0;
  }

  delete(id: string): void {
    const pos = this.positionOf(id);
    if (pos >= 0) this.forget(pos);
  }

  /**
   * Remembers `id` from event time `t` (tagged with `origin` when given) and returns true; an id already held is left
   * as it is (its place, time and origin) and false is returned.
   */
  add(id: string, t: number, origin?: string): boolean {
    const uuid = parseUuid(id);
    if (uuid ? this.find() >= 0 : this.others.has(id)) return false;
    if (!this.committed) this.commit();
    else if (this.slots < this.fullSlots && (this.count + 1) * SLOTS_PER_ID > this.slots) this.grow();
    this.prune(t);
    if (this.used === this.cap) this.makeRoom();
    const pos = (this.head + this.used) % this.cap;
    this.used++;
    this.count++;
    this.timeAt[pos] = t;
    if (uuid) {
      let i = this.home(words[0]!, words[1]!, words[2]!, words[3]!);
      while (this.posOf[i] !== 0) i = i + 1 === this.slots ? 0 : i + 1;
      this.keys.set(words, i * 4);
      this.posOf[i] = pos + 1;
      this.slotAt[pos] = i;
    } else {
      this.others.set(id, pos);
      this.otherAt.set(pos, id);
      this.slotAt[pos] = OTHER;
    }
    if (origin !== undefined) {
      let o = this.originIndex.get(origin);
      if (o === undefined) {
        o = this.perOrigin.push(0) - 1;
        this.originIndex.set(origin, o);
      }
      this.originAt ??= new Int32Array(this.cap);
      this.originAt[pos] = o;
      this.perOrigin[o]!++;
    } else if (this.originAt) this.originAt[pos] = 0;
    return true;
  }

  /**
   * At the first id: with `reserve`, writes the table and ring through, so their pages are resident now rather than a
   * few at a time as the set fills.
   */
  private commit(): void {
    this.committed = true;
    if (!this.reserve) return;
    this.keys.fill(0);
    this.posOf.fill(0);
    this.slotAt.fill(0);
    this.timeAt.fill(0);
  }

  /** Doubles the table (to at most its size at the bound) and puts each held UUID in it again. */
  private grow(): void {
    const old = this.keys;
    const oldPos = this.posOf;
    this.slots = Math.min(this.fullSlots, this.slots * 2);
    this.keys = new Uint32Array(this.slots * 4);
    this.posOf = new Int32Array(this.slots);
    for (let s = 0; s < oldPos.length; s++) {
      const pos = oldPos[s]!;
      if (pos === 0) continue;
      const o = s * 4;
      let i = this.home(old[o]!, old[o + 1]!, old[o + 2]!, old[o + 3]!);
      while (this.posOf[i] !== 0) i = i + 1 === this.slots ? 0 : i + 1;
      this.keys.set(old.subarray(o, o + 4), i * 4);
      this.posOf[i] = pos;
      this.slotAt[pos - 1] = i;
    }
  }

  /** Makes room for one: forgets from the oldest while `max` are held or the oldest is older than the ttl at `now`. */
  private prune(now: number): void {
    const cutoff = now - this.ttlUs;
    while (this.used > 0) {
      const pos = this.head;
      const slot = this.slotAt[pos]!;
      // (Written so that a time that is not a number never counts as old: such an id goes by count alone.)
      if (slot !== GONE && this.count < this.max && !(this.timeAt[pos]! < cutoff)) return;
      if (slot !== GONE) this.forget(pos);
      this.head = pos + 1 === this.cap ? 0 : pos + 1;
      this.used--;
    }
  }

  /**
   * The ring is full of live and deleted positions: one that has not grown to `max` doubles; one that has packs the
   * live ones to its front when at least an eighth are deleted (each pack then pays for many adds), else forgets the
   * oldest.
   */
  private makeRoom(): void {
    if (this.cap < this.max) return this.pack(Math.min(this.max, this.cap * 2));
    if (this.max - this.count < Math.max(1, this.max >> 3)) {
      while (this.slotAt[this.head] === GONE) this.step();
      this.forget(this.head);
      this.step();
      return;
    }
    this.pack(this.cap);
  }

  /** Moves the live positions, in order, to the front of a new ring of `cap` positions. */
  private pack(cap: number): void {
    const slots = new Int32Array(cap);
    const times = new Float64Array(cap);
    const origins = this.originAt ? new Int32Array(cap) : undefined;
    if (this.reserve) {
      slots.fill(0);
      times.fill(0);
      origins?.fill(0);
    }
    const others = new Map<number, string>();
    let n = 0;
    for (let j = 0; j < this.used; j++) {
      const pos = (this.head + j) % this.cap;
      const slot = this.slotAt[pos]!;
      if (slot === GONE) continue;
      if (slot === OTHER) others.set(n, this.otherAt.get(pos)!);
      else this.posOf[slot] = n + 1;
      slots[n] = slot;
      if (origins) origins[n] = this.originAt![pos]!;
      times[n++] = this.timeAt[pos]!;
    }
    this.slotAt = slots;
    this.timeAt = times;
    if (origins) this.originAt = origins;
    this.otherAt.clear();
    for (const [pos, id] of others) {
      this.otherAt.set(pos, id);
      this.others.set(id, pos);
    }
    this.cap = cap;
    this.head = 0;
    this.used = n;
  }

  private step(): void {
    this.head = this.head + 1 === this.cap ? 0 : this.head + 1;
    this.used--;
  }

  /** Forgets the id at ring position `pos` (the position stays, marked GONE, until it reaches the head). */
  private forget(pos: number): void {
    const slot = this.slotAt[pos]!;
    if (slot === OTHER) {
      this.others.delete(this.otherAt.get(pos)!);
      this.otherAt.delete(pos);
    } else this.removeSlot(slot);
    this.slotAt[pos] = GONE;
    this.count--;
    if (this.originAt) this.perOrigin[this.originAt[pos]!]!--;
  }

  /** Empties table slot `i`, shifting back the keys after it that probed past it. */
  private removeSlot(i: number): void {
    const k = this.keys;
    for (let j = i + 1 === this.slots ? 0 : i + 1; this.posOf[j] !== 0; j = j + 1 === this.slots ? 0 : j + 1) {
      const h = this.home(k[j * 4]!, k[j * 4 + 1]!, k[j * 4 + 2]!, k[j * 4 + 3]!);
      // The key at j stays when its home lies cyclically in (i, j]; else it moves back into the hole at i.
      if (i <= j ? i < h && h <= j : i < h || h <= j) continue;
      k.copyWithin(i * 4, j * 4, j * 4 + 4);
      const pos = this.posOf[j]!;
      this.posOf[i] = pos;
      this.slotAt[pos - 1] = i;
      i = j;
    }
    this.posOf[i] = 0;
  }

  /** Calls `fn` with each ring position holding an id, oldest first; only those of origin index `o`, when given. */
  private each(o: number | undefined, fn: (pos: number) => void): void {
    for (let j = 0, n = this.used; j < n; j++) {
      const pos = (this.head + j) % this.cap;
      if (this.slotAt[pos] !== GONE && (o === undefined || this.originAt![pos] === o)) fn(pos);
    }
  }

  /** Forgets the ids of one origin. */
  drop(origin: string): number {
    const o = this.originIndex.get(origin);
    if (o === undefined || this.perOrigin[o] === 0) return 0;
    const n = this.perOrigin[o]!;
    this.each(o, (pos) => this.forget(pos));
    return n;
  }

  get size(): number {
    return this.count;
  }

  /** Bytes of its table and ring at the bound (plus 4 an id of `max` once an id with an origin comes). */
  get reservedBytes(): number {
    return this.fullSlots * 20 + this.max * (this.originAt ? 16 : 12);
  }

  /**
   * The bytes it holds resident: with `reserve`, none until its first id, then all of `reservedBytes`; otherwise its
   * table now and the part of its ring it has used.
   */
  get residentBytes(): number {
    if (!this.committed) return 0;
    if (this.reserve) return this.reservedBytes;
    return this.slots * 20 + this.cap * (this.originAt ? 16 : 12);
  }

  /** The id at ring position `pos` (which holds one). */
  private idAt(pos: number): string {
    const slot = this.slotAt[pos]!;
    return slot === OTHER ? this.otherAt.get(pos)! : formatUuid(this.keys, slot);
  }

  /** [id, time] pairs, oldest first (only those of `origin`, when given); each with the event time it was added at. */
  save(origin?: string): [string, number][] {
    const out: [string, number][] = [];
    const o = origin === undefined ? undefined : this.originIndex.get(origin);
    if (origin !== undefined && (o === undefined || this.perOrigin[o] === 0)) return out;
    this.each(o, (pos) => out.push([this.idAt(pos), this.timeAt[pos]!]));
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
