import { stat, open, type FileHandle } from 'node:fs/promises';
import type { RawRecord } from '../events/record.js';
import { log } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { BatchSink } from '../pipeline/pipeline.js';
import type { StoreReader } from '../store/store.js';
import { LineRecord, LineSplitter, type Line, type LongLine } from './lines.js';
import { emptyState, encodeState, finished, parseState, type TailState } from './tail/checkpoint.js';
import { FINGERPRINT_BYTES, fingerprintOf, matches, prefixOfGzip, prefixOfHandle, type Fingerprint } from './tail/fingerprint.js';
import { gunzipHandle } from './tail/gzip.js';
import { logFilesInWriteOrder, type LogFile } from './tail/rotated-files.js';

export type { TailState } from './tail/checkpoint.js';

export interface FileTailOptions {
  path: string;
  cluster: string;
  sink: BatchSink;
  /** Where the tail's committed position is read at start. */
  store: Pick<StoreReader, 'position' | 'positionUpdated'>;
  maxLine?: number;
  /** Lines per batch at most (default 1000). */
  batchLines?: number;
  pollMs?: number;
  metrics?: Metrics;
  /**
   * A gzipped backup that ends early (damaged, or written by a compressor that does not keep the plain file until
   * the .gz is complete) is retried until it has not changed for this long, then read as far as it goes (default 60 s).
   */
  damagedAfterMs?: number;
}

const READ_CHUNK = 1 << 20;

/** The file being read. */
interface OpenFile extends LogFile {
  fh: FileHandle;
}

/**
 * Follows an audit log as kube-apiserver writes it, across rotation (lumberjack renames the file to
 * `audit-<time>.log`, opens a new one and gzips backups in the background; logrotate renames or copies and truncates),
 * and kaudit restarts, losing and repeating nothing.
 *
 * The log is a sequence of files in write order (see logFilesInWriteOrder). The tail reads them one after the other,
 * each to its end, the live file last, and commits with every batch where it stands (TailState: the file being read by
 * fingerprint and offset, and the fingerprints of the files read to their end). Whenever it needs the next file (at
 * start, when the log first appears, when its file has been rotated away, after a copytruncate) it lists the files,
 * finds the newest one it has read or is reading, and goes on from there: however many rotations happened meanwhile,
 * the files in between are read, in order, before the live one.
 */
export class FileTail {
  readonly source: string;
  private state: TailState = emptyState();
  private file: OpenFile | undefined;
  private readPos = 0;
  private splitter: LineSplitter;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private lastSize = 0;
  /** Bytes of the current file seen (by stat) and not read when it was truncated: known unread lines. */
  private unreadAtTruncation = 0;
  /** First bytes of rotated files by device, inode, size and mtime (a full prefix of a file that only grows never changes). */
  private prefixes = new Map<string, Buffer>();
  /** lumberjack backups listed as not yet read: one that disappears before it is read was deleted unread. */
  private unread = new Set<string>();
  private gzipFailure: { key: string; since: number } | undefined;
  private readonly maxLine: number;
  private readonly batchLines: number;
  private readonly lost?: { inc(labels: Record<string, string>): void };
  private readonly rotatedRead?: { inc(labels: Record<string, string>): void };

  constructor(private readonly o: FileTailOptions) {
    this.source = `file:${o.path}`;
    this.maxLine = o.maxLine ?? 1 << 20;
    this.batchLines = o.batchLines ?? 1000;
    // Each read fills a fresh buffer (see readAvailable), so lines may keep views of it.
    this.splitter = new LineSplitter(this.maxLine, 0, 0, true);
    o.metrics?.collect('kaudit_tail_lag_bytes', 'Bytes written to a tailed audit log file and not yet committed', () => [
      { labels: { path: o.path }, value: Math.max(0, this.lastSize - (this.state.cur?.offset ?? 0)) },
    ]);
    this.lost = o.metrics?.counter('kaudit_tail_files_lost_total', 'Rotated files of a tailed audit log deleted or damaged before they were read to their end');
    this.rotatedRead = o.metrics?.counter('kaudit_tail_files_read_total', 'Files of a tailed audit log read to their end');
  }

  start(): void {
    this.loop = this.run().catch((e) => log.error(`tail of ${this.o.path} stopped: ${(e as Error).message}`));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    await this.closeFile();
  }

  /** The committed state (for tests and status). */
  position(): TailState {
    return this.state;
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
    const poll = this.o.pollMs ?? 250;
    // The committed position comes from the store, which may be a networked one that is not answering yet: wait for it
    // rather than read the log from a guess.
    for (;;) {
      try {
        this.state = await this.savedState();
        break;
      } catch (e) {
        if (this.stopped) return;
        log.warn(`tail ${this.o.path}: the saved position cannot be read yet (${(e as Error).message}); retrying`, `tail:${this.o.path}`);
        await this.sleep(Math.max(poll, 1000));
      }
    }
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
        if (this.stopped) break;
        const code = (e as NodeJS.ErrnoException).code;
        const msg = (e as Error).message;
        if (code !== 'ENOENT' && (msg !== failing || Date.now() - saidAt >= 60_000)) {
          log.warn(`tail ${this.o.path}: ${msg}${msg === failing ? ' (still)' : ''}`, `tail:${this.o.path}`);
          saidAt = Date.now();
        }
        if (code !== 'ENOENT') failing = msg;
        // Whatever failed, the next step starts again from the committed state.
        await this.closeFile();
      }
      if (!progressed && !this.stopped) await this.sleep(poll);
    }
  }

  private async savedState(): Promise<TailState> {
    const saved = await this.o.store.position(this.source);
    if (saved === undefined) return emptyState();
    const s = parseState(saved);
    if (s) return s;
    log.warn(`tail ${this.o.path}: unreadable saved position, reading the log's files from the oldest`);
    return emptyState();
  }

  private step(): Promise<boolean> {
    if (!this.file) return this.openNext();
    return this.file.gz ? this.readGzip(this.file) : this.readPlain(this.file);
  }

  /** First bytes of a file of the log (decompressed for .gz), or undefined when it cannot be read (gone meanwhile). */
  private async prefixOf(f: LogFile): Promise<Buffer | undefined> {
    // Inodes are reused at once (lumberjack's gzip frees the plain file's): the size and mtime tell a reused one.
    const key = `${f.dev}:${f.ino}:${f.size}:${f.mtimeMs}`;
    const known = f.live ? undefined : this.prefixes.get(key);
    if (known) return known;
    let fh: FileHandle;
    try {
      fh = await open(f.path, 'r');
    } catch {
      return undefined;
    }
    try {
      const st = await fh.stat();
      if (st.ino !== f.ino || st.dev !== f.dev) return undefined; // replaced since listed
      const p = f.gz ? await prefixOfGzip(fh) : await prefixOfHandle(fh);
      // The live file can be truncated and rewritten in place (copytruncate): never cached.
      if (!f.live && p.length === FINGERPRINT_BYTES) {
        if (this.prefixes.size >= 4096) this.prefixes.clear();
        this.prefixes.set(key, p);
      }
      return p;
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  /**
   * Chooses and opens the file to read: the one in progress (resumed at its committed offset), else the one after the
   * newest file read to its end, else (nothing known: the first start, or every known file deleted) the oldest.
   */
  private async openNext(): Promise<boolean> {
    const files = await logFilesInWriteOrder(this.o.path);
    for (const base of this.unread) {
      if (files.some((f) => f.base === base)) continue;
      this.countLost('deleted', `rotated file ${base} was deleted (maxbackup, maxage) before kaudit read it: its events are lost`);
    }
    const cur = this.state.cur;
    let at = -1;
    let resume = false;
    for (let i = files.length - 1; i >= 0; i--) {
      const f = files[i]!;
      const prefix = await this.prefixOf(f);
      if (!prefix) continue;
      // (A copy may be shorter than the offset: copytruncate copies, lines are read from the live file, then it truncates.)
      if (cur && matches(prefix, cur) && (!f.live || f.size >= cur.offset)) {
        at = i;
        resume = true;
        break;
      }
      if (this.state.done.some((d) => matches(prefix, d))) {
        at = i;
        break;
      }
    }
    if (cur && !resume) {
      const name = cur.name ?? `the file of fingerprint ${cur.head}`;
      if (this.unreadAtTruncation > 0)
        this.countLost(
          'truncated',
          `${name} was truncated with ${this.unreadAtTruncation} bytes unread and no copy of it is beside the log: those lines are lost`,
        );
      else if (cur.offset > 0) this.countLost('deleted', `${name} (read up to byte ${cur.offset}) is gone: any lines written to it after that are lost`);
      this.state = finished(this.state, undefined);
    }
    this.unreadAtTruncation = 0;
    if (at < 0 && this.state.done.length > 0 && files.length > 0) {
      log.warn(
        `tail ${this.o.path}: none of the files read last is left (deleted by maxbackup or maxage?); reading all ${files.length} from the oldest`,
        `tail-lost:${this.o.path}`,
      );
    }
    const target = files[resume ? at : at + 1];
    this.unread = new Set(
      files
        .slice(at + 1)
        .filter((f) => f.scheme === 'lumberjack' && f !== target)
        .map((f) => f.base),
    );
    if (!target) return false;
    let fh: FileHandle;
    try {
      fh = await open(target.path, 'r');
    } catch {
      // Removed since listed (a backup compressed meanwhile): list again.
      return true;
    }
    const st = await fh.stat();
    if (st.ino !== target.ino || st.dev !== target.dev) {
      await fh.close();
      return true;
    }
    const prefix = target.gz ? await prefixOfGzip(fh) : await prefixOfHandle(fh);
    const fp: Fingerprint = resume ? { head: cur!.head, headLen: cur!.headLen } : fingerprintOf(prefix);
    const offset = resume ? cur!.offset : 0;
    const line = resume ? cur!.line : 0;
    this.state = { v: 2, done: this.state.done, cur: { ...fp, dev: st.dev, ino: st.ino, offset, line, name: target.name } };
    this.file = { ...target, fh };
    this.readPos = offset;
    this.lastSize = target.gz ? 0 : st.size;
    this.splitter.reset(offset, line);
    if (!target.live) log.info(`tail ${this.o.path}: reading rotated file ${target.name}${offset ? ` from byte ${offset}` : ''}`);
    else if (offset === 0 && at >= 0) log.info(`tail ${this.o.path}: following the new file`);
    return true;
  }

  private async readPlain(f: OpenFile): Promise<boolean> {
    const st = await f.fh.stat();
    const seen = this.lastSize;
    this.lastSize = st.size;
    if (f.live && (st.size < this.readPos || (st.size > this.readPos && !(await this.sameHead(f))))) {
      // Truncated (copytruncate), maybe written again past our offset: the lines after our offset are in the copy,
      // which openNext finds by its fingerprint and finishes before this file is read again from its start.
      log.info(`tail ${this.o.path}: truncated (copytruncate); finishing its copy, then reading it again from the start`);
      this.unreadAtTruncation = Math.max(0, seen - this.readPos);
      await this.closeFile();
      return true;
    }
    if (st.size > this.readPos) {
      await this.readAvailable(f, st.size);
      return true;
    }
    if (f.live) {
      const now = await stat(this.o.path).catch(() => undefined);
      if (now && now.ino === f.ino && now.dev === f.dev) return false;
      // Rotated away (or deleted): read what was written before the rename, then finish it.
      f.live = false;
      return true;
    }
    await this.finishFile(f);
    return true;
  }

  /** Whether the live file still starts with the bytes of the file being read. */
  private async sameHead(f: OpenFile): Promise<boolean> {
    const cur = this.state.cur!;
    if (cur.headLen === 0) return true;
    return matches(await prefixOfHandle(f.fh), cur);
  }

  private async readAvailable(f: OpenFile, size: number): Promise<void> {
    let batch: RawRecord[] = [];
    while (this.readPos < size && !this.stopped) {
      // A buffer per read, never reused: the batch's lines keep views of it until it is stored.
      const buf = Buffer.allocUnsafeSlow(Math.min(READ_CHUNK, size - this.readPos));
      const { bytesRead } = await f.fh.read(buf, 0, buf.length, this.readPos);
      if (bytesRead === 0) break;
      this.readPos += bytesRead;
      this.splitter.push(buf.subarray(0, bytesRead), (l) => batch.push(this.record(l, f.path)));
      if (batch.length >= this.batchLines || this.readPos >= size) {
        await this.commitBatch(f, batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.commitBatch(f, batch);
  }

  /** Reads a gzipped backup from the committed offset (of its decompressed bytes) to its end, then finishes it. */
  private async readGzip(f: OpenFile): Promise<boolean> {
    const skip = this.readPos;
    const g = gunzipHandle(f.fh);
    let pos = 0;
    let batch: RawRecord[] = [];
    try {
      for await (const c of g.stream) {
        if (this.stopped) return false;
        let chunk = c as Buffer;
        const at = pos;
        pos += chunk.length;
        if (pos <= skip) continue;
        if (at < skip) chunk = chunk.subarray(skip - at);
        this.readPos = pos;
        this.splitter.push(chunk, (l) => batch.push(this.record(l, f.path)));
        if (batch.length >= this.batchLines) {
          await this.commitBatch(f, batch);
          batch = [];
        }
      }
    } catch (e) {
      await this.commitBatch(f, batch);
      return this.gzipEndedEarly(f, e as Error);
    } finally {
      g.close();
    }
    await this.commitBatch(f, batch);
    this.gzipFailure = undefined;
    await this.finishFile(f);
    return true;
  }

  /**
   * A .gz that ends early is either still being written (wait: it is read again from the committed offset once
   * complete) or damaged: once it has not changed for damagedAfterMs it is finished where its readable part ends.
   */
  private async gzipEndedEarly(f: OpenFile, e: Error): Promise<boolean> {
    const st = await f.fh.stat();
    const key = `${f.path}:${st.ino}:${st.size}:${st.mtimeMs}`;
    if (this.gzipFailure?.key !== key) this.gzipFailure = { key, since: Date.now() };
    if (Date.now() - this.gzipFailure.since < (this.o.damagedAfterMs ?? 60_000)) {
      await this.closeFile();
      return false;
    }
    this.gzipFailure = undefined;
    this.countLost(
      'damaged',
      `rotated file ${f.name} is damaged (${e.message}) after byte ${this.splitter.offset} of its decompressed lines; the rest of it is skipped`,
    );
    this.splitter.reset(this.splitter.offset, this.splitter.lineNo);
    await this.finishFile(f);
    return true;
  }

  private record(l: Line | LongLine, path: string): RawRecord {
    if ('tooLong' in l) return { error: `line is ${l.bytes} bytes, over the ${this.maxLine}-byte limit`, where: `${path}:${l.lineNo}` };
    return new LineRecord(l, path);
  }

  /** The current file's fingerprint, grown to FINGERPRINT_BYTES once the file has them (a live file starts short). */
  private async grownFingerprint(f: OpenFile): Promise<Fingerprint> {
    const cur = this.state.cur!;
    if (f.gz || cur.headLen >= FINGERPRINT_BYTES) return cur;
    const prefix = await prefixOfHandle(f.fh);
    if (prefix.length <= cur.headLen || (cur.headLen > 0 && !matches(prefix, cur))) return cur;
    return fingerprintOf(prefix);
  }

  private async commitBatch(f: OpenFile, records: RawRecord[]): Promise<void> {
    const cur = this.state.cur!;
    if (records.length === 0 && cur.offset === this.splitter.offset) return;
    const fp = await this.grownFingerprint(f);
    const next: TailState = {
      v: 2,
      done: this.state.done,
      cur: { ...cur, head: fp.head, headLen: fp.headLen, offset: this.splitter.offset, line: this.splitter.lineNo },
    };
    await this.submitWithRetry(records, next);
    this.state = next;
  }

  /** The file has been read to its end: its unterminated last line too; then it counts as read, in one commit. */
  private async finishFile(f: OpenFile): Promise<void> {
    const rest: RawRecord[] = [];
    this.splitter.flush((l) => rest.push(this.record(l, f.path)));
    const fp = await this.grownFingerprint(f);
    const next = finished(this.state, fp);
    await this.submitWithRetry(rest, next);
    this.state = next;
    this.rotatedRead?.inc({ path: this.o.path });
    await this.closeFile();
  }

  private async closeFile(): Promise<void> {
    const f = this.file;
    this.file = undefined;
    await f?.fh.close().catch(() => undefined);
  }

  private countLost(reason: string, message: string): void {
    this.lost?.inc({ path: this.o.path, reason });
    log.warn(`tail ${this.o.path}: ${message}`, `tail-lost:${this.o.path}`);
  }

  private async submitWithRetry(records: RawRecord[], next: TailState): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.o.sink.submit({ source: this.source, cluster: this.o.cluster, records, checkpoint: { source: this.source, position: encodeState(next) } });
        return;
      } catch (e) {
        // Overloaded or a store error: wait and retry the same batch; the file keeps everything meanwhile.
        if (this.stopped) throw e;
        await this.sleep(Math.min(5000, 100 * 2 ** Math.min(attempt, 6)));
      }
    }
  }
}
