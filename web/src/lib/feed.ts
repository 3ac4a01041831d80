import { token, type AlertRow } from './api.js';

/**
 * The live alert feed (/api/v1/alerts/stream) with resume: it remembers the highest alert id it has handed on and
 * reconnects with after=<that id>, so the server replays exactly what was missed. An id at or below it is never
 * handed on again: no alert is lost or shown twice across a dropped connection or a server restart.
 * Alerts are handed on in batches (at most every 100 ms), so a burst of thousands a second costs one render each.
 */

export type FeedState = 'connecting' | 'live' | 'reconnecting' | 'closed';

export interface FeedOptions {
  severity?: string;
  rules?: string[];
  /** Resume point: the highest id already shown (from the REST page loaded first). */
  after: number;
  onAlerts: (batch: AlertRow[]) => void;
  onState: (s: FeedState, detail?: string) => void;
  flushMs?: number;
}

const b64url = (s: string) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(s)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

export class AlertFeed {
  private ws: WebSocket | undefined;
  private lastId: number;
  private pending: AlertRow[] = [];
  private flushTimer: number | undefined;
  private retryTimer: number | undefined;
  private retries = 0;
  private stopped = false;

  constructor(private readonly o: FeedOptions) {
    this.lastId = o.after;
    this.connect();
  }

  get resumeAfter(): number {
    return this.lastId;
  }

  private url(): string {
    const u = new URL('/api/v1/alerts/stream', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.o.severity) u.searchParams.set('severity', this.o.severity);
    if (this.o.rules?.length) u.searchParams.set('rule', this.o.rules.join(','));
    u.searchParams.set('after', String(this.lastId));
    return u.toString();
  }

  private connect(): void {
    if (this.stopped) return;
    this.o.onState(this.retries === 0 ? 'connecting' : 'reconnecting');
    const t = token.get();
    // The token travels as a subprotocol, never in the URL (see the README's Security model).
    const ws = new WebSocket(this.url(), t ? ['kaudit.v1', `kaudit.bearer.${b64url(t)}`] : ['kaudit.v1']);
    this.ws = ws;
    ws.onopen = () => {
      this.retries = 0;
      this.o.onState('live');
    };
    ws.onmessage = (m) => {
      let a: AlertRow;
      try {
        a = JSON.parse(String(m.data)) as AlertRow;
      } catch {
        return;
      }
      if (typeof a.id !== 'number' || a.id <= this.lastId) return;
      this.lastId = a.id;
      this.pending.push(a);
      this.flushTimer ??= window.setTimeout(() => this.flush(), this.o.flushMs ?? 100);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.flush();
      if (this.stopped) return;
      // 4008: too slow; resume at once. Otherwise back off (0.25 s doubling to 5 s) while the server is away.
      const delay = ev.code === 4008 ? 0 : Math.min(5000, 250 * 2 ** this.retries);
      this.retries++;
      this.o.onState('reconnecting', ev.reason || (ev.code === 1006 ? 'connection lost' : `closed (${ev.code})`));
      this.retryTimer = window.setTimeout(() => this.connect(), delay);
    };
  }

  private flush(): void {
    if (this.flushTimer !== undefined) window.clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.o.onAlerts(batch);
  }

  close(): void {
    this.stopped = true;
    if (this.retryTimer !== undefined) window.clearTimeout(this.retryTimer);
    this.flush();
    this.ws?.close(1000);
    this.o.onState('closed');
  }
}
