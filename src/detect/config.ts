/**
 * Detection tuning: plain data that lives under the `detection:` key of kaudit's YAML config file (see
 * detections/README.md). Users tune the catalog here instead of editing rule files: disable a rule, change its
 * severity or threshold, add exceptions, extend or replace the shared lists.
 */
import { isObject } from '../config/values.js';
import { ConfigError } from '../errors.js';
import { durationMs } from '../events/duration.js';
import { SEVERITIES, type Severity } from './alert.js';

/**
 * An exception silences a rule for events it describes. Within one field any entry may match; all given fields must
 * match. Patterns are exact strings, globs (`*`, `?`) or regular expressions written `/.../`.
 */
export interface DetectionException {
  /** Rule ids (or globs) the exception applies to; absent = the rule it is listed under, or every rule when global. */
  rules?: string[];
  /** Usernames (the authenticated user). */
  users?: string[];
  /** Any one of the user's groups. */
  groups?: string[];
  /** The object's namespace ("" = cluster-scoped). */
  namespaces?: string[];
  /** Container images: the exception matches when every image of the event's pod spec(s) matches one pattern. */
  images?: string[];
  /** The object's name. */
  names?: string[];
  /** Why: kept for people reading the config. */
  reason?: string;
}

export interface RuleTuning {
  enabled?: boolean;
  severity?: Severity;
  exceptions?: DetectionException[];
  /** For threshold rules: a different count and/or window (`10m`). */
  threshold?: { count?: number; window?: string };
  /** For sequence rules: a different window (`5m`). */
  within?: string;
  /** Names of the rule's shipped exceptions to drop (`*`: all of them); see `kaudit rules explain ID`. */
  removeExceptions?: string[];
}

/** How a list from the rule files is changed: a plain array replaces it. */
export type ListOverride = string[] | { add?: string[]; remove?: string[]; replace?: string[] };

export interface DetectionConfig {
  /** Rules directory, when not given on the command line (default: the bundled detections/). */
  rulesDir?: string;
  /** Rule ids (or globs) to turn off. */
  disabled?: string[];
  /** Only these rule ids (or globs) run; absent = all. */
  enabled?: string[];
  /** Per-rule severity, shorthand for rules.<id>.severity. */
  severity?: Record<string, Severity>;
  /** Per-rule tuning. */
  rules?: Record<string, RuleTuning>;
  /** Exceptions for all rules (or those named in each exception's `rules`). */
  exceptions?: DetectionException[];
  /** Changes to the shared lists (system namespaces, sensitive host paths, allowed images ...). */
  lists?: Record<string, ListOverride>;
  /** Upper bound on one JSONata evaluation, milliseconds of wall time (default 2000: wall time, so a busy host or a GC pause counts; the bound is for pathological expressions). */
  evaluationTimeoutMs?: number;
  /**
   * Bounds on detection state (keys per stateful rule, remembered request ids per rule), and whether `kaudit serve`
   * keeps it across a restart in its store (`persist`, default true).
   */
  state?: { maxKeys?: number; maxRequests?: number; persist?: boolean };
}

/** A bad `detection:` setting: a ConfigError, so callers that report config errors report it too. */
export class DetectionConfigError extends ConfigError {}

/** `10m`, `30s`, `1h`, `500ms`, or a number of seconds, to microseconds. */
export function parseWindow(s: string | number, where: string): number {
  if (typeof s === 'number' && Number.isFinite(s) && s > 0) return Math.round(s * 1e6);
  const ms = typeof s === 'string' ? durationMs(s) : undefined;
  if (ms === undefined) throw new DetectionConfigError(`${where}: bad duration ${JSON.stringify(s)}: use e.g. 30s, 10m, 1h`);
  const us = Math.round(ms * 1000);
  if (us <= 0) throw new DetectionConfigError(`${where}: duration must be positive`);
  return us;
}

function stringList(v: unknown, where: string): string[] {
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' && typeof x !== 'number')) {
    throw new DetectionConfigError(`${where} must be a list of strings`);
  }
  return v.map(String);
}

function severity(v: unknown, where: string): Severity {
  if (typeof v !== 'string' || !(SEVERITIES as readonly string[]).includes(v)) {
    throw new DetectionConfigError(`${where} must be one of ${SEVERITIES.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as Severity;
}

function onlyKeys(o: Record<string, unknown>, keys: string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) throw new DetectionConfigError(`${where}: unknown key "${k}" (expected one of ${keys.join(', ')})`);
  }
}

const EXCEPTION_KEYS = ['rules', 'users', 'groups', 'namespaces', 'images', 'names', 'reason'];

function exception(v: unknown, where: string): DetectionException {
  if (!isObject(v)) throw new DetectionConfigError(`${where} must be a mapping (users, groups, namespaces, images, names, rules, reason)`);
  onlyKeys(v, EXCEPTION_KEYS, where);
  const out: DetectionException = {};
  for (const k of ['rules', 'users', 'groups', 'namespaces', 'images', 'names'] as const) {
    if (v[k] !== undefined) out[k] = stringList(v[k], `${where}.${k}`);
  }
  if (v.reason !== undefined) out.reason = String(v.reason);
  if (!['users', 'groups', 'namespaces', 'images', 'names'].some((k) => v[k] !== undefined)) {
    throw new DetectionConfigError(`${where} names nothing to except: give users, groups, namespaces, images or names`);
  }
  return out;
}

function exceptions(v: unknown, where: string): DetectionException[] {
  if (!Array.isArray(v)) throw new DetectionConfigError(`${where} must be a list of exceptions`);
  return v.map((x, i) => exception(x, `${where}[${i}]`));
}

/**
 * Checks a detection config read from YAML (or built in code) and returns it typed. Throws DetectionConfigError
 * naming the offending key.
 */
export function parseDetectionConfig(v: unknown, where = 'detection'): DetectionConfig {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new DetectionConfigError(`${where} must be a mapping`);
  onlyKeys(v, ['rulesDir', 'disabled', 'enabled', 'severity', 'rules', 'exceptions', 'lists', 'evaluationTimeoutMs', 'state'], where);
  const out: DetectionConfig = {};
  if (v.rulesDir !== undefined) {
    if (typeof v.rulesDir !== 'string') throw new DetectionConfigError(`${where}.rulesDir must be a path`);
    out.rulesDir = v.rulesDir;
  }
  if (v.disabled !== undefined) out.disabled = stringList(v.disabled, `${where}.disabled`);
  if (v.enabled !== undefined) out.enabled = stringList(v.enabled, `${where}.enabled`);
  if (v.severity !== undefined) {
    if (!isObject(v.severity)) throw new DetectionConfigError(`${where}.severity must map rule ids to severities`);
    out.severity = {};
    for (const [id, s] of Object.entries(v.severity)) out.severity[id] = severity(s, `${where}.severity.${id}`);
  }
  if (v.rules !== undefined) {
    if (!isObject(v.rules)) throw new DetectionConfigError(`${where}.rules must map rule ids to tuning`);
    out.rules = {};
    for (const [id, t] of Object.entries(v.rules)) {
      const w = `${where}.rules.${id}`;
      if (!isObject(t)) throw new DetectionConfigError(`${w} must be a mapping (enabled, severity, exceptions, removeExceptions, threshold, within)`);
      onlyKeys(t, ['enabled', 'severity', 'exceptions', 'removeExceptions', 'threshold', 'within'], w);
      const rt: RuleTuning = {};
      if (t.enabled !== undefined) {
        if (typeof t.enabled !== 'boolean') throw new DetectionConfigError(`${w}.enabled must be true or false`);
        rt.enabled = t.enabled;
      }
      if (t.severity !== undefined) rt.severity = severity(t.severity, `${w}.severity`);
      if (t.exceptions !== undefined) rt.exceptions = exceptions(t.exceptions, `${w}.exceptions`);
      if (t.removeExceptions !== undefined) rt.removeExceptions = stringList(t.removeExceptions, `${w}.removeExceptions`);
      if (t.threshold !== undefined) {
        if (!isObject(t.threshold)) throw new DetectionConfigError(`${w}.threshold must be a mapping (count, window)`);
        onlyKeys(t.threshold, ['count', 'window'], `${w}.threshold`);
        rt.threshold = {};
        if (t.threshold.count !== undefined) {
          if (!Number.isInteger(t.threshold.count) || (t.threshold.count as number) < 1)
            throw new DetectionConfigError(`${w}.threshold.count must be a positive integer`);
          rt.threshold.count = t.threshold.count as number;
        }
        if (t.threshold.window !== undefined) {
          parseWindow(t.threshold.window as string, `${w}.threshold.window`);
          rt.threshold.window = String(t.threshold.window);
        }
      }
      if (t.within !== undefined) {
        parseWindow(t.within as string, `${w}.within`);
        rt.within = String(t.within);
      }
      out.rules[id] = rt;
    }
  }
  if (v.exceptions !== undefined) out.exceptions = exceptions(v.exceptions, `${where}.exceptions`);
  if (v.lists !== undefined) {
    if (!isObject(v.lists)) throw new DetectionConfigError(`${where}.lists must map list names to a list or {add, remove, replace}`);
    out.lists = {};
    for (const [name, l] of Object.entries(v.lists)) {
      const w = `${where}.lists.${name}`;
      if (Array.isArray(l)) out.lists[name] = stringList(l, w);
      else if (isObject(l)) {
        onlyKeys(l, ['add', 'remove', 'replace'], w);
        const o: { add?: string[]; remove?: string[]; replace?: string[] } = {};
        for (const k of ['add', 'remove', 'replace'] as const) if (l[k] !== undefined) o[k] = stringList(l[k], `${w}.${k}`);
        out.lists[name] = o;
      } else throw new DetectionConfigError(`${w} must be a list (replaces the list) or {add, remove, replace}`);
    }
  }
  if (v.evaluationTimeoutMs !== undefined) {
    if (typeof v.evaluationTimeoutMs !== 'number' || !(v.evaluationTimeoutMs > 0))
      throw new DetectionConfigError(`${where}.evaluationTimeoutMs must be a positive number`);
    out.evaluationTimeoutMs = v.evaluationTimeoutMs;
  }
  if (v.state !== undefined) {
    if (!isObject(v.state)) throw new DetectionConfigError(`${where}.state must be a mapping (maxKeys, maxRequests, persist)`);
    onlyKeys(v.state, ['maxKeys', 'maxRequests', 'persist'], `${where}.state`);
    out.state = {};
    if (v.state.persist !== undefined) {
      if (typeof v.state.persist !== 'boolean') throw new DetectionConfigError(`${where}.state.persist must be true or false`);
      out.state.persist = v.state.persist;
    }
    for (const k of ['maxKeys', 'maxRequests'] as const) {
      const n = v.state[k];
      if (n === undefined) continue;
      if (!Number.isInteger(n) || (n as number) < 1) throw new DetectionConfigError(`${where}.state.${k} must be a positive integer`);
      out.state[k] = n as number;
    }
  }
  return out;
}

/** Applies a list override to a list from the rule files. */
export function applyListOverride(base: readonly string[], o: ListOverride): string[] {
  if (Array.isArray(o)) return [...o];
  const ov = o as { add?: string[]; remove?: string[]; replace?: string[] };
  let out = ov.replace ? [...ov.replace] : [...base];
  if (ov.remove) out = out.filter((x) => !ov.remove!.includes(x));
  if (ov.add) for (const x of ov.add) if (!out.includes(x)) out.push(x);
  return out;
}
