import { log } from '../log.js';
import type { Metrics } from '../metrics.js';
import { FAULT_ADVICE, innerCause, storeFaultOf, type StoreFault } from '../store/write-error.js';

export interface WriteHealthOptions {
  /** The store's path, for the messages. */
  path: string;
  /** A batch-sized write that resolves when the store can write again (WriterThread.probeWrite). */
  probe: () => Promise<void>;
  metrics?: Metrics;
  /** How often the probe runs while writes fail (default 2 s). */
  probeIntervalMs?: number;
}

interface Failing {
  fault: StoreFault;
  code: string;
  message: string;
  since: number;
  batches: number;
}

/**
 * Whether the store can write, as the pipeline's batches (and, while they fail, a probe) find it. `kaudit serve`'s
 * /readyz reports not ready while it cannot, so that a load balancer or kubelet probe takes the node out; a node taken
 * out gets no traffic that could show it has recovered, so the probe writes a batch-sized row every few seconds until
 * one commits. One line when writes start failing and one when they work again; the batches in between count in
 * kaudit_store_write_failures_total{fault} (each also has its rate-limited line from the pipeline).
 */
export class WriteHealth {
  private failing: Failing | undefined;
  private timer: NodeJS.Timeout | undefined;
  private probing = false;
  private stopped = false;
  private readonly failures;

  constructor(private readonly o: WriteHealthOptions) {
    const m = o.metrics;
    this.failures = m?.counter(
      'kaudit_store_write_failures_total',
      'Batches (and write probes) the store could not write, by fault: full, io, readonly, busy, corrupt, cannot-open',
    );
    m?.collect('kaudit_store_writable', '1 while the store writes, 0 while its writes fail (see /readyz)', () => [{ value: this.failing ? 0 : 1 }]);
  }

  /** Why the store cannot write now (for /readyz), or undefined while it can. */
  get problem(): string | undefined {
    const f = this.failing;
    if (!f) return undefined;
    return `store ${this.o.path} cannot write since ${new Date(f.since).toISOString()}: ${f.fault} (${f.code}: ${f.message}); ${FAULT_ADVICE[f.fault]}. Batches are refused meanwhile (webhook 500, tails and Kafka retry) and kaudit resumes by itself`;
  }

  /** A batch committed: writes work. */
  ok(): void {
    const f = this.failing;
    if (!f) return;
    this.failing = undefined;
    this.stopProbing();
    log.info(
      `store ${this.o.path} writes again after ${((Date.now() - f.since) / 1000).toFixed(1)} s (${f.batches} batches or probes failed meanwhile and were retried or refused)`,
    );
  }

  /** A batch failed: when the store's write is what failed, not ready until a write succeeds. */
  failed(e: unknown): void {
    const fault = storeFaultOf(e);
    if (!fault) return;
    this.failures?.inc({ fault });
    const code = String((e as { code?: unknown }).code ?? fault);
    const message = innerCause((e as Error).message);
    if (this.failing) {
      this.failing.batches++;
      return;
    }
    this.failing = { fault, code, message, since: Date.now(), batches: 1 };
    log.error(`${this.problem}`);
    this.startProbing();
  }

  stop(): void {
    this.stopped = true;
    this.stopProbing();
  }

  private startProbing(): void {
    if (this.stopped || this.timer) return;
    this.timer = setInterval(() => void this.probeOnce(), this.o.probeIntervalMs ?? 2000);
    this.timer.unref();
  }

  private stopProbing(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async probeOnce(): Promise<void> {
    if (this.probing || !this.failing) return;
    this.probing = true;
    try {
      await this.o.probe();
      this.ok();
    } catch (e) {
      this.failed(e);
    } finally {
      this.probing = false;
    }
  }
}
