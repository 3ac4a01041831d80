/**
 * The saved detection state's format: open threshold windows, sequences in progress and requests already handled, as
 * plain JSON data that an engine made later (after a restart) loads. Each part is keyed by what defines it (the rule's
 * matchers, conditions, exceptions and state settings), so a rule changed in between starts afresh and the others
 * keep theirs.
 */
import type { CompiledRule, Matcher, RuleCore } from './compiler.js';
import { isObject } from '../config/values.js';
import type { RecentIds } from './state.js';

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

export function saveState(compiled: readonly CompiledRule[], allMatchers: readonly Matcher[]): DetectionState {
  const cores = new Map<string, SavedCore>();
  for (const r of compiled) {
    const c = r.core;
    if (cores.has(c.key!)) continue;
    cores.set(c.key!, {
      alerted: c.alerted.save(),
      ...(c.threshold ? { threshold: c.threshold.state.save() } : {}),
      ...(c.sequence ? { sequence: c.sequence.state.save() } : {}),
    });
  }
  const matchers: [string, [string, number][]][] = [];
  const keys = new Set<string>();
  for (const m of allMatchers) if (m.seen && !keys.has(m.key)) (keys.add(m.key), matchers.push([m.key, m.seen.save()]));
  return { format: STATE_FORMAT, version: STATE_VERSION, savedAt: new Date().toISOString(), cores: [...cores], matchers };
}

/** Loads saved data into the rules' state: parts whose key they have are taken; anything else is skipped. */
export function loadState(data: unknown, compiled: readonly CompiledRule[], allMatchers: readonly Matcher[]): LoadedState {
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
    out.keys += c.alerted.load(saved.alerted);
    if (c.threshold) out.keys += c.threshold.state.load(saved.threshold);
    if (c.sequence) out.keys += c.sequence.state.load(saved.sequence);
  }
  for (const e of Array.isArray(data.matchers) ? data.matchers : []) {
    const seen = Array.isArray(e) && typeof e[0] === 'string' ? matchers.get(e[0]) : undefined;
    if (!seen) {
      out.skipped++;
      continue;
    }
    out.parts++;
    out.keys += seen.load((e as unknown[])[1]);
  }
  return out;
}
