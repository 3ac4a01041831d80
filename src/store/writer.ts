import { Worker } from 'node:worker_threads';
import type { Alert } from '../detect/alert.js';
import { storeError } from './write-error.js';
import type { BatchTail, BatchWriter, InsertResult, PendingBatch } from './batch.js';
import type { EventRecords } from './records.js';
import type { RetentionOptions, StoreOptions } from './store.js';

/** Recycled raw-JSON buffers kept (a few batches in flight each hold one). */
const SPARE_BUFFERS = 8;

/**
 * The thread's module. Under the test runner this module is TypeScript source; the thread runs the compiled file (the
 * tests' global setup builds it first).
 */
const ENTRY = import.meta.url.endsWith('.ts') ? new URL('../../dist/store/writer-thread.js', import.meta.url) : new URL('./writer-thread.js', import.meta.url);
/**
 * The writer's garbage is short-lived (a batch's strings and buffers): a small young generation keeps the process's
 * resident memory down at no measurable cost in speed.
 */
const LIMITS = { maxYoungGenerationSizeMb: 8 };

/** A writer thread started before its store was known (startWriterEarly), until WriterThread.open takes it. */
let early: Worker | undefined;

/**
 * Starts a writer thread now, to be told its store later: a thread's own start (Node's bootstrap of it, its modules,
 * better-sqlite3) was the longest part of a short import's start-up (issue #21), and begun at once it runs beside
 * the main thread's loading of the command, its config and its rules. Held unref'd, so that a command that never
 * opens a SQLite store exits as before; dropEarlyWriter ends it when that is known.
 */
export function startWriterEarly(): void {
  if (early) return;
  const w = new Worker(ENTRY, { resourceLimits: LIMITS });
  w.unref();
  // A thread that failed to start is not used: open() starts one of its own, and reports what fails then.
  w.once('error', () => {
    if (early === w) early = undefined;
  });
  early = w;
}

/**
 * Ends a thread started by startWriterEarly that no store will take (the store is OpenSearch). Resolves to the
 * thread's exit code once it has stopped, or undefined when there was none.
 */
export function dropEarlyWriter(): Promise<number | undefined> {
  const w = early;
  early = undefined;
  return w ? w.terminate() : Promise.resolve(undefined);
}

/** The main thread's handle on the writer thread (see writer-thread.ts). */
export class WriterThread implements BatchWriter {
  private worker: Worker;
  private nextId = 1;
  private calls = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private failed: Error | undefined;
  /** Raw-JSON buffers the thread handed back once it had compressed them (see rawBuffer). */
  private spare: ArrayBuffer[] = [];
  redactionKey!: Buffer;

  private constructor(path: string, store: StoreOptions, retention?: RetentionOptions & { intervalMs: number }) {
    const ready = early;
    early = undefined;
    if (ready) {
      ready.ref();
      ready.postMessage({ id: 0, op: 'open', args: [{ path, store, retention }] });
      this.worker = ready;
    } else this.worker = new Worker(ENTRY, { workerData: { path, store, retention }, resourceLimits: LIMITS });
  }

  static async open(path: string, store: StoreOptions = {}, retention?: RetentionOptions & { intervalMs: number }): Promise<WriterThread> {
    const w = new WriterThread(path, store, retention);
    await new Promise<void>((resolve, reject) => {
      w.worker.once('error', reject);
      w.worker.on('message', (m: { id: number; ok?: any; error?: string; code?: string; spare?: ArrayBuffer }) => {
        if (m.spare) w.keepSpare(m.spare);
        if (m.id === 0) {
          w.redactionKey = Buffer.from(m.ok.redactionKey);
          w.worker.off('error', reject);
          resolve();
          return;
        }
        const p = w.calls.get(m.id);
        if (!p) return;
        w.calls.delete(m.id);
        if (m.error !== undefined) p.reject(storeError(`store ${path}: ${m.error.replace(/^store: /, '')}`, m.code));
        else p.resolve(m.ok);
      });
    });
    w.worker.on('error', (e) => {
      w.failed = e;
      for (const p of w.calls.values()) p.reject(e);
      w.calls.clear();
    });
    return w;
  }

  private call<T>(op: string, a?: unknown, b?: unknown, transfer?: ArrayBuffer[]): Promise<T> {
    const args = a === undefined ? [] : b === undefined ? [a] : [a, b];
    if (this.failed) return Promise.reject(new Error(`store writer failed: ${this.failed.message}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  insert(events: EventRecords): Promise<InsertResult> {
    // Both buffers move to the writer (RecordPacker allocates them for the batch alone): no copy.
    return this.call('insert', events, undefined, [events.nums.buffer as ArrayBuffer, events.raw.buffer as ArrayBuffer]);
  }

  /** Buffers handed back and not yet reused. */
  get spareBuffers(): number {
    return this.spare.length;
  }

  /** Keeps a handed-back buffer; when all places are taken, in place of the smallest kept one if it is larger. */
  private keepSpare(b: ArrayBuffer): void {
    if (this.spare.length < SPARE_BUFFERS) {
      this.spare.push(b);
      return;
    }
    let min = 0;
    for (let i = 1; i < this.spare.length; i++) if (this.spare[i]!.byteLength < this.spare[min]!.byteLength) min = i;
    if (this.spare[min]!.byteLength < b.byteLength) this.spare[min] = b;
  }

  /** A recycled buffer when one is large enough (the thread returns each batch's raw buffer after compressing it). */
  rawBuffer(bytes: number): Buffer {
    for (let i = this.spare.length - 1; i >= 0; i--) {
      if (this.spare[i]!.byteLength >= bytes) return Buffer.from(this.spare.splice(i, 1)[0]!);
    }
    // Room to spare, so that the buffer fits the batches after this one when it comes back.
    return Buffer.allocUnsafeSlow(Math.max(bytes + (bytes >> 2), 1 << 20));
  }

  /** Commit what was sent so far: the caller is about to wait for an acknowledgement (see writer-thread.ts). */
  flush(): void {
    if (!this.failed) this.worker.postMessage({ id: 0, op: 'flush', args: [] });
  }

  finish(batch: number, tail: BatchTail): Promise<Alert[]> {
    return this.call('finish', batch, tail);
  }

  discard(batch: number): Promise<void> {
    return this.call('discard', batch);
  }

  pending(): Promise<PendingBatch[]> {
    return this.call('pending');
  }

  saveState(name: string, json: string): Promise<void> {
    return this.call('saveState', name, json);
  }

  takeState(name: string): Promise<string | undefined> {
    return this.call('takeState', name);
  }

  /** Commits and removes `bytes` of zeros: resolves when the store can take a batch-sized write (see probe.ts). */
  probeWrite(bytes: number): Promise<void> {
    return this.call('probe', bytes);
  }

  async close(): Promise<void> {
    await this.call('close');
    await this.worker.terminate();
  }
}
