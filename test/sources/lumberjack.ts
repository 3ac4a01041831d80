/**
 * The tail tests' rotating writer: kube-apiserver's own lumberjack (test/sources/lumberjack-writer, built by
 * scripts/lumberjack-writer.sh from the Go module proxy into ~/.cache/kaudit). Without Go the tests that need it skip,
 * unless KAUDIT_REQUIRE_LUMBERJACK=1 (set by .ci/run), where they fail.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const lumberjackRequired = process.env.KAUDIT_REQUIRE_LUMBERJACK === '1';

let built: { bin?: string; reason?: string } | undefined;

/** The writer's binary, building it once per test process; undefined (with the reason printed) when Go is missing. */
export function lumberjackWriter(): string | undefined {
  if (!built) {
    try {
      const bin = execFileSync('bash', [join(ROOT, 'scripts/lumberjack-writer.sh')], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 })
        .toString()
        .trim();
      built = { bin };
    } catch (e) {
      built = { reason: (e as Error).message };
    }
  }
  if (built.bin) return built.bin;
  if (lumberjackRequired) throw new Error(`KAUDIT_REQUIRE_LUMBERJACK=1 but the lumberjack writer could not be built: ${built.reason}`);
  process.stderr.write(`skipping the lumberjack tail tests: ${built.reason}\n`);
  return undefined;
}

export interface WriteOptions {
  path: string;
  from?: number;
  n: number;
  /** Events per second (0: as fast as it can). */
  rate?: number;
  maxSizeMB?: number;
  maxBackups?: number;
  compress?: boolean;
  /** Padding bytes per event (an event is ~900 bytes plus this). */
  pad?: number;
  report?: number;
}

export interface Writer {
  done: Promise<void>;
  /** Events written so far (from the writer's reports). */
  written(): number;
  kill(): void;
}

/** Starts the writer: events numbered from..from+n-1 (auditID 00000000-0000-4000-8000-<number, 12 digits>). */
export function startWriter(bin: string, o: WriteOptions): Writer {
  const args = [
    '-path',
    o.path,
    '-from',
    String(o.from ?? 0),
    '-n',
    String(o.n),
    '-rate',
    String(o.rate ?? 0),
    '-maxsize',
    String(o.maxSizeMB ?? 1),
    '-maxbackups',
    String(o.maxBackups ?? 0),
    '-pad',
    String(o.pad ?? 900),
    '-report',
    String(o.report ?? 1000),
  ];
  if (o.compress) args.push('-compress');
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let written = 0;
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    for (const m of d.toString().matchAll(/wrote (\d+)/g)) written = Number(m[1]);
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<void>((resolve, reject) => {
    child.on('exit', (code, sig) => (code === 0 ? resolve() : reject(new Error(`lumberjack-writer exited with ${code ?? sig}: ${err}`))));
  });
  return { done, written: () => written, kill: () => child.kill('SIGKILL') };
}

/** The event numbers in every file of the log now (plain and gzipped), by reading them. */
export function numbersInLogFiles(dir: string, liveName = 'audit.log'): Set<number> {
  const out = new Set<number>();
  const stem = liveName.replace(/\.log$/, '');
  const names = readdirSync(dir).filter((f) => f === liveName || (f.startsWith(stem + '-') && /\.log(\.gz)?$/.test(f)));
  // A backup being compressed is both x.log and x.log.gz: read the plain one.
  for (const f of names) {
    if (f.endsWith('.gz') && names.includes(f.slice(0, -3))) continue;
    let data: Buffer;
    try {
      data = readFileSync(join(dir, f));
      if (f.endsWith('.gz')) data = gunzipSync(data);
    } catch {
      continue;
    }
    for (const m of data.toString('latin1').matchAll(/"auditID":"00000000-0000-4000-8000-(\d{12})"/g)) out.add(Number(m[1]));
  }
  return out;
}

/** How many times each event number is stored in the SQLite store at `dbPath` (read on a connection of its own). */
export async function storedNumbers(dbPath: string): Promise<Map<number, number>> {
  const { default: Database } = await import('better-sqlite3');
  const { decodeAuditID } = await import('../../src/store/audit-id.js');
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT audit_id AS id, count(*) AS n FROM events GROUP BY audit_id').all() as { id: Buffer | string; n: number }[];
    const out = new Map<number, number>();
    for (const r of rows) out.set(Number(decodeAuditID(r.id).slice(-12)), r.n);
    return out;
  } finally {
    db.close();
  }
}

/**
 * What is wrong with a store that should hold events first..first+n-1 once each: how many are missing, doubled or
 * not expected, with the first few numbers of each (an empty report when all is right).
 */
export function exactlyOnce(stored: Map<number, number>, first: number, n: number): Record<string, string> {
  const missing: number[] = [];
  const doubled: number[] = [];
  for (let k = first; k < first + n; k++) {
    const c = stored.get(k) ?? 0;
    if (c === 0) missing.push(k);
    else if (c > 1) doubled.push(k);
  }
  const extra = [...stored.keys()].filter((k) => k < first || k >= first + n);
  const out: Record<string, string> = {};
  for (const [name, xs] of Object.entries({ missing, doubled, extra })) {
    if (xs.length) out[name] = `${xs.length}: ${xs.slice(0, 12).join(', ')}${xs.length > 12 ? ', ...' : ''}`;
  }
  return out;
}
