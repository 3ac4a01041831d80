import type { Alert, Detector } from '../detect/alert.js';
import { OverloadedError } from '../errors.js';
import { decodeRecord, decoderFor } from '../events/decode.js';
import type { RawRecord } from '../events/record.js';
import { normalise } from '../events/normalise.js';
import type { RedactionOptions } from '../events/redact.js';
import type { NormalisedEvent } from '../events/types.js';
import { log } from '../log.js';
import type { Metrics } from '../metrics.js';
import { alertEventIndexes, type BatchWriter, type Checkpoint, type DeadLetter, type InsertResult } from '../store/batch.js';
import { decodeBatch, wholeEvents, type Decoded } from './decode.js';
import { AlertBus } from './alert-bus.js';

export type { RawRecord };

/** What a source hands the pipeline: undecoded records and, for checkpointing sources, the position they reach. */
export interface RawBatch {
  /** Stable source id: `file:/var/log/audit.log`, `webhook`, `kafka:topic/3`, `import`. */
  source: string;
  /** The cluster of the batch's events, unless an event's envelope names its own (and the cluster is not fixed). */
  cluster: string;
  /**
   * Every event goes to `cluster`, whatever its envelope names: the sender named the cluster (a credential bound to
   * it, a cluster in the request path, a Kafka header), and an event must not write to another one.
   */
  clusterFixed?: boolean;
  records: RawRecord[];
  /** How records are decoded: `auto` (default: envelopes by shape), `native`, or an envelope's name (eks, gke, aks, forwarder). */
  format?: string;
  /** Committed with the batch's alerts, after its events: a stop before leaves the source to send them again. */
  checkpoint?: Checkpoint;
  /**
   * The Kafka partition (`topic/partition`) the events came from: the detection state they touch belongs to it, and
   * moves with it to another detector (see DetectionStateTopic).
   */
  partition?: string;
  /**
   * Events the detection state already counts (redelivered below the offset of the state loaded for their partition):
   * stored, not detected again.
   */
  replayed?: boolean;
  /**
   * The source sends its next batch at once and waits for no acknowledgement meanwhile (a file import between its
   * first and last batch): this batch's commit may wait to be grouped with the next ones' (see writer-thread.ts).
   */
  more?: boolean;
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
  /**
   * Resolves once the batch is durable. Rejects with OverloadedError (retriable: nothing was taken, send it again
   * later) when the sink's queue is full; any other rejection is a failure of this batch.
   */
  submit(batch: RawBatch): Promise<BatchOutcome>;
  /** True while `submit` would refuse with OverloadedError: sources check it before reading more (absent: never). */
  readonly overloaded?: boolean;
}

export interface PipelineOptions {
  /** Where batches are committed: a store in this thread (an AuditStore) or a WriterThread. None: detect only. */
  writer?: BatchWriter;
  detector?: Detector;
  bus?: AlertBus;
  metrics?: Metrics;
  redaction?: RedactionOptions;
  /** Batches accepted while others are processed; past this `submit` rejects with OverloadedError (default 32). */
  maxQueuedBatches?: number;
  /** Events accepted but not yet committed; past this `submit` rejects with OverloadedError (default 100,000). */
  maxQueuedEvents?: number;
  /** Told of each commit and each failed batch: whether the store can write (see WriteHealth, /readyz). */
  health?: { ok(): void; failed(e: unknown): void };
  /** Log each failed batch (default true); `kaudit ingest` reports its failure itself, in one line. */
  logFailures?: boolean;
}

interface Pending {
  batch: RawBatch;
  /** Records in the batch, counted against the queue bound until it commits. */
  size: number;
  resolve: (o: BatchOutcome) => void;
  reject: (e: unknown) => void;
}

/**
 * The one path every event takes: decode -> normalise (redaction) -> store the events (new ones flagged, marked
 * pending detection) -> detect the new ones -> store alerts, dead letters and source position (clearing the mark) ->
 * publish alerts -> acknowledge. Batches are detected one at a time, in submission order, so detection state sees
 * events in order.
 */
export class Pipeline implements BatchSink {
  readonly bus: AlertBus;
  private queue: Pending[] = [];
  private queuedEvents = 0;
  private running = false;
  /** Set while drain waits with nothing queued: a new batch wakes it. */
  private wake: (() => void) | undefined;
  private readonly maxBatches: number;
  private readonly maxEvents: number;
  private readonly redaction: RedactionOptions;
  private readonly counters;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: PipelineOptions) {
    this.bus = opts.bus ?? new AlertBus();
    const w = opts.writer;
    this.rawBuffers = w?.rawBuffer ? (n) => w.rawBuffer!(n) : undefined;
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
          envEvents: m.counter(
            'kaudit_envelope_events_total',
            'Audit events unwrapped from a cloud or forwarder envelope, by envelope (eks, gke, aks, forwarder)',
          ),
          envBad: m.counter('kaudit_envelope_bad_total', 'Items of an envelope refused as bad input (dead-lettered), by envelope'),
        }
      : undefined;
    m?.collect('kaudit_ingest_queue_events', 'Events accepted and not yet committed', () => [{ value: this.queuedEvents }]);
    this.recovering = this.recover().catch((e) => {
      this.failures++;
      log.error(`detection of batches interrupted by a stop failed: ${(e as Error).message}`, 'pipeline');
    });
  }

  /** Batches that failed (their events may have reached detection without being committed). */
  private failures = 0;

  /**
   * True while no batch has failed: every event detection has seen is then committed with its batch, so the detector's
   * state matches the store and the source positions, and may be saved for the next start.
   */
  get consistent(): boolean {
    return this.failures === 0;
  }

  private readonly rawBuffers: ((bytes: number) => Buffer) | undefined;

  /** The start-up pass over batches a stop left undetected (see recover). */
  private readonly recovering: Promise<void>;

  /** True when a new batch would be refused. */
  get overloaded(): boolean {
    return this.queue.length >= this.maxBatches || this.queuedEvents >= this.maxEvents;
  }

  submit(batch: RawBatch): Promise<BatchOutcome> {
    if (this.overloaded) {
      this.counters?.overloaded.inc({ source: sourceKind(batch.source) });
      return Promise.reject(new OverloadedError());
    }
    if (batch.format !== undefined) {
      // A source's misconfiguration, refused before the batch is queued (it is not the batch's data that is bad).
      try {
        decoderFor(batch.format);
      } catch (e) {
        return Promise.reject(new Error(`${batch.source}: ${(e as Error).message}`));
      }
    }
    return new Promise<BatchOutcome>((resolve, reject) => {
      this.queue.push({ batch, size: batch.records.length, resolve, reject });
      this.queuedEvents += batch.records.length;
      if (!this.running) void this.drain();
      else this.wake?.();
    });
  }

  /** Resolves when every submitted batch has been processed. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return this.recovering;
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Processes the queue in order. Batches are decoded and inserted ahead of detection: while this thread detects
   * batch N, the writer thread inserts N+1; N's finish (alerts, position) queues behind that insert, and N is
   * acknowledged when its finish commits. Detection itself stays strictly in order.
   */
  private async drain(): Promise<void> {
    this.running = true;
    await this.recovering;
    const ahead: Staged[] = [];
    // Finishes not yet committed, oldest first (commits land in order, so the settled ones are at the front).
    const finishing: { done: Promise<void>; settled: boolean }[] = [];
    const prune = () => {
      while (finishing.length > 0 && finishing[0]!.settled) finishing.shift();
    };
    let moreFollows = false;
    for (;;) {
      while (ahead.length < STAGED_AHEAD) {
        const p = this.queue.shift();
        if (!p) break;
        ahead.push(this.stage(p));
      }
      const cur = ahead.shift();
      if (!cur) {
        // Nothing queued: wait for the last commits to land or for a new batch, whichever comes first. The writer is
        // told to commit now unless the last batch's source said more follows at once (a file import): its commit then
        // groups with the next batches' (see writer-thread.ts).
        prune();
        if (finishing.length === 0) {
          if (this.queue.length === 0) break;
          continue;
        }
        if (!moreFollows) this.opts.writer?.flush?.();
        const woken = await Promise.race([
          Promise.all(finishing.map((f) => f.done)).then(() => false),
          new Promise<boolean>((r) => (this.wake = () => r(true))),
        ]);
        this.wake = undefined;
        if (!woken) finishing.length = 0;
        continue;
      }
      const p = cur.p;
      moreFollows = p.batch.more === true;
      let done: Promise<void>;
      try {
        const dec = cur.dec;
        if (dec instanceof Error) throw dec;
        const { committed } = await this.complete(p.batch, dec, cur.inserted);
        done = committed.then(
          (o) => p.resolve(o),
          (e) => this.failed(p, e),
        );
      } catch (e) {
        this.failed(p, e);
        done = Promise.resolve();
      }
      const release = p.size;
      const f = { done: done.then(() => void ((this.queuedEvents -= release), (f.settled = true))), settled: false };
      finishing.push(f);
      prune();
      // Enough finishes wait for a commit to make one worth its pages: ask for it now, while this thread goes on, so
      // that it has landed before FINISHING would make this thread wait for it.
      if (finishing.length === COMMIT_AT) this.opts.writer?.flush?.();
      if (finishing.length > FINISHING) {
        this.opts.writer?.flush?.();
        await finishing.shift()!.done;
      }
    }
    this.running = false;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of w) fn();
  }

  /** Decodes a batch and sends its events to the writer. */
  private stage(p: Pending): Staged {
    const batch = p.batch;
    // The records are not needed past decoding: let them go rather than keep them until the commit.
    p.batch = { ...batch, records: [] };
    const dec = this.decode(batch);
    const inserted = dec instanceof Error ? Promise.resolve(undefined) : this.insert(dec);
    // An insert that fails is reported when the batch's turn comes; until then it must not count as unhandled.
    inserted.catch(() => {});
    return { p, dec, inserted };
  }

  private failed(p: Pending, e: unknown): void {
    this.failures++;
    this.opts.health?.failed(e);
    if (this.opts.logFailures !== false) log.error(`ingest of a batch from ${p.batch.source} failed: ${(e as Error).message}`, 'pipeline');
    p.reject(e);
  }

  private decode(batch: RawBatch): Decoded | Error {
    const det = this.opts.detector;
    try {
      return decodeBatch(batch.source, batch.cluster, batch.records, {
        redaction: this.redaction,
        pack: !!this.opts.writer,
        buffers: this.rawBuffers,
        keep: !det ? 'none' : det.wants ? (e) => det.wants!(e) : 'all',
        warn: (m, k) => log.warn(m, k),
        format: batch.format,
        clusterFixed: batch.clusterFixed,
      });
    } catch (e) {
      return e as Error;
    }
  }

  /** Sends the batch's events to the writer, which commits them (pending detection) and says which were new. */
  private async insert(d: Decoded): Promise<InsertResult> {
    const w = this.opts.writer;
    if (!w || !d.records) return { batch: 0, flags: new Array<boolean>(d.count).fill(true), orphans: false };
    const inserted = w.insert(d.records);
    // The writer has them (the buffers are moved, not copied).
    d.records = undefined;
    return inserted;
  }

  /**
   * Detection on the batch's new events; then sends alerts, dead letters and position to the writer, to commit
   * together. Returns once the finish is sent: the promise inside resolves with the outcome after the commit.
   */
  private async complete(batch: RawBatch, d: Decoded, inserted: Promise<InsertResult | undefined>): Promise<{ committed: Promise<BatchOutcome> }> {
    const ins = (await inserted)!;
    const w = this.opts.writer;
    const flags = ins.flags;
    let stored = 0;
    for (const f of flags) if (f) stored++;
    let fresh = d.keep;
    let freshIdx = d.keepIdx;
    let whole = d.keepWhole;
    if (stored !== d.count) {
      fresh = [];
      freshIdx = [];
      const all = whole;
      whole = all ? [] : undefined;
      d.keep.forEach((e, j) => {
        if (!flags[d.keepIdx[j]!]) return;
        fresh.push(e);
        freshIdx.push(d.keepIdx[j]!);
        whole?.push(all![j]);
      });
    }
    let raised: Alert[];
    try {
      // Duplicates that belong to a batch a stopped writer never detected: detect that batch first, in order.
      if (ins.orphans) await this.recover();
      const detect = this.opts.detector && fresh.length > 0 && !batch.replayed;
      if (detect && whole) wholeEvents(fresh, whole, this.redaction, (m) => log.warn(m, `bodies:${batch.source}`));
      raised = detect ? await this.opts.detector!.detect(fresh, batch.partition) : [];
    } catch (e) {
      // Undone, so the writer keeps no open batch and no mark of this process behind a failed batch.
      await w?.discard(ins.batch);
      throw e;
    }
    const det = this.opts.detector;
    const committed = w
      ? settled(() =>
          w.finish(ins.batch, {
            alerts: raised,
            alertEvents: alertEventIndexes(raised, fresh, freshIdx),
            deadLetters: d.deadLetters,
            checkpoint: batch.checkpoint,
            ...(batch.more ? { more: true } : {}),
          }),
        ).catch((e: unknown) => {
          // Not stored: the source sends the batch again, and its requests must be able to alert then.
          if (raised.length > 0) det?.forget?.(raised);
          throw e;
        })
      : Promise.resolve(raised);
    // Keep only counts alive until the commit: holding the batch's events would keep them out of the young
    // generation's cheap collection.
    const duplicates = w ? d.count - stored : 0;
    if (!w) stored = 0;
    const bad = d.deadLetters.map(badOf);
    const source = batch.source;
    const envelopes = d.envelopes;
    return {
      committed: committed.then((alerts) => {
        this.opts.health?.ok();
        const outcome: BatchOutcome = { stored, duplicates, bad, alerts };
        if (this.counters) {
          const src = { source: sourceKind(source) };
          if (stored) this.counters.events.inc(src, stored);
          if (duplicates) this.counters.dups.inc(src, duplicates);
          if (bad.length) this.counters.bad.inc(src, bad.length);
          for (const a of raised) this.counters.alerts.inc({ rule: a.rule });
          if (envelopes) {
            for (const [envelope, t] of envelopes) {
              if (t.events) this.counters.envEvents.inc({ envelope }, t.events);
              if (t.bad) this.counters.envBad.inc({ envelope }, t.bad);
            }
          }
        }
        this.bus.publish(alerts);
        return outcome;
      }),
    };
  }

  /**
   * Detects the batches a stopped writer committed but never detected (see BatchWriter), once each, and finishes
   * them. Runs before the first batch and whenever an insert meets such a batch's resent events.
   */
  private async recover(): Promise<void> {
    const w = this.opts.writer;
    if (!w) return;
    for (const p of await w.pending()) {
      // The batch's events and their indexes in it (which the alerts' event links refer to).
      const events: NormalisedEvent[] = [];
      const index: number[] = [];
      const det = this.opts.detector;
      p.events.forEach((e, i) => {
        for (const d of decodeRecord({ text: e.line, where: 'store' }, 'native')) {
          if ('error' in d) continue;
          const n = normalise(d.event, e.cluster, this.redaction, d.text);
          if (det?.wants && !det.wants(n)) continue;
          events.push(n);
          index.push(i);
        }
      });
      const raised = det ? await det.detect(events) : [];
      const finished = w.finish(p.batch, { alerts: raised, alertEvents: alertEventIndexes(raised, events, index), deadLetters: [] });
      w.flush?.();
      const alerts = await finished;
      for (const a of raised) this.counters?.alerts.inc({ rule: a.rule });
      this.bus.publish(alerts);
      log.info(`detected ${events.length} stored events whose detection a stop had interrupted (${raised.length} alerts)`);
    }
  }
}

/**
 * Batches decoded and inserted ahead of the one being detected, and batches whose finish may wait for its commit.
 * Four ahead: with two, this thread waited on the writer's inserts for a fifth of an import's time (and the writer on
 * it), their pace varying from batch to batch; measured 10-20% faster, for ~10 MB more resident at peak.
 */
const STAGED_AHEAD = 4;
const FINISHING = 6;
/** Finishes outstanding at which the writer is asked to commit (see writer-thread.ts: group commit). */
const COMMIT_AT = 3;

interface Staged {
  p: Pending;
  dec: Decoded | Error;
  inserted: Promise<InsertResult | undefined>;
}

/** A call's result as a promise, whether it returns one, a value, or throws (a same-thread Store's finish throws). */
function settled<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

function badOf(d: DeadLetter): BadRecord {
  return { where: d.where, reason: d.reason };
}

/** `file:/var/log/audit.log` -> `file`: metric labels stay low-cardinality. */
export function sourceKind(source: string): string {
  const i = source.indexOf(':');
  return i < 0 ? source : source.slice(0, i);
}
