import { log } from '../log.js';
import type { StoreReader } from '../store/store.js';
import { AlertBus } from './alert-bus.js';

/**
 * The alerts of a store that several writers share (the fleet store), on a bus: every node's feed then carries every
 * detector's alerts, in the store's commit order, not only the ones its own pipeline raised. Polls the store from the
 * newest settled alert at start; a failed poll is retried at the next (the feed's clients wait, they lose nothing:
 * their resume point is an id of the store).
 */
export class AlertFollower {
  readonly bus = new AlertBus();
  private timer: NodeJS.Timeout | undefined;
  private after: number | undefined;
  private polling = false;
  private failing = false;

  constructor(
    private readonly store: StoreReader,
    private readonly o: { intervalMs?: number; pageSize?: number } = {},
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.o.intervalMs ?? 1000);
    this.timer.unref();
    void this.poll();
  }

  /** One poll: publishes what was committed since the last (in pages). */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      this.after ??= await this.store.latestAlertId();
      const size = this.o.pageSize ?? 500;
      for (;;) {
        const rows = await this.store.alertsAfter({ afterId: this.after }, size);
        if (rows.length === 0) break;
        this.after = rows[rows.length - 1]!.id;
        this.bus.publish(rows);
        if (rows.length < size) break;
      }
      if (this.failing) log.info('alert feed: reading the store again');
      this.failing = false;
    } catch (e) {
      if (!this.failing) log.warn(`alert feed: cannot read the store's alerts (${(e as Error).message}); retrying`, 'alert-follower');
      this.failing = true;
    } finally {
      this.polling = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
