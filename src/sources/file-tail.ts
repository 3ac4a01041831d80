import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { LineRecord, type RawRecord } from '../events/read.js';
import { log } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { BatchSink } from '../pipeline/pipeline.js';
import type { Store } from '../store/store.js';
import { LineSplitter, type Line, type LongLine } from './lines.js';

/**
 * Where a tail stands: which file (device, inode and a hash of its first bytes, because inodes are reused) and the
 * byte offset just past the last line committed. Saved with the batch it ends (in the transaction of its alerts, after
 * its events'), so a stop before it re-reads lines that are then recognised as already stored.
 */
export interface TailPosition {
  dev: number;
  ino: number;
  head: string;
  headLen: number;
  offset: number;
  line: number;
}

export interface FileTailOptions {
  path: string;
  cluster: string;
  sink: BatchSink;
  store: Store;
  maxLine?: number;
  /** Lines per batch at most (default 1000). */
  batchLines?: number;
  pollMs?: number;
  metrics?: Metrics;
}

const HEAD_BYTES = 256;
const READ_CHUNK = 1 << 20;

async function headOf(fh: FileHandle, size: number): Promise<{ head: string; headLen: number }> {
  const len = Math.min(size, HEAD_BYTES);
  const b = Buffer.alloc(len);
  if (len > 0) await fh.read(b, 0, len, 0);
  return { head: createHash('sha256').update(b).digest('hex').slice(0, 32), headLen: len };
}

async function gzHead(path: string, len: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let got = 0;
  try {
    for await (const c of createReadStream(path).pipe(createGunzip())) {
      chunks.push(c as Buffer);
      got += (c as Buffer).length;
      if (got >= len) break;
    }
  } catch {
    return undefined;
  }
  const b = Buffer.concat(chunks).subarray(0, len);
  if (b.length < len) return undefined;
  return createHash('sha256').update(b).digest('hex').slice(0, 32);
}

/**
 * Follows an audit log as kube-apiserver writes it, across rotation (lumberjack renames the file to
 * `audit-<time>.log`, may gzip it, and opens a new one), copytruncate, and kaudit restarts, losing and repeating
 * nothing: each batch's end position commits with its events, and on start-up the tail finds the file it was in
 * (by inode, or by content when it has been gzipped) and reads every rotated file it has not finished.
 */
export class FileTail {
  readonly source: string;
  private fh: FileHandle | undefined;
  private pos: TailPosition | undefined;
  private readPos = 0;
  private splitter: LineSplitter;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private lastSize = 0;
  private readonly maxLine: number;
  private readonly batchLines: number;

  constructor(private readonly o: FileTailOptions) {
    this.source = `file:${o.path}`;
    this.maxLine = o.maxLine ?? 1 << 20;
    this.batchLines = o.batchLines ?? 1000;
    // Each read fills a fresh buffer (see readAvailable), so lines may keep views of it.
    this.splitter = new LineSplitter(this.maxLine, 0, 0, true);
    o.metrics?.collect('kaudit_tail_lag_bytes', 'Bytes written to a tailed audit log and not yet committed', () => [
      { labels: { path: o.path }, value: Math.max(0, this.lastSize - (this.pos?.offset ?? 0)) },
    ]);
  }

  start(): void {
    this.loop = this.run().catch((e) => log.error(`tail of ${this.o.path} stopped: ${(e as Error).message}`));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }

  /** The committed position (for tests and status). */
  position(): TailPosition | undefined {
    return this.pos;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  private async run(): Promise<void> {
    await this.resume();
    const poll = this.o.pollMs ?? 250;
    // A lasting failure (the path became a directory, permissions) is said when it starts, once a minute while it
    // lasts, and when it ends: not at every poll.
    let failing = '';
    let saidAt = 0;
    while (!this.stopped) {
      let progressed = false;
      try {
        progressed = await this.step();
        if (failing) {
          log.info(`tail ${this.o.path}: reading again (after: ${failing})`);
          failing = '';
        }
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const msg = (e as Error).message;
        if (code !== 'ENOENT' && (msg !== failing || Date.now() - saidAt >= 60_000)) {
          log.warn(`tail ${this.o.path}: ${msg}${msg === failing ? ' (still)' : ''}`, `tail:${this.o.path}`);
          saidAt = Date.now();
        }
        if (code !== 'ENOENT') failing = msg;
      }
      if (!progressed && !this.stopped) await this.sleep(poll);
    }
  }

  /** On start: continue where the last run committed, including rotated files written while kaudit was down. */
  private async resume(): Promise<void> {
    const saved = this.o.store.position(this.source);
    if (!saved) return;
    let p: TailPosition;
    try {
      p = JSON.parse(saved) as TailPosition;
    } catch {
      log.warn(`tail ${this.o.path}: unreadable saved position, starting at the beginning`);
      return;
    }
    const current = await stat(this.o.path).catch(() => undefined);
    if (current && current.ino === p.ino && current.dev === p.dev && current.size >= p.offset) {
      const fh = await open(this.o.path, 'r');
      const h = await headOf(fh, p.headLen);
      if (h.head === p.head) {
        this.adopt(fh, p);
        return;
      }
      await fh.close();
    }
    // Not the current file any more: find it among the rotated ones, finish it, then read every newer one whole.
    const backups = await this.rotatedFiles();
    let found = -1;
    for (let i = backups.length - 1; i >= 0; i--) {
      if (await this.sameFile(backups[i]!, p).catch(() => false)) {
        found = i;
        break;
      }
    }
    if (found >= 0) {
      for (const [i, b] of backups.slice(found).entries()) await this.readBackup(b.path, i === 0 ? p.offset : 0, i === 0 ? p.line : 0);
    } else {
      // The file is gone (deleted by maxbackup): read what may be newer than it. Re-reading is harmless, since
      // events already stored are recognised by (cluster, auditID, stage); skipping would not be.
      const since = this.o.store.positionUpdated(this.source) ?? 0;
      const newer = backups.filter((b) => b.mtimeMs >= since - 1000);
      log.warn(`tail ${this.o.path}: the file of the saved position is gone; reading ${newer.length} rotated file(s) modified since then and the current file`);
      for (const b of newer) await this.readBackup(b.path, 0, 0);
    }
    this.pos = undefined;
  }

  /** Is this (possibly rotated, possibly gzipped or copied) file the one a position was taken in? By content. */
  private async sameFile(b: { path: string; gz: boolean }, p: TailPosition): Promise<boolean> {
    if (b.gz) return (await gzHead(b.path, p.headLen)) === p.head;
    const fh = await open(b.path, 'r');
    try {
      const st = await fh.stat();
      return st.size >= p.offset && (await headOf(fh, p.headLen)).head === p.head;
    } finally {
      await fh.close();
    }
  }

  /** Rotated copies of the log beside it, oldest first: lumberjack's `audit-<time>.log[.gz]`, logrotate's `audit.log.1[.gz]`. */
  private async rotatedFiles(): Promise<{ path: string; ino: number; dev: number; gz: boolean; mtimeMs: number }[]> {
    const dir = dirname(this.o.path);
    const name = basename(this.o.path);
    const ext = extname(name);
    const stem = name.slice(0, name.length - ext.length);
    const out = [];
    for (const f of await readdir(dir)) {
      if (f === name) continue;
      const isLumberjack = f.startsWith(stem + '-') && (f.endsWith(ext) || f.endsWith(ext + '.gz'));
      const isLogrotate = f.startsWith(name + '.') || f.startsWith(name + '-');
      if (!isLumberjack && !isLogrotate) continue;
      const st = await stat(join(dir, f)).catch(() => undefined);
      if (!st?.isFile()) continue;
      out.push({ path: join(dir, f), ino: st.ino, dev: st.dev, gz: f.endsWith('.gz'), mtimeMs: st.mtimeMs });
    }
    return out.sort((a, b) => a.mtimeMs - b.mtimeMs || a.path.localeCompare(b.path));
  }

  /** Reads a rotated (finished) file from an offset to its end. No checkpoint: the current file's first batch sets one. */
  private async readBackup(path: string, offset: number, line: number): Promise<void> {
    const splitter = new LineSplitter(this.maxLine, 0, line, true);
    let skip = offset;
    let batch: RawRecord[] = [];
    const flushBatch = async () => {
      if (batch.length === 0) return;
      const records = batch;
      batch = [];
      await this.submitWithRetry(records, undefined);
    };
    const stream = path.endsWith('.gz') ? createReadStream(path).pipe(createGunzip()) : createReadStream(path, { start: offset });
    if (!path.endsWith('.gz')) skip = 0;
    splitter.reset(0, line);
    for await (const c of stream) {
      let chunk = c as Buffer;
      if (skip > 0) {
        if (chunk.length <= skip) {
          skip -= chunk.length;
          continue;
        }
        chunk = chunk.subarray(skip);
        skip = 0;
      }
      splitter.push(chunk, (l) => batch.push(this.record(l, path)));
      if (batch.length >= this.batchLines) await flushBatch();
    }
    splitter.flush((l) => batch.push(this.record(l, path)));
    await flushBatch();
    log.info(`tail ${this.o.path}: read rotated file ${path} from offset ${offset}`);
  }

  private record(l: Line | LongLine, path: string): RawRecord {
    if ('tooLong' in l) return { error: `line is ${l.bytes} bytes, over the ${this.maxLine}-byte limit`, where: `${path}:${l.lineNo}` };
    return new LineRecord(l, path);
  }

  private adopt(fh: FileHandle, p: TailPosition): void {
    this.fh = fh;
    this.pos = { ...p };
    this.readPos = p.offset;
    this.splitter.reset(p.offset, p.line);
  }

  /** Opens the current file (when not open), reads what is new, handles rotation and truncation. */
  private async step(): Promise<boolean> {
    if (!this.fh) {
      const fh = await open(this.o.path, 'r');
      const st = await fh.stat();
      const h = await headOf(fh, st.size);
      this.adopt(fh, { dev: st.dev, ino: st.ino, head: h.head, headLen: h.headLen, offset: 0, line: 0 });
    }
    const fh = this.fh!;
    const pos = this.pos!;
    const st = await fh.stat();
    this.lastSize = st.size;
    if (st.size < this.readPos) {
      await this.truncated();
      return true;
    }
    if (pos.headLen > 0 && st.size > this.readPos && (await headOf(fh, pos.headLen)).head !== pos.head) {
      // Truncated and written again past our offset between two polls: the first bytes are not ours any more.
      await this.truncated();
      return true;
    }
    if (pos.headLen < HEAD_BYTES && st.size > pos.headLen && pos.offset === 0) {
      // The head grew before anything was committed: fingerprint more of it.
      Object.assign(pos, await headOf(fh, st.size));
    }
    if (st.size > this.readPos) {
      await this.readAvailable(fh, st.size);
      return true;
    }
    // At the end of our file: has it been rotated away (the path now names another file)?
    const now = await stat(this.o.path).catch(() => undefined);
    if (now && (now.ino !== pos.ino || now.dev !== pos.dev)) {
      const again = await fh.stat();
      if (again.size > this.readPos) return true; // written after our last read: finish it first
      await this.finishRotated();
      return true;
    }
    return false;
  }

  private async readAvailable(fh: FileHandle, size: number): Promise<void> {
    let batch: RawRecord[] = [];
    while (this.readPos < size && !this.stopped) {
      // A buffer per read, never reused: the batch's lines keep views of it until it is stored.
      const buf = Buffer.allocUnsafeSlow(Math.min(READ_CHUNK, size - this.readPos));
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.readPos);
      if (bytesRead === 0) break;
      this.readPos += bytesRead;
      this.splitter.push(buf.subarray(0, bytesRead), (l) => batch.push(this.record(l, this.o.path)));
      if (batch.length >= this.batchLines || this.readPos >= size) {
        await this.commitBatch(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.commitBatch(batch);
  }

  private async commitBatch(records: RawRecord[]): Promise<void> {
    if (records.length === 0) return;
    const next: TailPosition = { ...this.pos!, offset: this.splitter.offset, line: this.splitter.lineNo };
    await this.submitWithRetry(records, next);
    this.pos = next;
  }

  private async submitWithRetry(records: RawRecord[], next: TailPosition | undefined): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.o.sink.submit({ source: this.source, cluster: this.o.cluster, records, checkpoint: next ? { source: this.source, position: JSON.stringify(next) } : undefined });
        return;
      } catch (e) {
        // Overloaded or a store error: wait and retry the same batch; the file keeps everything meanwhile.
        if (this.stopped) throw e;
        await this.sleep(Math.min(5000, 100 * 2 ** Math.min(attempt, 6)));
      }
    }
  }

  /** Our file was renamed away and a new one opened: read the old one to its end through our open handle, then switch. */
  private async finishRotated(): Promise<void> {
    const fh = this.fh!;
    const st = await fh.stat();
    if (st.size > this.readPos) await this.readAvailable(fh, st.size);
    const rest: RawRecord[] = [];
    this.splitter.flush((l) => rest.push(this.record(l, this.o.path)));
    await this.commitBatch(rest);
    await fh.close();
    this.fh = undefined;
    this.splitter.reset(0);
    // The new file's first batch commits its position; a crash before that finds the old file finished.
    log.info(`tail ${this.o.path}: rotated; following the new file`);
  }

  /** copytruncate: lines written after our last read went to the copy; read them from there, then restart at 0. */
  private async truncated(): Promise<void> {
    const pos = this.pos!;
    const backups = await this.rotatedFiles();
    for (let i = backups.length - 1; i >= 0; i--) {
      const b = backups[i]!;
      if (await this.sameFile(b, pos).catch(() => false)) {
        await this.readBackup(b.path, this.splitter.offset, this.splitter.lineNo);
        break;
      }
    }
    log.info(`tail ${this.o.path}: truncated (copytruncate); reading again from the start`);
    const st = await this.fh!.stat();
    const h = await headOf(this.fh!, st.size);
    const next: TailPosition = { dev: st.dev, ino: st.ino, head: h.head, headLen: h.headLen, offset: 0, line: 0 };
    this.pos = next;
    this.readPos = 0;
    this.splitter.reset(0);
    await this.submitWithRetry([], next);
  }
}
