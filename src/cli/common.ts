import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Detector } from '../detect/alert.js';
import type { DetectionConfig } from '../detect/config.js';
import { KauditError } from '../errors.js';
import { log } from '../log.js';

/** A command-line usage error: printed as one line with a pointer to --help, exit code 2. */
export class UsageError extends KauditError {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parse<T extends ParseArgsConfig['options']>(argv: string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * The detection engine with the given rules and tuning. Imported when called, so commands that do not detect
 * (`kaudit query`) do not load it; a failure to load is an error, never a silent run without detection.
 */
export async function loadDetector(opts: { rulesDir?: string; config?: DetectionConfig; reserveState?: boolean }): Promise<Detector> {
  const { createDetector } = await import('../detect/index.js');
  return createDetector({
    rulesDir: opts.rulesDir,
    config: opts.config,
    reserveState: opts.reserveState,
    onWarning: (m) => log.warn(`detection: ${m}`, 'detection'),
  });
}

/** Renders rows as an aligned text table, for terminals. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === undefined || v === null ? '' : Array.isArray(v) ? v.join(',') : String(v)).replace(/\s+/g, ' ');
  const widths = columns.map((c) => Math.min(60, Math.max(c.length, ...rows.map((r) => cell(r[c]).length))));
  const fmt = (vals: string[]) =>
    vals
      .map((v, i) => (v.length > widths[i]! ? v.slice(0, widths[i]! - 1) + '…' : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(columns.map((c) => c.toUpperCase())), ...rows.map((r) => fmt(columns.map((c) => cell(r[c]))))].join('\n') + '\n';
}
