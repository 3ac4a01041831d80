/**
 * The saved detection state's format: open threshold windows, sequences in progress and requests already handled, as
 * plain JSON data that an engine made later (after a restart) loads. Each part is keyed by what defines it (the rule's
 * matchers, conditions, exceptions and state settings), so a rule changed in between starts afresh and the others
 * keep theirs.
 */
import type { CompiledRule, Matcher, RuleCore } from './compiler.js';
import { isObject } from '../config/values.js';
import type { RecentIds, SequenceState, ThresholdState } from './state.js';

const STATE_FORMAT = 'kaudit-detection-state';
const STATE_VERSION = 1;

/** What DetectionEngine.saveState returns: JSON data. */
export interface DetectionState {
  format: typeof STATE_FORMAT;
  version: number;
  savedAt: string;
  cores: [string, SavedCore][];
  matchers: [string, [string, number][]][];
}

interface SavedCore {
  alerted: unknown;
  threshold?: unknown;
  sequence?: unknown;
}

/** How much a load took: keys restored, parts matched to a rule, and parts (or data) it skipped. */
export interface LoadedState {
  keys: number;
  parts: number;
  skipped: number;
}

/** The whole state, or (with `origin`) only the entries that origin touched last; parts with no entries are left out then. */
export function saveState(compiled: readonly CompiledRule[], allMatchers: readonly Matcher[], origin?: string): DetectionState {
  const cores = new Map<string, SavedCore>();
  for (const r of compiled) {
    const c = r.core;
    if (cores.has(c.key!)) continue;
    const part: SavedCore = {
      alerted: c.alerted.save(origin),
      ...(c.threshold ? { threshold: c.threshold.state.save(origin) } : {}),
      ...(c.sequence ? { sequence: c.sequence.state.save(origin) } : {}),
    };
    if (origin !== undefined && !hasEntries(part)) continue;
    cores.set(c.key!, part);
  }
  const matchers: [string, [string, number][]][] = [];
  const keys = new Set<string>();
  for (const m of allMatchers) {
    if (!m.seen || keys.has(m.key)) continue;
    keys.add(m.key);
    const seen = m.seen.save(origin);
    if (origin === undefined || seen.length > 0) matchers.push([m.key, seen]);
  }
  return { format: STATE_FORMAT, version: STATE_VERSION, savedAt: new Date().toISOString(), cores: [...cores], matchers };
}

function hasEntries(p: SavedCore): boolean {
  return [p.alerted, p.threshold, p.sequence].some((x) => Array.isArray(x) && x.length > 0);
}

/** Each part of the rules' state once (cores and request-id sets are shared between rules and matchers). */
function eachPart(compiled: readonly CompiledRule[], allMatchers: readonly Matcher[], fn: (p: RecentIds | ThresholdState | SequenceState) => void): void {
  const cores = new Set<RuleCore>();
  for (const r of compiled) {
    const c = r.core;
    if (cores.has(c)) continue;
    cores.add(c);
    fn(c.alerted);
    if (c.threshold) fn(c.threshold.state);
    if (c.sequence) fn(c.sequence.state);
  }
  const seen = new Set<RecentIds>();
  for (const m of allMatchers) if (m.seen && !seen.has(m.seen)) (seen.add(m.seen), fn(m.seen));
}

/** Forgets the entries one origin touched last (a partition this detector no longer owns); returns how many. */
export function dropState(compiled: readonly CompiledRule[], allMatchers: readonly Matcher[], origin: string): number {
  let n = 0;
  eachPart(compiled, allMatchers, (p) => (n += p.drop(origin)));
  return n;
}

/** Entries the rules' state holds now (request ids, threshold and sequence keys), each shared part counted once. */
export function liveEntries(compiled: readonly CompiledRule[], allMatchers: readonly Matcher[]): number {
  let n = 0;
  eachPart(compiled, allMatchers, (p) => (n += p.size));
  return n;
}

/** Bytes the request-id sets hold resident (each takes its whole size at its first id; see recent-ids.ts). */
export function liveIdBytes(compiled: readonly CompiledRule[], allMatchers: readonly Matcher[]): number {
  let n = 0;
  eachPart(compiled, allMatchers, (p) => (n += 'residentBytes' in p ? p.residentBytes : 0));
  return n;
}

/** Entries in saved state (keys and ids of every part). */
export function stateEntries(s: DetectionState): number {
  let n = 0;
  for (const [, p] of s.cores) for (const x of [p.alerted, p.threshold, p.sequence]) if (Array.isArray(x)) n += x.length;
  for (const [, ids] of s.matchers) n += ids.length;
  return n;
}

/**
 * Saved state with only the newest `fraction` of each part's entries (they are saved least recently used first), for
 * a snapshot that must fit a size cap: the oldest windows are the ones given up.
 */
export function trimState(s: DetectionState, fraction: number): DetectionState {
  const newest = <T>(x: T): T => (Array.isArray(x) ? (x.slice(x.length - Math.floor(x.length * fraction)) as T) : x);
  return {
    ...s,
    cores: s.cores.map(([k, p]) => [
      k,
      { alerted: newest(p.alerted), ...(p.threshold ? { threshold: newest(p.threshold) } : {}), ...(p.sequence ? { sequence: newest(p.sequence) } : {}) },
    ]),
    matchers: s.matchers.map(([k, ids]) => [k, newest(ids)]),
  };
}

/**
 * Loads saved data into the rules' state: parts whose key they have are taken; anything else is skipped. With
 * `origin`, the loaded entries are tagged with it (a partition this detector was given).
 */
export function loadState(data: unknown, compiled: readonly CompiledRule[], allMatchers: readonly Matcher[], origin?: string): LoadedState {
  const out = { keys: 0, parts: 0, skipped: 0 };
  if (!isObject(data) || data.format !== STATE_FORMAT || data.version !== STATE_VERSION) {
    out.skipped = 1;
    return out;
  }
  const cores = new Map<string, RuleCore>();
  for (const r of compiled) cores.set(r.core.key!, r.core);
  const matchers = new Map<string, RecentIds>();
  for (const m of allMatchers) if (m.seen) matchers.set(m.key, m.seen);
  for (const e of Array.isArray(data.cores) ? data.cores : []) {
    const c = Array.isArray(e) && typeof e[0] === 'string' ? cores.get(e[0]) : undefined;
    const saved = Array.isArray(e) && isObject(e[1]) ? e[1] : undefined;
    if (!c || !saved) {
      out.skipped++;
      continue;
    }
    out.parts++;
    out.keys += c.alerted.load(saved.alerted, origin);
    if (c.threshold) out.keys += c.threshold.state.load(saved.threshold, origin);
    if (c.sequence) out.keys += c.sequence.state.load(saved.sequence, origin);
  }
  for (const e of Array.isArray(data.matchers) ? data.matchers : []) {
    const seen = Array.isArray(e) && typeof e[0] === 'string' ? matchers.get(e[0]) : undefined;
    if (!seen) {
      out.skipped++;
      continue;
    }
    out.parts++;
    out.keys += seen.load((e as unknown[])[1], origin);
  }
  return out;
}
