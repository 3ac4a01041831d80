// `kaudit serve --tail` as a real process, killed with SIGKILL at several points while kube-apiserver's own rotating
// writer (lumberjack.v2: 1 MB files, gzip in the background, ~20 rotations a second) writes 20,000 numbered events,
// and started again each time: at the end every event is stored exactly once. Runs the built CLI (bin/kaudit.js on
// dist/: `npm test` builds first).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { tempDir, waitFor } from '../helpers/events.js';
import { exactlyOnce, lumberjackWriter, startWriter, storedNumbers } from './lumberjack.js';

const BIN = lumberjackWriter();
// KAUDIT_TAIL_TEST_CLI: another build's bin/kaudit.js (to check that these tests fail on code without the fix).
const KAUDIT = process.env.KAUDIT_TAIL_TEST_CLI ?? fileURLToPath(new URL('../../bin/kaudit.js', import.meta.url));

interface Serve {
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr(): string;
}

function serve(db: string, log: string): Serve {
  const child = spawn(process.execPath, [KAUDIT, 'serve', '--db', db, '--tail', log, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, stderr: () => err };
}

function storedCount(db: string): number {
  if (!existsSync(db)) return 0;
  try {
    const d = new Database(db, { readonly: true, fileMustExist: true });
    try {
      return d.prepare('SELECT count(*) FROM events').pluck().get() as number;
    } finally {
      d.close();
    }
  } catch {
    return 0; // not created yet
  }
}

const backups = (dir: string) =>
  new Set(
    readdirSync(dir)
      .filter((f) => /^audit-.*\.log(\.gz)?$/.test(f))
      .map((f) => f.replace(/\.gz$/, '')),
  ).size;

describe.skipIf(!BIN)('kaudit serve --tail killed with SIGKILL under lumberjack rotation', { timeout: 600_000 }, () => {
  const N = 20_000;

  async function run(o: { startAfterRotations: number; killAt: number[]; downMs: number }) {
    const dir = tempDir('kaudit-tail-kill-');
    const log = join(dir, 'audit.log');
    const db = join(dir, 'k.db');
    let s: Serve | undefined;
    if (o.startAfterRotations === 0) {
      s = serve(db, log);
      await waitFor(() => existsSync(db), 'the store to be created', 30_000);
    }
    const w = startWriter(BIN!, { path: log, n: N, rate: 12_000, maxSizeMB: 1, compress: true, pad: 900, report: 500 });
    if (!s) {
      await waitFor(() => backups(dir) >= o.startAfterRotations, `${o.startAfterRotations} rotations`, 60_000);
      s = serve(db, log);
    }
    const logs: string[] = [];
    for (const at of o.killAt) {
      // Killed once the writer has written this share of the events (or, past the end, kaudit stored it).
      await waitFor(() => (at <= 1 ? w.written() >= at * N : storedCount(db) >= (at - 1) * N), `kill point ${at}`, 120_000);
      s.child.kill('SIGKILL');
      await s.exited;
      logs.push(s.stderr());
      // Down for a while: the writer rotates (and compresses) several files meanwhile.
      await new Promise((r) => setTimeout(r, o.downMs));
      s = serve(db, log);
    }
    await w.done;
    await waitFor(() => storedCount(db) >= N, `${N} events stored (have ${storedCount(db)})`, 300_000);
    await new Promise((r) => setTimeout(r, 500));
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    logs.push(s.stderr());
    expect(exactlyOnce(await storedNumbers(db), 0, N)).toEqual({});
    // No file was found missing or damaged.
    expect(logs.join('').match(/.* warn tail .*/g) ?? []).toEqual([]);
  }

  it('started before the first write; killed at 20%, 45% and 70% of the writing and once while catching up', async () => {
    await run({ startAfterRotations: 0, killAt: [0.2, 0.45, 0.7, 1.5], downMs: 400 });
  });

  it('started after the first rotations; killed twice', async () => {
    await run({ startAfterRotations: 6, killAt: [0.5, 0.8], downMs: 700 });
  });
});
