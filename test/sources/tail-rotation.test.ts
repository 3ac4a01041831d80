// The tail under kube-apiserver's own rotating writer (lumberjack.v2, built from the Go module proxy: see
// lumberjack.ts): 1 MB files, gzip in the background, well over 10 rotations a second. Every numbered event must be
// stored exactly once, and no file read twice (no duplicates met at all).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { setLogSink } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { FileTail } from '../../src/sources/file-tail.js';
import { counts } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir, waitFor } from '../helpers/events.js';
import { exactlyOnce, lumberjackWriter, numbersInLogFiles, startWriter, storedNumbers } from './lumberjack.js';

const BIN = lumberjackWriter();

function metric(m: Metrics, name: string): number {
  let sum = 0;
  for (const l of m.render().split('\n')) {
    const r = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(l);
    if (r) sum += Number(r[2]);
  }
  return sum;
}

function setup() {
  const dir = tempDir('kaudit-tail-lj-');
  const log = join(dir, 'audit.log');
  const dbPath = join(dir, 'k.db');
  const store = new SqliteStore(dbPath);
  const metrics = new Metrics();
  const pipeline = new Pipeline({ writer: store, metrics });
  let tail: FileTail | undefined;
  const start = () => {
    tail = new FileTail({ path: log, cluster: 'c', sink: pipeline, store, pollMs: 50, metrics });
    tail.start();
  };
  const stop = async () => {
    await tail?.stop();
    await pipeline.idle();
    tail = undefined;
  };
  const stored = () => counts(store).events;
  // Rotated files (a backup being compressed is both x.log and x.log.gz: counted once).
  const backups = () =>
    existsSync(dir)
      ? new Set(
          readdirSync(dir)
            .filter((f) => /^audit-.*\.log(\.gz)?$/.test(f))
            .map((f) => f.replace(/\.gz$/, '')),
        ).size
      : 0;
  /** Waits for `n` events, then a while longer for any extra one. */
  const settle = async (n: number, timeoutMs = 300_000) => {
    await waitFor(() => stored() >= n, `${n} events stored (have ${stored()})`, timeoutMs);
    await new Promise((r) => setTimeout(r, 300));
  };
  return { dir, log, dbPath, store, metrics, start, stop, stored, backups, settle };
}

describe.skipIf(!BIN)('file tail under lumberjack (kube-apiserver rotation, compression)', { timeout: 600_000 }, () => {
  // ~1.8 KB events, 1 MB files: 20,000 events are ~35 files; at 12,000 events/s ~20 rotations a second.
  const N = 20_000;
  const writeOpts = (log: string, from = 0, n = N) => ({ path: log, from, n, rate: 12_000, maxSizeMB: 1, compress: true, pad: 900 });

  it('started before the first write: every event once, every file read once', async () => {
    const s = setup();
    s.start();
    await new Promise((r) => setTimeout(r, 200));
    // As fast as the writer goes. The rate is read from the rotation times lumberjack puts in the backups' names: at
    // least one run of 10 consecutive rotations within a second (on an idle machine the whole run is ~50 a second; a
    // machine loaded by other work still writes bursts that fast).
    await startWriter(BIN!, { ...writeOpts(s.log), rate: 0 }).done;
    const rotations = s.backups();
    const times = [
      ...new Set(
        readdirSync(s.dir)
          .map((f) => /^audit-(\d{4}-\d\d-\d\d)T(\d\d)-(\d\d)-(\d\d\.\d{3})\.log/.exec(f))
          .filter((m) => m !== null)
          .map((m) => Date.parse(`${m[1]}T${m[2]}:${m[3]}:${m[4]}Z`)),
      ),
    ].sort((a, b) => a - b);
    const fastest10 = Math.min(...times.slice(9).map((t, i) => t - times[i]!));
    expect(fastest10).toBeLessThanOrEqual(1000);
    await s.settle(N);
    await s.stop();
    expect(exactlyOnce(await storedNumbers(s.dbPath), 0, N)).toEqual({});
    expect(metric(s.metrics, 'kaudit_events_duplicate_total')).toBe(0);
    expect(metric(s.metrics, 'kaudit_tail_files_lost_total')).toBe(0);
    expect(metric(s.metrics, 'kaudit_tail_files_read_total')).toBe(rotations);
    s.store.close();
  });

  it('started after many rotations: the rotated files already there are read first, in order', async () => {
    const s = setup();
    const w = startWriter(BIN!, writeOpts(s.log));
    await waitFor(() => s.backups() >= 8, '8 rotations');
    s.start();
    await w.done;
    await s.settle(N);
    await s.stop();
    expect(exactlyOnce(await storedNumbers(s.dbPath), 0, N)).toEqual({});
    expect(metric(s.metrics, 'kaudit_events_duplicate_total')).toBe(0);
    expect(metric(s.metrics, 'kaudit_tail_files_lost_total')).toBe(0);
    s.store.close();
  });

  it('stopped and started again while many rotations happen: nothing lost, nothing read twice', async () => {
    const s = setup();
    s.start();
    const w = startWriter(BIN!, { ...writeOpts(s.log), rate: 8_000 });
    for (const after of [4, 12, 20, 28]) {
      await waitFor(() => s.backups() >= after, `${after} rotations`, 60_000);
      await s.stop();
      // Down while the writer rotates several times (and compresses the backups).
      await waitFor(() => s.backups() >= after + 4, `${after + 4} rotations`, 60_000);
      s.start();
    }
    await w.done;
    await s.settle(N);
    await s.stop();
    expect(exactlyOnce(await storedNumbers(s.dbPath), 0, N)).toEqual({});
    expect(metric(s.metrics, 'kaudit_events_duplicate_total')).toBe(0);
    expect(metric(s.metrics, 'kaudit_tail_files_lost_total')).toBe(0);
    s.store.close();
  });

  it('counts and logs rotated files that maxbackup deleted before they were read, and reads every file still there', async () => {
    const s = setup();
    const logs: string[] = [];
    setLogSink((l) => logs.push(l));
    try {
      s.start();
      await startWriter(BIN!, { ...writeOpts(s.log, 0, 3000), rate: 0 }).done;
      await s.settle(3000);
      await s.stop();
      const before = new Set((await storedNumbers(s.dbPath)).keys());
      // While kaudit is down: ~25 rotations, of which lumberjack keeps the newest 3 backups.
      await startWriter(BIN!, { ...writeOpts(s.log, 3000, 14_000), rate: 0, maxBackups: 3 }).done;
      await new Promise((r) => setTimeout(r, 500)); // the writer's background compression and deletion
      const present = numbersInLogFiles(s.dir);
      expect(present.has(3000)).toBe(false);
      s.start();
      const expected = new Set([...before, ...present]);
      await s.settle(expected.size);
      await s.stop();
      const stored = await storedNumbers(s.dbPath);
      expect([...present].filter((k) => !stored.has(k))).toEqual([]);
      expect(stored.size).toBe(expected.size);
      expect([...stored.values()].every((c) => c === 1)).toBe(true);
      expect(metric(s.metrics, 'kaudit_tail_files_lost_total')).toBeGreaterThanOrEqual(1);
      expect(logs.some((l) => / warn tail .*(is gone|none of the files read last)/.test(l))).toBe(true);
    } finally {
      setLogSink((l) => process.stderr.write(l + '\n'));
      s.store.close();
    }
  });
});
