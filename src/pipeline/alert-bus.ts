import type { Alert } from '../detect/alert.js';

/**
 * Committed alerts, in commit order, to whoever listens (the WebSocket hub, the Kafka alert sink). Listeners must not
 * block: each keeps its own bounded buffer.
 */
export class AlertBus {
  private listeners = new Set<(alerts: readonly Alert[]) => void>();

  subscribe(fn: (alerts: readonly Alert[]) => void): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  publish(alerts: readonly Alert[]): void {
    if (alerts.length === 0) return;
    for (const fn of this.listeners) {
      try {
        fn(alerts);
      } catch {
        // One faulty listener must not stop the others or the pipeline.
      }
    }
  }
}
