/**
 * Repeats of one rule for the same identity and object (one group key) within a window of event time are one alert
 * with a count and its first and last time, as the store keeps them: `kaudit detect` prints a loop of identical
 * events as one line, not thousands. A group stays open while each new firing comes within the window of its last
 * one; it is emitted when a later firing (of any group) shows it closed, when too many groups are open, or at the
 * end.
 */
import { severityRank, type Alert } from './alert.js';

export interface GroupedAlert extends Alert {
  /** Firings in the group (1: a single alert). */
  count: number;
  firstTime: string;
  lastTime: string;
  /** auditID of the last firing (`auditID` is the first's). */
  lastAuditID: string;
}

interface Open {
  alert: GroupedAlert;
  lastUs: number;
}

export class AlertGrouper {
  private readonly open = new Map<string, Open>();
  private newest = -Infinity;
  private sinceSweep = 0;
  firings = 0;

  constructor(
    private readonly windowUs: number,
    private readonly emit: (a: GroupedAlert) => void,
    private readonly maxOpen = 100_000,
  ) {}

  add(a: Alert): void {
    this.firings++;
    const t = a.timeMicros;
    if (t > this.newest) this.newest = t;
    const g = this.open.get(a.groupKey);
    if (g && t - g.lastUs <= this.windowUs && t >= g.lastUs - this.windowUs) {
      g.alert.count++;
      if (t > g.lastUs) {
        g.lastUs = t;
        g.alert.lastTime = a.time;
        g.alert.lastAuditID = a.auditID;
      }
      // The group reports its worst firing.
      if (severityRank(a.severity) > severityRank(g.alert.severity)) g.alert.severity = a.severity;
      return;
    }
    if (g) this.close(a.groupKey, g);
    this.open.set(a.groupKey, { alert: { ...a, count: 1, firstTime: a.time, lastTime: a.time, lastAuditID: a.auditID }, lastUs: t });
    if (this.open.size > this.maxOpen) {
      const [k, oldest] = this.open.entries().next().value as [string, Open];
      this.close(k, oldest);
    }
    if (++this.sinceSweep >= 1024) this.sweep();
  }

  /** Emits the groups no firing can join any more (their last firing is more than a window before the newest). */
  sweep(): void {
    this.sinceSweep = 0;
    for (const [k, g] of this.open) if (this.newest - g.lastUs > this.windowUs) this.close(k, g);
  }

  /** Emits every open group, oldest first. */
  flush(): void {
    for (const [k, g] of [...this.open].sort((x, y) => x[1].alert.timeMicros - y[1].alert.timeMicros)) this.close(k, g);
  }

  private close(k: string, g: Open): void {
    this.open.delete(k);
    this.emit(g.alert);
  }
}
