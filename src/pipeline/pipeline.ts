import type { Alert, Detector } from '../detect/alert.js';
import { decodeRecord, type RawRecord } from '../events/read.js';
import { normalise } from '../events/normalise.js';
import { deadLetterData, type RedactionOptions } from '../events/redact.js';
import type { NormalisedEvent } from '../events/types.js';
import { log } from '../log.js';
import type { Metrics } from '../metrics.js';
import { toRecords, type BatchWriter, type Checkpoint, type DeadLetter } from '../store/store.js';
import { AlertBus } from './alert-bus.js';

export type { RawRecord };

/** What a source hands the pipeline: undecoded records and, for checkpointing sources, the position they reach. */
export interface RawBatch {
  /** Stable source id: `file:/var/log/audit.log`, `webhook`, `kafka:topic/3`, `import`. */
  source: string;
  cluster: string;
  records: RawRecord[];
  /** Committed in the same transaction as the batch's events. */
  checkpoint?: Checkpoint;
}

export interface BadRecord {
  where: string;
  reason: string;
}

export interface BatchOutcome {
  stored: number;
  duplicates: number;
  bad: BadRecord[];
  /** Alerts raised by this batch that opened a new alert (with store ids when a store is attached). */
  alerts: Alert[];
}

/** Anything that takes raw batches and acknowledges them once durable: the pipeline, or a Kafka events producer. */
export interface BatchSink {
  submit(batch: RawBatch): Promise<BatchOutcome>;
}

export class OverloadedError extends Error {
  readonly code = 'OVERLOADED';
  constructor(message = 'ingest queue is full; retry later') {
    super(message);
    this.name = 'OverloadedError';
  }
}

export interface PipelineOptions {
  /** Where batches are committed: a Store (same thread) or a WriterThread. None: detect only. */
  writer?: BatchWriter;
  detector?: Detector;
  bus?: AlertBus;
  metrics?: Metrics;
  redaction?: RedactionOptions;
  /** Batches accepted while others are processed; past this `submit` rejects with OverloadedError (default 32). */
  maxQueuedBatches?: number;
  /** Events accepted but not yet committed; past this `submit` rejects with OverloadedError (default 100,000). */
  maxQueuedEvents?: number;
}

interface Pending {
  batch: RawBatch;
  /** Records in the batch, counted against the queue bound until it commits. */
  size: number;
  resolve: (o: BatchOutcome) => void;
  reject: (e: unknown) => void;
}

/**
 * The one path every event takes: decode -> normalise (redaction) -> drop already-stored events -> detect ->
 * compress -> store (one transaction: events, alerts, dead letters, source position) -> publish alerts -> acknowledge.
 * Batches are processed one at a time, in submission order, so detection state sees events in order.
 */
export class Pipeline implements BatchSink {
  readonly bus: AlertBus;
  private queue: Pending[] = [];
  private queuedEvents = 0;
  private running = false;
  private readonly maxBatches: number;
  private readonly maxEvents: number;
  private readonly redaction: RedactionOptions;
  private readonly counters;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: PipelineOptions) {
    this.bus = opts.bus ?? new AlertBus();
    this.maxBatches = opts.maxQueuedBatches ?? 32;
    this.maxEvents = opts.maxQueuedEvents ?? 100_000;
    this.redaction = opts.redaction ?? { enabled: true, key: (opts.writer as { redactionKey?: Buffer } | undefined)?.redactionKey ?? Buffer.alloc(32) };
    const m = opts.metrics;
    this.counters = m
      ? {
          events: m.counter('kaudit_events_ingested_total', 'Audit events stored, by source'),
          dups: m.counter('kaudit_events_duplicate_total', 'Audit events skipped because already stored (cluster, auditID, stage)'),
          bad: m.counter('kaudit_bad_input_total', 'Records rejected as bad input, by source'),
          alerts: m.counter('kaudit_alerts_total', 'Alerts raised, by rule'),
          overloaded: m.counter('kaudit_ingest_overloaded_total', 'Batches refused because the ingest queue was full'),
        }
      : undefined;
    m?.collect('kaudit_ingest_queue_events', 'Events accepted and not yet committed', () => [{ value: this.queuedEvents }]);
  }

  /** True when a new batch would be refused. */
  get overloaded(): boolean {
    return this.queue.length >= this.maxBatches || this.queuedEvents >= this.maxEvents;
  }

  submit(batch: RawBatch): Promise<BatchOutcome> {
    if (this.overloaded) {
      this.counters?.overloaded.inc({ source: sourceKind(batch.source) });
      return Promise.reject(new OverloadedError());
    }
    return new Promise<BatchOutcome>((resolve, reject) => {
      this.queue.push({ batch, size: batch.records.length, resolve, reject });
      this.queuedEvents += batch.records.length;
      if (!this.running) void this.drain();
    });
  }

  /** Resolves when every submitted batch has been processed. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Processes the queue in order. The writer thread and this thread overlap: while the writer inserts batch N, this
   * thread decodes N+1; once N's new events are known and detected, N's finish (alerts, commit) and N+1's begin go
   * to the writer back to back, and N is acknowledged when its commit returns.
   */
  private async drain(): Promise<void> {
    this.running = true;
    const finishing: Promise<void>[] = [];
    let cur = this.queue.shift();
    let curDec = cur ? this.safeDecode(cur) : undefined;
    let begun = curDec && !(curDec instanceof Error) ? this.begin(curDec) : undefined;
    while (cur) {
      const p = cur;
      const dec = curDec!;
      const next = this.queue.shift();
      const nextDec = next ? this.safeDecode(next) : undefined;
      let done: Promise<void>;
      try {
        if (dec instanceof Error) throw dec;
        const { committed } = await this.complete(p.batch, dec, begun!);
        done = committed.then(
          (o) => p.resolve(o),
          (e) => this.failed(p, e),
        );
      } catch (e) {
        this.failed(p, e);
        done = Promise.resolve();
      }
      const release = p.size;
      finishing.push(done.then(() => void (this.queuedEvents -= release)));
      if (finishing.length > 4) await finishing.shift();
      cur = next ?? this.queue.shift();
      curDec = next ? nextDec : cur ? this.safeDecode(cur) : undefined;
      begun = curDec && !(curDec instanceof Error) ? this.begin(curDec) : undefined;
      if (!cur) {
        // Let the last commits land, then look again: more may have been queued meanwhile.
        await Promise.all(finishing.splice(0));
        cur = this.queue.shift();
        curDec = cur ? this.safeDecode(cur) : undefined;
        begun = curDec && !(curDec instanceof Error) ? this.begin(curDec) : undefined;
      }
    }
    this.running = false;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of w) fn();
  }

  private failed(p: Pending, e: unknown): void {
    log.error(`ingest of a batch from ${p.batch.source} failed: ${(e as Error).message}`, 'pipeline');
    p.reject(e);
  }

  private safeDecode(p: Pending): Decoded | Error {
    try {
      const d = this.decode(p.batch);
      // The records' text is not needed past decoding: let it go rather than keep it until the commit.
      p.batch = { ...p.batch, records: [] };
      return d;
    } catch (e) {
      return e as Error;
    }
  }

  /** Decoding and normalisation of one batch; pure apart from logging. */
  decode(batch: RawBatch): Decoded {
    const events: NormalisedEvent[] = [];
    const deadLetters: DeadLetter[] = [];
    for (const r of batch.records) {
      for (const d of decodeRecord(r)) {
        if ('error' in d) {
          deadLetters.push({ source: batch.source, where: r.where, reason: d.error, data: deadLetterData(r.text, r.value, this.redaction) });
          log.warn(`bad input at ${r.where}: ${d.error}`, `bad-input:${batch.source}`);
        } else {
          const n = normalise(d.event, batch.cluster, this.redaction, d.text);
          // The parsed event is the bulk of a batch's memory: let it die young unless detection may read it.
          if (!this.opts.detector || (this.opts.detector.wants && !this.opts.detector.wants(n))) (n as { event?: unknown }).event = undefined;
          events.push(n);
        }
      }
    }
    return { events, deadLetters };
  }

  /** Opens the batch's transaction in the writer and inserts its events; resolves to which were new. */
  private async begin(d: Decoded): Promise<boolean[]> {
    const w = this.opts.writer;
    if (!w) return d.events.map(() => true);
    let raw = d.events.length > 0 ? d.events[0]!.raw : '';
    for (let i = 1; i < d.events.length; i++) raw += '\n' + d.events[i]!.raw;
    const begun = w.begin(toRecords(d.events), raw);
    // The writer has its copy; events stay alive for detection only.
    for (const e of d.events) e.raw = '';
    return begun;
  }

  /**
   * Detection on the new events; then sends alerts, dead letters and position to the writer, to commit in the same
   * transaction. Returns once the finish is sent: the promise inside resolves with the outcome after the commit.
   */
  private async complete(batch: RawBatch, d: Decoded, begun: Promise<boolean[]>): Promise<{ committed: Promise<BatchOutcome> }> {
    const flags = await begun;
    const w = this.opts.writer;
    const fresh = w ? d.events.filter((_, i) => flags[i]) : d.events;
    let raised: Alert[];
    try {
      raised = this.opts.detector && fresh.length > 0 ? await this.opts.detector.detect(fresh) : [];
    } catch (e) {
      await w?.abort();
      throw e;
    }
    const committed = w ? Promise.resolve(w.finish({ alerts: raised, deadLetters: d.deadLetters, checkpoint: batch.checkpoint })) : Promise.resolve(raised);
    // Keep only counts alive until the commit: holding the batch's events would keep them out of the young
    // generation's cheap collection.
    const stored = w ? fresh.length : 0;
    const duplicates = d.events.length - fresh.length;
    const bad = d.deadLetters.map(badOf);
    const source = batch.source;
    return { committed: committed.then((alerts) => {
      const outcome: BatchOutcome = { stored, duplicates, bad, alerts };
      if (this.counters) {
        const src = { source: sourceKind(source) };
        if (stored) this.counters.events.inc(src, stored);
        if (duplicates) this.counters.dups.inc(src, duplicates);
        if (bad.length) this.counters.bad.inc(src, bad.length);
        for (const a of raised) this.counters.alerts.inc({ rule: a.rule });
      }
      this.bus.publish(alerts);
      return outcome;
    }) };
  }
}

interface Decoded {
  events: NormalisedEvent[];
  deadLetters: DeadLetter[];
}

function badOf(d: DeadLetter): BadRecord {
  return { where: d.where, reason: d.reason };
}

/** `file:/var/log/audit.log` -> `file`: metric labels stay low-cardinality. */
export function sourceKind(source: string): string {
  const i = source.indexOf(':');
  return i < 0 ? source : source.slice(0, i);
}
