/**
 * Readers for the values of kaudit's configuration (YAML data, environment variables, flags): each checks one value
 * and names its key in the error, once ("kafka.compression must be ..."). A leaf: config sections and the detection
 * tuning use it without importing each other.
 */
import { ConfigError } from '../errors.js';
import { durationMs } from '../events/duration.js';

/** A mapping (a non-null object that is not an array), as YAML and JSON give them. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** How a value is shown in an error: short, and never the whole of a large one. */
export function shown(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isObject(v)) return 'a mapping';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const UNITS: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3, tb: 1e12, tib: 1024 ** 4 };

/** Parses sizes like `10GB`, `512MiB`, `1048576` into bytes; `key` names the setting in the error. */
export function parseBytes(s: string | number, key?: string): number {
  if (typeof s === 'number' && Number.isFinite(s) && s >= 0) return s;
  const m = typeof s === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$/i.exec(s) : null;
  if (!m) throw new ConfigError(`${key ? `${key}: ` : ''}bad size ${shown(s)}: use a number of bytes or e.g. 512MB, 10GiB`);
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? 'b').toLowerCase()]!);
}

/** Parses durations like `30d`, `12h`, `10m`, `45s`, `500ms` (or a number of milliseconds) into milliseconds. */
export function parseDuration(s: string | number, key?: string): number {
  if (typeof s === 'number' && Number.isFinite(s) && s >= 0) return s;
  const ms = typeof s === 'string' ? durationMs(s) : undefined;
  if (ms === undefined) throw new ConfigError(`${key ? `${key}: ` : ''}bad duration ${shown(s)}: use e.g. 500ms, 45s, 10m, 12h, 30d`);
  return Math.round(ms);
}

export function str(v: unknown, key: string, opts: { empty?: boolean } = {}): string {
  if (typeof v !== 'string') throw new ConfigError(`${key} must be a string, got ${shown(v)}`);
  if (!opts.empty && v.trim() === '') throw new ConfigError(`${key} must not be empty`);
  return v;
}

/** A list of strings; a comma-separated string (as environment variables give lists) is split. */
export function strList(v: unknown, key: string): string[] {
  if (typeof v === 'string') {
    return v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new ConfigError(`${key} must be a list of strings, got ${shown(v)}`);
  return v as string[];
}

export function bool(v: unknown, key: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(`${key} must be true or false, got ${shown(v)}`);
  return v;
}

/** An integer of at least `min`; a string may carry a size unit (`2MiB`), as sizes do everywhere in the config. */
export function int(v: unknown, key: string, min: number): number {
  const n = typeof v === 'string' && v.trim() !== '' ? parseBytes(v, key) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min) throw new ConfigError(`${key} must be an integer >= ${min}, got ${shown(v)}`);
  return n;
}

/** A size in bytes (a number or `512MiB`) of at least `min`. */
export function bytes(v: unknown, key: string, min: number): number {
  if (typeof v !== 'string' && typeof v !== 'number') throw new ConfigError(`${key} must be a size in bytes (e.g. 1MiB), got ${shown(v)}`);
  const n = parseBytes(v, key);
  if (n < min) throw new ConfigError(`${key} must be at least ${min} bytes, got ${shown(v)}`);
  return n;
}

/** A duration (`10m`, or a number of milliseconds) longer than zero. */
export function duration(v: unknown, key: string): number {
  if (typeof v !== 'string' && typeof v !== 'number') throw new ConfigError(`${key} must be a duration (e.g. 10m, 30d), got ${shown(v)}`);
  const ms = parseDuration(v, key);
  if (!(ms > 0)) throw new ConfigError(`${key} must be longer than zero, got ${shown(v)}`);
  return ms;
}

/**
 * A section of settings: `null` (a key with nothing under it, `store:` and only comments) is the defaults; a scalar
 * or a list where a mapping belongs is an error, as is a key the section does not have.
 */
export function section(v: unknown, key: string, known: readonly string[]): Record<string, unknown> {
  if (v === null || v === undefined) return {};
  if (!isObject(v)) throw new ConfigError(`config key "${key}" must be a mapping of settings, got ${shown(v)}`);
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) throw new ConfigError(`unknown config key "${key}.${k}" (${key} has ${known.join(', ')})`);
  }
  return v;
}
