import { appendFileSync, copyFileSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { setLogSink } from '../../src/log.js';
import { FileTail } from '../../src/sources/file-tail.js';
import { counts, deadLetters } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev, lines, tempDir, waitFor } from '../helpers/events.js';

function batchOf(n: number) {
  return Array.from({ length: n }, () => ev());
}

function setup() {
  const dir = tempDir();
  const log = join(dir, 'audit.log');
  const store = new SqliteStore(join(dir, 'k.db'));
  const pipeline = new Pipeline({ writer: store });
  const tails: FileTail[] = [];
  const start = () => {
    const t = new FileTail({ path: log, cluster: 'c', sink: pipeline, store, pollMs: 20, maxLine: 64 * 1024 });
    t.start();
    tails.push(t);
    return t;
  };
  const stored = () => counts(store).events;
  const settle = async (n: number) => {
    await waitFor(() => stored() >= n, `${n} events stored (have ${stored()})`);
    // Nothing more may arrive: wait a few polls and check the count again.
    await new Promise((r) => setTimeout(r, 150));
    expect(stored()).toBe(n);
  };
  const stopAll = async () => {
    for (const t of tails) await t.stop();
    await pipeline.idle();
  };
  return { dir, log, store, pipeline, start, stored, settle, stopAll };
}

/** Like lumberjack: rename to audit-<UTC time>.log, open a new file; optionally gzip the backup and remove it. */
function lumberjackRotate(log: string, dir: string, stamp: string, gzip: boolean): string {
  const backup = join(dir, `audit-${stamp}.log`);
  renameSync(log, backup);
  writeFileSync(log, '');
  if (gzip) {
    writeFileSync(backup + '.gz', gzipSync(readFileSync(backup)));
    unlinkSync(backup);
    return backup + '.gz';
  }
  return backup;
}

describe('file tail', () => {
  it('reads appended lines, and waits for a partial last line to be finished', async () => {
    const s = setup();
    writeFileSync(s.log, lines(batchOf(3)));
    s.start();
    await s.settle(3);
    const half = JSON.stringify(ev());
    appendFileSync(s.log, lines(batchOf(2)) + half.slice(0, 50));
    await s.settle(5);
    appendFileSync(s.log, half.slice(50) + '\n');
    await s.settle(6);
    await s.stopAll();
  });

  it('follows lumberjack rotation mid-stream, with the backup gzipped and removed at once', async () => {
    const s = setup();
    writeFileSync(s.log, lines(batchOf(100)));
    s.start();
    await waitFor(() => s.stored() > 0, 'the tail to open the log');
    // Rotate right away: the tail has not read the new lines of the old file yet; it must still read all of them.
    appendFileSync(s.log, lines(batchOf(50)));
    lumberjackRotate(s.log, s.dir, '2026-11-01T10-00-00.000', true);
    appendFileSync(s.log, lines(batchOf(30)));
    await s.settle(180);
    lumberjackRotate(s.log, s.dir, '2026-11-01T11-00-00.000', false);
    appendFileSync(s.log, lines(batchOf(7)));
    await s.settle(187);
    await s.stopAll();
  });

  it('handles copytruncate: lines written before the copy come from the copy, then the file again from 0', async () => {
    const s = setup();
    writeFileSync(s.log, lines(batchOf(20)));
    const t = s.start();
    await s.settle(20);
    await t.stop();
    // While the tail is stopped: more lines, then logrotate's copytruncate, then new lines grow the file past the old offset.
    appendFileSync(s.log, lines(batchOf(10)));
    copyFileSync(s.log, s.log + '.1');
    truncateSync(s.log, 0);
    appendFileSync(s.log, lines(batchOf(40)));
    s.start();
    await s.settle(70);
    // And a copytruncate while running.
    appendFileSync(s.log, lines(batchOf(5)));
    await s.settle(75);
    copyFileSync(s.log, s.log + '.1');
    truncateSync(s.log, 0);
    appendFileSync(s.log, lines(batchOf(3)));
    await s.settle(78);
    await s.stopAll();
  });

  it('survives restarts: nothing lost or doubled across a stop, two rotations and a gzip', async () => {
    const s = setup();
    writeFileSync(s.log, lines(batchOf(40)));
    const t1 = s.start();
    await s.settle(40);
    await t1.stop();
    appendFileSync(s.log, lines(batchOf(11)));
    lumberjackRotate(s.log, s.dir, '2026-11-01T10-00-00.000', true);
    appendFileSync(s.log, lines(batchOf(13)));
    lumberjackRotate(s.log, s.dir, '2026-11-01T10-05-00.000', false);
    appendFileSync(s.log, lines(batchOf(17)));
    const t2 = s.start();
    await s.settle(81);
    await t2.stop();
    // Restart with nothing new: nothing is read twice.
    s.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(s.stored()).toBe(81);
    appendFileSync(s.log, lines(batchOf(2)));
    await s.settle(83);
    await s.stopAll();
  });

  it('reads a log that starts with a byte order mark, the first event included, and resumes past it', async () => {
    const s = setup();
    writeFileSync(s.log, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines(batchOf(3)))]));
    s.start();
    await s.settle(3);
    expect(deadLetters(s.store)).toEqual([]);
    await s.stopAll();
    appendFileSync(s.log, lines(batchOf(2)));
    s.start();
    await s.settle(5);
    expect(deadLetters(s.store)).toEqual([]);
    await s.stopAll();
  });

  it('dead-letters an over-long line and bad input, and keeps tailing', async () => {
    const s = setup();
    writeFileSync(s.log, lines(batchOf(2)) + JSON.stringify(ev({ userAgent: 'x'.repeat(100_000) })) + '\n' + '{"kind": 0}\n' + lines(batchOf(2)));
    s.start();
    await s.settle(4);
    const dl = deadLetters(s.store);
    expect(dl.map((d) => d.reason)).toEqual([expect.stringContaining('kind is 0'), expect.stringContaining('over the 65536-byte limit')]);
    expect(dl[1]!.position).toBe(`${s.log}:3`);
    await s.stopAll();
  });

  it('waits for a log that does not exist yet', async () => {
    const s = setup();
    s.start();
    await new Promise((r) => setTimeout(r, 100));
    writeFileSync(s.log, lines(batchOf(4)));
    await s.settle(4);
    rmSync(s.log);
    await s.stopAll();
  });
  it('says once that its path became unreadable (a directory), not at every poll, and reads again when a file is back', async () => {
    const s = setup();
    const logs: string[] = [];
    setLogSink((l) => logs.push(l));
    try {
      writeFileSync(s.log, lines(batchOf(2)));
      s.start();
      await s.settle(2);
      renameSync(s.log, join(s.dir, 'audit-1.log'));
      mkdirSync(s.log);
      // Fifty polls of 20 ms.
      await new Promise((r) => setTimeout(r, 1000));
      const failing = logs.filter((l) => /EISDIR/.test(l));
      expect(failing).toHaveLength(1);
      rmdirSync(s.log);
      writeFileSync(s.log, lines(batchOf(3)));
      await s.settle(5);
      expect(logs.some((l) => / info tail .*: reading again \(after: EISDIR/.test(l))).toBe(true);
    } finally {
      setLogSink((l) => process.stderr.write(l + '\n'));
      await s.stopAll();
    }
  });
});
