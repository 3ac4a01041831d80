/**
 * The record packing shared by the main thread and the store's writer thread: a batch's events packed into numbers,
 * text and a dictionary (EventRecords), so that crossing to the writer thread moves buffers instead of copying objects.
 * The field offsets below are the format both sides read.
 */
import type { NormalisedEvent } from '../events/types.js';
import { admissionRows, type AdmissionRow } from './admission-rows.js';
import { CATEGORY, decisionCode, levelCode, stageCode } from './schema.js';

/**
 * A batch's events as the writer stores them, packed to cross to the writer thread cheaply: numbers in one
 * Float64Array (transferred, not copied), text in two NUL-joined strings. Low-cardinality strings (users, groups,
 * user agents, IPs, verbs, resources, namespaces, clusters) appear once in `dict`, and rows hold their index, so the
 * writer interns each distinct value once per batch.
 */
export interface EventRecords {
  count: number;
  /** NUM_FIELDS numbers per event, see the N_* offsets. */
  nums: Float64Array;
  /** TEXT_FIELDS strings per event (auditID, subresource, name, command, container), NUL-joined. */
  text: string;
  /** Distinct low-cardinality values, NUL-joined. */
  dict: string;
  /**
   * The events' raw JSON, UTF-8, one line each joined by newlines: bytes, so that crossing to the writer thread
   * moves the buffer (transferred with `nums`) instead of copying a string, and the writer compresses it as is.
   */
  raw: Uint8Array;
  /** The batch's admission rows as JSON, `[[eventIndex, AdmissionRow], ...]` (see admission-rows.ts); absent when none. */
  admission?: string;
}

/** Offsets of the numbers of one event in EventRecords.nums. */
export const N_TIME = 0,
  N_STAGE = 1,
  N_CLUSTER = 2,
  N_VERB = 3,
  N_USER = 4,
  N_GROUPS = 5,
  N_IMP = 6,
  N_IP = 7,
  N_UA = 8,
  N_GROUP = 9,
  N_VERSION = 10,
  N_RESOURCE = 11,
  N_NAMESPACE = 12,
  N_CODE = 13,
  N_DECISION = 14,
  N_LEVEL = 15,
  N_CAT = 16;
export const NUM_FIELDS = 17;
/** Text fields per event, in order: auditID, subresource, name, command, container. */
export const TEXT_FIELDS = 5;
export const NUL = '\u0000';

function noNul(v: string): string {
  return v.indexOf(NUL) < 0 ? v : v.replaceAll(NUL, '\ufffd');
}

const RBAC_RESOURCES = new Set(['roles', 'clusterroles', 'rolebindings', 'clusterrolebindings']);
const WRITE_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
const READ_VERBS = new Set(['get', 'list', 'watch']);

/** The analyst category of an event (see CATEGORY), or null. */
export function categoryOf(e: NormalisedEvent): number | null {
  if (e.resource === 'pods' && (e.subresource === 'exec' || e.subresource === 'attach' || e.subresource === 'portforward') && e.apiGroup === '')
    return CATEGORY.exec;
  if (e.resource === 'secrets' && e.subresource === '' && e.apiGroup === '' && READ_VERBS.has(e.verb)) return CATEGORY.secretRead;
  if (e.apiGroup === 'rbac.authorization.k8s.io' && RBAC_RESOURCES.has(e.resource) && WRITE_VERBS.has(e.verb)) return CATEGORY.rbacChange;
  return null;
}

/**
 * The batch dictionary's index: strings to their dictionary positions. Open addressing on a hash of a string's length
 * and a few of its characters, confirmed by comparing the strings: the fields packed (users, user agents, groups, IPs)
 * come fresh from `JSON.parse`, and a `Map` must hash each one in full the first time (~150-200 ns for a user agent,
 * measured), where sampling a few characters and one comparison cost a fraction. Strings that share length and sampled
 * characters probe on; past PROBES slots (crafted input) they go to a `Map`, so no input makes a lookup long.
 */
class StringIndex {
  private static readonly SIZE = 4096;
  private static readonly PROBES = 16;
  private readonly keys: (string | undefined)[] = new Array<string | undefined>(StringIndex.SIZE).fill(undefined);
  private readonly values = new Int32Array(StringIndex.SIZE);
  private overflow: Map<string, number> | undefined;

  private static hash(v: string): number {
    const n = v.length;
    if (n === 0) return 0;
    let h = Math.imul(n, 0x9e3779b1) ^ v.charCodeAt(n - 1);
    h = Math.imul(h ^ v.charCodeAt(n >> 1), 0x85ebca6b);
    h = Math.imul(h ^ v.charCodeAt((n * 3) >> 2), 0xc2b2ae35);
    h ^= v.charCodeAt(n >> 2) ^ (v.charCodeAt(n > 7 ? n - 7 : 0) << 8) ^ (v.charCodeAt(n > 2 ? n - 2 : 0) << 16);
    return (h ^ (h >>> 15)) & (StringIndex.SIZE - 1);
  }

  /** The position of `v`, or -1 after which `set(v, i)` must follow. */
  get(v: string): number {
    const keys = this.keys;
    let i = StringIndex.hash(v);
    for (let p = 0; p < StringIndex.PROBES; p++) {
      const k = keys[i];
      if (k === undefined) {
        this.free = i;
        return -1;
      }
      if (k === v) return this.values[i]!;
      i = (i + 1) & (StringIndex.SIZE - 1);
    }
    this.free = -1;
    return this.overflow?.get(v) ?? -1;
  }

  /** Where the last unsuccessful `get` found room (-1: its probes were all taken). */
  private free = -1;

  set(v: string, index: number): void {
    if (this.free >= 0) {
      this.keys[this.free] = v;
      this.values[this.free] = index;
    } else (this.overflow ??= new Map()).set(v, index);
  }

  /** Empties the index for another batch (reused: a fresh one is 32 KB a batch of garbage). */
  clear(): void {
    this.keys.fill(undefined);
    this.overflow = undefined;
  }

  private static spare: StringIndex | undefined;

  /** An empty index: the one the last finished batch gave back, or a new one. */
  static take(): StringIndex {
    const s = StringIndex.spare;
    StringIndex.spare = undefined;
    return s ?? new StringIndex();
  }

  static giveBack(s: StringIndex): void {
    s.clear();
    StringIndex.spare = s;
  }
}

/** Group lists packed lately, with their dictionary positions: most events repeat one of a few. */
const GROUP_CACHE = 8;

/**
 * Packs events one at a time as they are decoded, so an event's object can die young instead of waiting in a batch
 * array for the writer: only the packed numbers and strings live on.
 */
export class RecordPacker {
  private dict: string[] = [];
  private index: StringIndex | undefined = StringIndex.take();
  private nums: Float64Array;
  private text: string[];
  private textLen = 0;
  private raw: Buffer;
  private rawLen = 0;
  /**
   * Raw lines not yet copied: `runBytes[runStart, runEnd)`, to land at `runAt`. Consecutive lines of one read chunk
   * are one copy (the newline between them is the chunk's own), not a view and a copy each.
   */
  private runBytes: Uint8Array | undefined;
  private runStart = 0;
  private runEnd = 0;
  private runAt = 0;
  private groupLists: string[][] = [];
  private groupIdx: number[] = [];
  private admission: [number, AdmissionRow][] = [];
  count = 0;

  /**
   * `capacity`: events expected; `rawBytes`: their raw JSON's expected size (both grow as needed). `buffers`: where
   * the raw JSON's buffer comes from (a writer thread's recycled buffers: see BatchWriter.rawBuffer).
   */
  constructor(capacity = 512, rawBytes = capacity * 1024, buffers?: (bytes: number) => Buffer) {
    this.nums = new Float64Array(Math.max(1, capacity) * NUM_FIELDS);
    this.text = new Array<string>(Math.max(1, capacity) * TEXT_FIELDS);
    const size = Math.max(1024, rawBytes);
    this.raw = buffers?.(size) ?? Buffer.allocUnsafeSlow(size);
  }

  private addRaw(line: string, bytes: Uint8Array | undefined, start: number, end: number): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8; one more for the newline.
    const need = this.rawLen + (bytes ? end - start : line.length * 3) + 1;
    if (need > this.raw.length) {
      this.copyRun();
      const grown = Buffer.allocUnsafeSlow(Math.max(need, this.raw.length * 2));
      this.raw.copy(grown, 0, 0, this.rawLen);
      this.raw = grown;
    }
    if (bytes) {
      if (this.count > 0) {
        // The next line of the chunk the run is in, one newline after it: the run takes it, newline and all.
        if (bytes === this.runBytes && start === this.runEnd + 1 && bytes[this.runEnd] === 10) {
          this.rawLen += end - this.runEnd;
          this.runEnd = end;
          return;
        }
        this.raw[this.rawLen++] = 10;
      }
      this.copyRun();
      this.runBytes = bytes;
      this.runStart = start;
      this.runEnd = end;
      this.runAt = this.rawLen;
      this.rawLen += end - start;
    } else {
      if (this.count > 0) this.raw[this.rawLen++] = 10;
      this.rawLen += this.raw.write(line, this.rawLen, 'utf8');
    }
  }

  private copyRun(): void {
    const b = this.runBytes;
    if (b === undefined) return;
    this.raw.set(b.subarray(this.runStart, this.runEnd), this.runAt);
    this.runBytes = undefined;
  }

  /** The dictionary position of an event's groups, joined by commas. */
  private groups(g: readonly string[]): number {
    if (g.length === 0) return this.d('');
    if (g.length === 1) return this.d(g[0]!);
    const lists = this.groupLists;
    outer: for (let i = 0; i < lists.length; i++) {
      const l = lists[i]!;
      if (l.length !== g.length) continue;
      for (let j = 0; j < l.length; j++) if (l[j] !== g[j]) continue outer;
      return this.groupIdx[i]!;
    }
    const idx = this.d(g.join(','));
    if (lists.length === GROUP_CACHE) {
      lists.shift();
      this.groupIdx.shift();
    }
    lists.push(g as string[]);
    this.groupIdx.push(idx);
    return idx;
  }

  private d(v: string): number {
    const index = (this.index ??= StringIndex.take());
    let i = index.get(v);
    if (i < 0) {
      i = this.dict.length;
      this.dict.push(noNul(v));
      index.set(v, i);
    }
    return i;
  }

  /**
   * Packs an event; its raw JSON is `e.raw`, or `bytes[start, end)` when given (the same text in UTF-8). All or
   * nothing: the numbers go into the next row's slot, which counts only once `count` moves past it, and the raw line
   * and text fields are written last, so an add that throws (a field of an unexpected type) leaves the batch's rows and
   * raw lines in step.
   */
  add(e: NormalisedEvent, bytes?: Uint8Array, start = 0, end = 0): void {
    const o = this.count * NUM_FIELDS;
    if (o + NUM_FIELDS > this.nums.length) {
      const grown = new Float64Array(this.nums.length * 2);
      grown.set(this.nums);
      this.nums = grown;
    }
    const nums = this.nums;
    nums[o + N_TIME] = e.timeMicros;
    nums[o + N_STAGE] = stageCode(e.stage);
    nums[o + N_CLUSTER] = this.d(e.cluster);
    nums[o + N_VERB] = this.d(e.verb);
    nums[o + N_USER] = this.d(e.user);
    nums[o + N_GROUPS] = this.groups(e.groups);
    nums[o + N_IMP] = this.d(e.impersonatedUser);
    nums[o + N_IP] = this.d(e.sourceIP);
    nums[o + N_UA] = this.d(e.userAgent);
    nums[o + N_GROUP] = this.d(e.apiGroup);
    nums[o + N_VERSION] = this.d(e.apiVersion);
    nums[o + N_RESOURCE] = this.d(e.resource);
    nums[o + N_NAMESPACE] = this.d(e.namespace);
    nums[o + N_CODE] = e.code;
    nums[o + N_DECISION] = decisionCode(e.decision);
    nums[o + N_LEVEL] = levelCode(e.level);
    nums[o + N_CAT] = categoryOf(e) ?? -1;
    const auditID = noNul(e.auditID),
      subresource = noNul(e.subresource),
      name = noNul(e.name),
      command = noNul(e.command),
      container = noNul(e.container);
    const admission = e.admission ? admissionRows(e) : undefined;
    this.addRaw(e.raw, bytes, start, end);
    const text = this.text;
    let t = this.textLen;
    text[t++] = auditID;
    text[t++] = subresource;
    text[t++] = name;
    text[t++] = command;
    text[t++] = container;
    this.textLen = t;
    if (admission) for (const r of admission) this.admission.push([this.count, r]);
    this.count++;
  }

  finish(): EventRecords {
    this.copyRun();
    if (this.index) StringIndex.giveBack(this.index);
    this.index = undefined;
    this.groupLists = [];
    const nums = this.count * NUM_FIELDS === this.nums.length ? this.nums : this.nums.slice(0, this.count * NUM_FIELDS);
    const admission = this.admission.length > 0 ? JSON.stringify(this.admission) : undefined;
    this.text.length = this.textLen;
    return { count: this.count, nums, text: this.text.join(NUL), dict: this.dict.join(NUL), raw: this.raw.subarray(0, this.rawLen), admission };
  }
}

export function toRecords(events: readonly NormalisedEvent[]): EventRecords {
  const p = new RecordPacker(
    events.length,
    events.reduce((n, e) => n + e.raw.length + 1, 0),
  );
  for (const e of events) p.add(e);
  return p.finish();
}

/**
 * Reads NUL-separated fields in order from one string (a class, not a closure: the writer's insert loop reads every
 * row's text fields with one).
 */
export class FieldReader {
  private at = 0;
  constructor(private readonly text: string) {}
  read(): string {
    let end = this.text.indexOf(NUL, this.at);
    if (end < 0) end = this.text.length;
    const v = this.text.slice(this.at, end);
    this.at = end + 1;
    return v;
  }
}
