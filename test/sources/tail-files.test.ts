// The tail's parts on their own: which files make up a log and in what order, what identifies a file across gzip,
// the saved state's format; and, through a real tail, a .gz that is still being written and one that is damaged.
import { appendFileSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { FileTail } from '../../src/sources/file-tail.js';
import { encodeState, parseState } from '../../src/sources/tail/checkpoint.js';
import { fingerprintOf, matches, prefixOfGzip, prefixOfHandle } from '../../src/sources/tail/fingerprint.js';
import { logFilesInWriteOrder, rotationRank } from '../../src/sources/tail/rotated-files.js';
import { counts } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev, lines, tempDir, waitFor } from '../helpers/events.js';

describe('the files of a log, in write order', () => {
  it('orders lumberjack backups by the time in their names, not by mtime (gzip writes the .gz later)', async () => {
    const dir = tempDir();
    const names = ['audit-2026-11-01T10-00-00.000.log.gz', 'audit-2026-11-01T09-59-59.999.log', 'audit-2026-11-01T10-00-00.010.log.gz', 'audit.log'];
    names.forEach((n, i) => {
      writeFileSync(join(dir, n), 'x');
      // Newest mtime on the oldest name.
      utimesSync(join(dir, n), new Date(Date.UTC(2026, 10, 2) - i * 60_000), new Date(Date.UTC(2026, 10, 2) - i * 60_000));
    });
    writeFileSync(join(dir, 'other.log'), 'x');
    writeFileSync(join(dir, 'audit-policy.yaml'), 'x');
    const files = await logFilesInWriteOrder(join(dir, 'audit.log'));
    expect(files.map((f) => f.name)).toEqual([
      'audit-2026-11-01T09-59-59.999.log',
      'audit-2026-11-01T10-00-00.000.log.gz',
      'audit-2026-11-01T10-00-00.010.log.gz',
      'audit.log',
    ]);
    expect(files.map((f) => f.live)).toEqual([false, false, false, true]);
  });

  it('lists a backup being compressed (both x.log and a half-written x.log.gz) as its plain file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'audit-2026-11-01T10-00-00.000.log'), lines([ev(), ev()]));
    writeFileSync(join(dir, 'audit-2026-11-01T10-00-00.000.log.gz'), gzipSync(lines([ev(), ev()])).subarray(0, 20));
    const files = await logFilesInWriteOrder(join(dir, 'audit.log'));
    expect(files.map((f) => f.name)).toEqual(['audit-2026-11-01T10-00-00.000.log']);
  });

  it("orders logrotate's numbered copies (higher is older) and dateext copies", () => {
    expect(rotationRank('audit.log.2.gz', 'audit.log')).toEqual({ scheme: 'numbered', key: -2 });
    expect(rotationRank('audit.log.10', 'audit.log')).toEqual({ scheme: 'numbered', key: -10 });
    expect(rotationRank('audit.log-20261101.gz', 'audit.log')).toEqual({ scheme: 'dated', key: 'audit.log-20261101' });
    expect(rotationRank('audit.log', 'audit.log')).toBeUndefined();
    expect(rotationRank('audit.log.gz', 'audit.log')).toBeUndefined();
    expect(rotationRank('audit.log-2026-11-01', 'audit.log')).toEqual({ scheme: 'dated', key: 'audit.log-2026-11-01' });
    expect(rotationRank('kube-audit.log.1', 'audit.log')).toBeUndefined();
    expect(rotationRank('audit.log.lock', 'audit.log')).toBeUndefined();
    expect(rotationRank('audit.log-old', 'audit.log')).toBeUndefined();
    expect(rotationRank('audit-2026-11-01T10-00-00.000.log', 'audit.log')).toEqual({ scheme: 'lumberjack', key: Date.UTC(2026, 10, 1, 10) });
  });
});

describe('fingerprints', () => {
  it('a gzipped backup has the fingerprint of the plain file it came from; another file does not', async () => {
    const dir = tempDir();
    const text = lines([ev(), ev(), ev()]);
    writeFileSync(join(dir, 'a.log'), text);
    writeFileSync(join(dir, 'a.log.gz'), gzipSync(text));
    writeFileSync(join(dir, 'b.log'), lines([ev(), ev(), ev()]));
    const prefix = async (p: string, gz = false) => {
      const fh = await open(join(dir, p));
      try {
        return gz ? await prefixOfGzip(fh) : await prefixOfHandle(fh);
      } finally {
        await fh.close();
      }
    };
    const fp = fingerprintOf(await prefix('a.log'));
    expect(fp.headLen).toBe(256);
    expect(matches(await prefix('a.log.gz', true), fp)).toBe(true);
    expect(matches(await prefix('b.log'), fp)).toBe(false);
    // A short fingerprint (a live file caught early) matches the file it grew into.
    const short = fingerprintOf(Buffer.from(text.slice(0, 100)));
    expect(matches(await prefix('a.log.gz', true), short)).toBe(true);
    expect(matches(Buffer.alloc(0), { head: fingerprintOf(Buffer.alloc(0)).head, headLen: 0 })).toBe(false);
  });
});

describe('the saved state', () => {
  it('reads its own format, a v1 position (one file and offset), and refuses anything else', () => {
    const s = {
      v: 2 as const,
      cur: { head: 'ab', headLen: 256, dev: 1, ino: 2, offset: 300, line: 3, name: 'audit.log' },
      done: [{ head: 'cd', headLen: 256 }],
    };
    expect(parseState(encodeState(s))).toEqual(s);
    expect(parseState(JSON.stringify({ dev: 1, ino: 2, head: 'ab', headLen: 256, offset: 300, line: 3 }))).toEqual({
      v: 2,
      cur: { head: 'ab', headLen: 256, dev: 1, ino: 2, offset: 300, line: 3 },
      done: [],
    });
    for (const bad of [
      '',
      'null',
      '[]',
      '{"v":3}',
      '{"v":2}',
      '{"v":2,"done":[{"head":1}]}',
      '{"v":2,"done":[],"cur":{"head":"x","headLen":10,"offset":-1,"line":0}}',
    ]) {
      expect(parseState(bad)).toBeUndefined();
    }
  });
});

describe('gzipped backups that are not complete', () => {
  function setup(damagedAfterMs?: number) {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    const store = new SqliteStore(join(dir, 'k.db'));
    const metrics = new Metrics();
    const pipeline = new Pipeline({ writer: store, metrics });
    const tail = new FileTail({ path: log, cluster: 'c', sink: pipeline, store, pollMs: 20, metrics, damagedAfterMs });
    const lost = () => Number(/kaudit_tail_files_lost_total\{[^}]*\} (\d+)/.exec(metrics.render())?.[1] ?? 0);
    return { dir, log, store, tail, pipeline, lost, stored: () => counts(store).events };
  }

  it('a .gz still being written (no plain file beside it) is read once complete, not half and then forgotten', async () => {
    const s = setup();
    const backup = join(s.dir, 'audit.log.1.gz');
    const whole = gzipSync(lines(Array.from({ length: 200 }, () => ev())));
    writeFileSync(backup, whole.subarray(0, Math.floor(whole.length / 2)));
    writeFileSync(s.log, lines([ev(), ev()]));
    s.tail.start();
    await new Promise((r) => setTimeout(r, 400));
    // Not moved on to the live file while its predecessor is incomplete.
    expect(s.stored()).toBeLessThan(200);
    appendFileSync(backup, whole.subarray(Math.floor(whole.length / 2)));
    await waitFor(() => s.stored() >= 202, `202 events (have ${s.stored()})`);
    await new Promise((r) => setTimeout(r, 200));
    expect(s.stored()).toBe(202);
    expect(s.lost()).toBe(0);
    await s.tail.stop();
    await s.pipeline.idle();
    s.store.close();
  });

  it('a damaged .gz is read as far as it goes once it stops changing, counted lost, and the log goes on', async () => {
    const s = setup(300);
    const backup = join(s.dir, 'audit.log.1.gz');
    const whole = gzipSync(lines(Array.from({ length: 2000 }, () => ev())));
    writeFileSync(backup, whole.subarray(0, Math.floor(whole.length * 0.6)));
    writeFileSync(s.log, lines([ev(), ev(), ev()]));
    s.tail.start();
    await waitFor(() => s.lost() === 1, 'the damaged file counted');
    await waitFor(() => s.stored() > 1000, `the damaged file's readable lines (have ${s.stored()})`);
    const fromBackup = s.stored() - 3;
    expect(fromBackup).toBeGreaterThan(1000);
    expect(fromBackup).toBeLessThan(2000);
    await waitFor(() => readFileSync(s.log).length > 0 && s.stored() === fromBackup + 3, 'the live file');
    await s.tail.stop();
    await s.pipeline.idle();
    s.store.close();
  });
});
