import { stat } from 'node:fs/promises';
import type { RawRecord } from '../events/record.js';
import { readFileRecords } from './file-read.js';
import type { BatchSink } from '../pipeline/pipeline.js';

export interface ImportProgress {
  file: string;
  bytesRead: number;
  bytesTotal: number;
  events: number;
  duplicates: number;
  bad: number;
  alerts: number;
}

export interface ImportOptions {
  sink: BatchSink;
  cluster: string;
  /** `auto` (default), `native` or an envelope's name: see RawBatch.format. */
  format?: string;
  /** Every event goes to `cluster`, whatever its envelope names (set when the user named one): see RawBatch.clusterFixed. */
  clusterFixed?: boolean;
  maxLine?: number;
  batchSize?: number;
  /**
   * A batch is also closed once its records hold this many bytes of text (default 1 MiB). Each batch in flight holds
   * its raw bytes, their packed copy and the parsed events detection keeps: on a log with large events (list
   * responses, RequestResponse bodies) batches of a fixed count held ~60 MB more at the peak (issue #21: 200 MB).
   */
  batchBytes?: number;
  /**
   * Batches handed to the pipeline before waiting for the oldest (default 10): reading overlaps processing, and the
   * pipeline always has batches to decode while others are stored, detected and committed.
   */
  inFlight?: number;
  onProgress?: (p: ImportProgress) => void;
}

/**
 * An import that stopped because a batch could not be stored. `progress` counts only what was committed before (and
 * around) the failure; nothing else is in flight when this is thrown. The import keeps no position of its own: the
 * (cluster, auditID, stage) key is what makes running it again store only the rest.
 */
export class ImportFailed extends Error {
  constructor(
    override readonly cause: unknown,
    readonly progress: ImportProgress,
  ) {
    super(`import of ${progress.file} stopped: ${(cause as Error).message}`);
    this.name = 'ImportFailed';
  }
}

/**
 * One-shot import of audit log files (plain or gzipped; JSON lines, EventList or array documents) through the
 * pipeline. Importing the same file twice stores nothing twice. The first batch that fails stops the import: nothing
 * more is read, the batches in flight are let finish, and ImportFailed reports the cause and what was stored.
 */
export async function importFiles(paths: string[], o: ImportOptions): Promise<ImportProgress> {
  const total: ImportProgress = { file: '', bytesRead: 0, bytesTotal: 0, events: 0, duplicates: 0, bad: 0, alerts: 0 };
  for (const p of paths) total.bytesTotal += (await stat(p)).size;
  const batchSize = o.batchSize ?? 1000;
  const batchBytes = o.batchBytes ?? 1 << 20;
  const maxInFlight = o.inFlight ?? 10;
  const inFlight: Promise<void>[] = [];
  let failure: { cause: unknown } | undefined;
  // Not async: the records are handed over, not held here until the batch commits.
  const submit = (records: RawRecord[], source: string, more: boolean): Promise<void> =>
    o.sink.submit({ source, cluster: o.cluster, records, format: o.format, clusterFixed: o.clusterFixed, more }).then(
      (r) => {
        total.events += r.stored;
        total.duplicates += r.duplicates;
        total.bad += r.bad.length;
        total.alerts += r.alerts.length;
        o.onProgress?.(total);
      },
      (e) => void (failure ??= { cause: e }),
    );
  const stop = async (): Promise<never> => {
    await Promise.all(inFlight);
    throw new ImportFailed(failure!.cause, total);
  };
  for (const path of paths) {
    total.file = path;
    const source = `import:${path}`;
    let pending: RawRecord[] = [];
    let pendingBytes = 0;
    // `more`: the next batch follows at once (the pipeline lets its commit wait for the next ones'); not so for a
    // file's last batch, which the import then waits for.
    const flush = async (more: boolean) => {
      if (pending.length === 0) return;
      const recs = pending;
      pending = [];
      pendingBytes = 0;
      inFlight.push(submit(recs, source, more));
      if (inFlight.length >= maxInFlight) await inFlight.shift();
    };
    for await (const recs of readFileRecords(path, { maxLine: o.maxLine, onBytes: (n) => (total.bytesRead += n) })) {
      for (let i = 0; i < recs.length; i++) {
        const r = recs[i]!;
        pending.push(r);
        pendingBytes += textBytes(r);
        if (pending.length >= batchSize || pendingBytes >= batchBytes) await flush(true);
      }
      // Break, not `return stop()`: returning from a for-await first awaits the reader's cleanup, and a stop() promise
      // that rejected meanwhile had no handler yet (an unhandled rejection ends the process with exit code 1).
      if (failure) break;
    }
    if (failure) break;
    await flush(false);
  }
  await Promise.all(inFlight);
  if (failure) return stop();
  return total;
}

/** A record's size for the batch bound: its bytes in the file, or its text's length. */
function textBytes(r: RawRecord): number {
  if (r.bytesEnd !== undefined && r.bytesStart !== undefined) return r.bytesEnd - r.bytesStart;
  return r.text?.length ?? 0;
}
