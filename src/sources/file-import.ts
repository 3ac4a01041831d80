import { stat } from 'node:fs/promises';
import { readFileRecords, type RawRecord } from '../events/read.js';
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
  maxLine?: number;
  batchSize?: number;
  /**
   * Batches handed to the pipeline before waiting for the oldest (default 10): reading overlaps processing, and the
   * pipeline always has batches to decode while others are stored, detected and committed.
   */
  inFlight?: number;
  onProgress?: (p: ImportProgress) => void;
}

/**
 * One-shot import of audit log files (plain or gzipped; JSON lines, EventList or array documents) through the
 * pipeline. Importing the same file twice stores nothing twice.
 */
export async function importFiles(paths: string[], o: ImportOptions): Promise<ImportProgress> {
  const total: ImportProgress = { file: '', bytesRead: 0, bytesTotal: 0, events: 0, duplicates: 0, bad: 0, alerts: 0 };
  for (const p of paths) total.bytesTotal += (await stat(p)).size;
  const batchSize = o.batchSize ?? 1000;
  const maxInFlight = o.inFlight ?? 10;
  const inFlight: Promise<void>[] = [];
  // Not async: the records are handed over, not held here until the batch commits.
  const submit = (records: RawRecord[], source: string): Promise<void> =>
    o.sink.submit({ source, cluster: o.cluster, records }).then((r) => {
      total.events += r.stored;
      total.duplicates += r.duplicates;
      total.bad += r.bad.length;
      total.alerts += r.alerts.length;
      o.onProgress?.(total);
    });
  for (const path of paths) {
    total.file = path;
    const source = `import:${path}`;
    let pending: RawRecord[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const recs = pending;
      pending = [];
      inFlight.push(submit(recs, source));
      if (inFlight.length >= maxInFlight) await inFlight.shift();
    };
    for await (const recs of readFileRecords(path, { maxLine: o.maxLine, onBytes: (n) => (total.bytesRead += n) })) {
      for (const r of recs) {
        pending.push(r);
        if (pending.length >= batchSize) await flush();
      }
    }
    await flush();
  }
  await Promise.all(inFlight);
  return total;
}
