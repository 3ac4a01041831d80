import { OverloadedError } from '../errors.js';
import type { BadRecord, BatchSink, RawRecord } from '../pipeline/pipeline.js';

/** What one webhook request learns when its events are committed. */
export interface Committed {
  /** Events stored and skipped as already stored, for the whole commit this request was part of. */
  stored: number;
  duplicates: number;
  /** Requests merged into that commit (1: the counts above are this request's alone). */
  requests: number;
  /** This request's records that were not audit events. */
  bad: BadRecord[];
}

interface Waiting {
  records: RawRecord[];
  tag: string;
  resolve: (c: Committed) => void;
  reject: (e: unknown) => void;
}

interface Group {
  cluster: string;
  fixed: boolean;
  waiting: Waiting[];
  events: number;
}

export interface CoalescerOptions {
  /**
   * Merged batches handed to the pipeline and not yet committed (default 5: while the pipeline detects one, the writer
   * thread stores the next, a third is decoded and earlier ones commit).
   */
  maxInFlight?: number;
  /** Most events merged into one batch (default 1,200: three apiserver batches). */
  maxEvents?: number;
  /** Events waiting for a batch; past this, requests are refused with OverloadedError (default 12,000). */
  maxPendingEvents?: number;
}

/**
 * Group commit for webhook requests. While the pipeline is busy with earlier batches, requests for the same cluster
 * that arrive are merged into one batch, so the per-batch costs (transaction, commit, hand-off to the writer thread)
 * are paid once for several apiserver batches. Smaller merged batches, more of them in flight, keep every stage of
 * the pipeline busy: measured with benchmarks/webhook.mjs (16 senders, TLS, 55 rules, 2 cores), 1,200 events and 5
 * in flight sustained 56-60k events/s where 2,000 and 3 sustained 45-47k, with lower POST latency. With nothing in
 * flight a request goes straight through, so at low rates nothing waits. Every request is answered after the commit
 * of the batch its events went into.
 */
export class WebhookCoalescer {
  private inFlight = 0;
  private queue: Group[] = [];
  private pendingEvents = 0;
  private readonly o: Required<CoalescerOptions>;

  constructor(
    private readonly sink: BatchSink,
    opts: CoalescerOptions = {},
  ) {
    this.o = { maxInFlight: opts.maxInFlight ?? 5, maxEvents: opts.maxEvents ?? 1200, maxPendingEvents: opts.maxPendingEvents ?? 12_000 };
  }

  get pending(): number {
    return this.pendingEvents;
  }

  /** True when a new request would be refused: checked before its body is read. */
  get full(): boolean {
    return this.inFlight >= this.o.maxInFlight && this.pendingEvents >= this.o.maxPendingEvents;
  }

  /** `tag` prefixes the `where` of this request's records, to tell its bad records from those of its batch mates. */
  /** `fixed`: the request named its cluster, which its events' envelopes cannot override (see RawBatch.clusterFixed). */
  submit(cluster: string, records: RawRecord[], tag: string, fixed = false): Promise<Committed> {
    const n = records.length;
    if (this.inFlight >= this.o.maxInFlight && this.pendingEvents + n > this.o.maxPendingEvents && this.pendingEvents > 0) {
      return Promise.reject(new OverloadedError(`webhook queue is full (${this.pendingEvents} events waiting); retry later`));
    }
    return new Promise<Committed>((resolve, reject) => {
      const w: Waiting = { records, tag, resolve, reject };
      let g: Group | undefined;
      for (let i = this.queue.length - 1; i >= 0; i--) {
        const q = this.queue[i]!;
        if (q.cluster === cluster && q.fixed === fixed && q.events + n <= this.o.maxEvents) {
          g = q;
          break;
        }
      }
      if (g) {
        g.waiting.push(w);
        g.events += n;
      } else this.queue.push({ cluster, fixed, waiting: [w], events: n });
      this.pendingEvents += n;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.o.maxInFlight && this.queue.length > 0) {
      const g = this.queue.shift()!;
      this.pendingEvents -= g.events;
      this.inFlight++;
      const records = g.waiting.length === 1 ? g.waiting[0]!.records : g.waiting.flatMap((w) => w.records);
      this.sink.submit({ source: `webhook:${g.cluster}`, cluster: g.cluster, clusterFixed: g.fixed, records }).then(
        (o) => {
          this.done();
          for (const w of g.waiting) {
            const bad = g.waiting.length === 1 ? o.bad : o.bad.filter((b) => b.where.startsWith(w.tag));
            w.resolve({ stored: o.stored, duplicates: o.duplicates, requests: g.waiting.length, bad });
          }
        },
        (e) => {
          this.done();
          for (const w of g.waiting) w.reject(e);
        },
      );
    }
  }

  private done(): void {
    this.inFlight--;
    this.flush();
  }
}
