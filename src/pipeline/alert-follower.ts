import type { Alert } from '../detect/alert.js';
import { log } from '../log.js';
import type { StoreReader } from '../store/store.js';
import type { AlertBus } from './alert-bus.js';

/**
 * A query node's live alerts: the detectors commit alerts to the shared store (OpenSearch) and this node raises none,
 * so its feed follows the store instead of its own pipeline. Alerts are read in commit order after the newest one at
 * the start and published on the node's bus (the WebSocket feed), `pollMs` apart; a client that resumes from an id
 * gets the older ones from the feed's replay, as on any node.
 */
export class AlertFollower {
  private position = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  readonly stats = { published: 0, failures: 0 };

  constructor(private readonly opts: { store: StoreReader; bus: AlertBus; pollMs?: number; batch?: number }) {}

  async start(): Promise<void> {
    this.position = await this.opts.store.latestAlertId();
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.poll().finally(() => this.schedule());
    }, this.opts.pollMs ?? 1000);
  }

  private async poll(): Promise<void> {
    const limit = this.opts.batch ?? 500;
    try {
      for (;;) {
        const rows = await this.opts.store.committedAlertsAfter(this.position, limit);
        if (rows.length === 0 || this.stopped) return;
        this.opts.bus.publish(rows.map((r) => ({ ...(JSON.parse(r.body) as Alert), id: r.id })));
        this.position = rows[rows.length - 1]!.id;
        this.stats.published += rows.length;
        if (rows.length < limit) return;
      }
    } catch (e) {
      this.stats.failures++;
      log.warn(`alert feed: cannot read new alerts from the store: ${(e as Error).message}; will retry`, 'alert-follower');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
