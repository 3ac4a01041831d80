import type { WebSocket } from 'ws';
import { SEVERITIES, severityRank, type Alert, type Severity } from '../detect/alert.js';
import { log } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { AlertBus } from '../pipeline/alert-bus.js';
import type { AlertFilter } from '../store/queries.js';
import type { StoreReader } from '../store/store.js';

/**
 * The live alert feed's fan-out. One bus subscription for all clients; each alert is serialised once and sent to
 * every client whose filter it passes. A client may resume: it first gets the stored alerts after the id it names,
 * then live ones, with no gap and no duplicate (it is subscribed before the replay starts, live alerts that arrive
 * during the replay wait in a bounded queue, and nothing with an id at or below the last one sent is sent again).
 *
 * Bounded per client: alerts go to the socket while its unsent bytes (ws.bufferedAmount) stay under
 * `maxBufferedBytes`; beyond that they wait in a queue of at most `maxQueuedAlerts`. A client whose queue overflows,
 * or whose socket does not drain for `drainTimeoutMs`, is closed with code 4008 and a reason naming the id to resume
 * after. The bus listener never waits for a client, so a slow client cannot slow ingest or grow memory.
 */

export interface FeedFilter {
  minSeverity?: Severity;
  rules?: string[];
  cluster?: string;
  namespace?: string;
}

export interface HubOptions {
  /** Ping interval; a client that has not answered the previous ping is terminated (default 30 s). */
  heartbeatMs?: number;
  /** Unsent bytes a client may have queued before it is closed as too slow (default 4 MiB). */
  maxBufferedBytes?: number;
  /** Live alerts held for a client while its replay runs (default 10,000). */
  maxQueuedAlerts?: number;
  /** Stored alerts read per replay query (default 500). */
  replayPageSize?: number;
  /** How long a replay may wait for a client to drain its socket before it is closed as too slow (default 10 s). */
  drainTimeoutMs?: number;
  /** After a close frame, how long before the socket is destroyed (default 30 s). */
  closeTimeoutMs?: number;
}

/** Close codes (4000-4999 are the application's). */
export const CLOSE_TOO_SLOW = 4008;
export const CLOSE_SHUTDOWN = 1001;

/** The fields an alert has on the feed, the same whether it was replayed from the store or raised live. */
export interface FeedAlert {
  id: number;
  rule: string;
  title: string;
  severity: Severity;
  tags: string[];
  summary: string;
  cluster: string;
  auditID: string;
  stage: string;
  time: string;
  user: string;
  sourceIP: string;
  verb: string;
  objectRef: Alert['objectRef'];
  details?: Record<string, unknown>;
}

export function feedAlert(a: Alert & { id?: number }): FeedAlert {
  const out: FeedAlert = {
    id: a.id ?? 0,
    rule: a.rule,
    title: a.title,
    severity: a.severity,
    tags: a.tags ?? [],
    summary: a.summary,
    cluster: a.cluster,
    auditID: a.auditID,
    stage: a.stage,
    time: a.time,
    user: a.user,
    sourceIP: a.sourceIP,
    verb: a.verb,
    objectRef: a.objectRef ?? {},
  };
  if (a.details !== undefined) out.details = a.details;
  return out;
}

export function matches(f: FeedFilter, a: Alert): boolean {
  if (f.minSeverity && severityRank(a.severity) < severityRank(f.minSeverity)) return false;
  if (f.rules && f.rules.length > 0 && !f.rules.includes(a.rule)) return false;
  if (f.cluster !== undefined && a.cluster !== f.cluster) return false;
  if (f.namespace !== undefined && (a.objectRef?.namespace ?? '') !== f.namespace) return false;
  return true;
}

interface Client {
  ws: WebSocket;
  filter: FeedFilter;
  /** Highest id handed to the socket: the resume point named when the client is closed. */
  lastSent: number;
  /** Highest id sent or queued: live alerts at or below it are not queued again. */
  lastQueued: number;
  /** Alerts waiting for the socket (or for the replay to end), oldest first; at most maxQueuedAlerts. */
  queue: { id: number; text: string }[];
  replaying: boolean;
  /** Set while the queue waits for the socket to drain. */
  drainTimer: NodeJS.Timeout | undefined;
  blockedSince: number;
  alive: boolean;
  closing: boolean;
}

export class AlertHub {
  private clients = new Set<Client>();
  private unsubscribe: () => void;
  private heartbeat: NodeJS.Timeout;
  private readonly o: Required<HubOptions>;
  private readonly counters;
  private closed = false;

  constructor(
    bus: AlertBus,
    private readonly store: StoreReader,
    metrics?: Metrics,
    opts: HubOptions = {},
  ) {
    this.o = {
      heartbeatMs: opts.heartbeatMs ?? 30_000,
      maxBufferedBytes: opts.maxBufferedBytes ?? 4 * 1024 * 1024,
      maxQueuedAlerts: opts.maxQueuedAlerts ?? 10_000,
      replayPageSize: opts.replayPageSize ?? 500,
      drainTimeoutMs: opts.drainTimeoutMs ?? 10_000,
      closeTimeoutMs: opts.closeTimeoutMs ?? 30_000,
    };
    this.counters = metrics
      ? {
          sent: metrics.counter('kaudit_feed_alerts_sent_total', 'Alerts sent to alert feed clients'),
          replayed: metrics.counter('kaudit_feed_alerts_replayed_total', 'Stored alerts sent to resuming alert feed clients'),
          closed: metrics.counter('kaudit_feed_clients_closed_total', 'Alert feed clients closed by the server, by reason (slow, dead, shutdown)'),
        }
      : undefined;
    metrics?.collect('kaudit_feed_clients', 'Connected alert feed clients', () => [{ value: this.clients.size }]);
    this.unsubscribe = bus.subscribe((alerts) => this.publish(alerts));
    this.heartbeat = setInterval(() => this.beat(), this.o.heartbeatMs);
    this.heartbeat.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /**
   * Takes over an open socket. With `after`, stored alerts after that id are sent first (oldest first), then live
   * ones; without, live ones from now.
   */
  add(ws: WebSocket, filter: FeedFilter, after?: number): void {
    if (this.closed) {
      ws.close(CLOSE_SHUTDOWN, 'server shutting down');
      return;
    }
    const start = after ?? 0;
    const c: Client = {
      ws,
      filter,
      lastSent: start,
      lastQueued: start,
      queue: [],
      // A live-only client waits, its live alerts queued, until the store says where "now" is (below).
      replaying: true,
      drainTimer: undefined,
      blockedSince: 0,
      alive: true,
      closing: false,
    };
    this.clients.add(c);
    const gone = () => {
      this.clients.delete(c);
      this.stopDrain(c);
      c.queue = [];
    };
    ws.on('pong', () => (c.alive = true));
    ws.on('close', gone);
    ws.on('error', gone);
    // Clients only listen; anything they send is ignored (but read, so their frames do not pile up).
    ws.on('message', () => undefined);
    if (after !== undefined) void this.replay(c, after);
    // A live-only client starts at the newest stored alert, so its resume point is right even before its first alert;
    // anything committed after that id (while the store answered) is replayed before it goes live.
    else
      void this.store.latestAlertId().then(
        (latest) => {
          c.lastSent = Math.max(c.lastSent, latest);
          return this.replay(c, latest);
        },
        (e: Error) => {
          log.error(`alert feed: the newest alert id could not be read: ${e.message}`, 'feed-replay');
          ws.close(CLOSE_SHUTDOWN, 'store unavailable');
        },
      );
  }

  private publish(alerts: readonly Alert[]): void {
    if (this.clients.size === 0) return;
    const json: (string | undefined)[] = new Array(alerts.length);
    for (const c of this.clients) {
      if (c.closing) continue;
      for (let i = 0; i < alerts.length; i++) {
        const a = alerts[i]!;
        const id = a.id ?? 0;
        if (id <= c.lastQueued || !matches(c.filter, a)) continue;
        if (c.queue.length >= this.o.maxQueuedAlerts) {
          this.tooSlow(c);
          break;
        }
        c.queue.push({ id, text: (json[i] ??= JSON.stringify(feedAlert(a))) });
        c.lastQueued = id;
      }
      if (!c.closing && !c.replaying) this.pump(c);
    }
  }

  /** Hands queued alerts to the socket while its unsent bytes stay under the bound; polls until it drains. */
  private pump(c: Client): void {
    if (c.closing || c.ws.readyState !== c.ws.OPEN) return;
    const q = c.queue;
    let n = 0;
    while (n < q.length && c.ws.bufferedAmount + q[n]!.text.length <= this.o.maxBufferedBytes) {
      const e = q[n++]!;
      c.ws.send(e.text);
      c.lastSent = e.id;
    }
    if (n > 0) {
      q.splice(0, n);
      this.counters?.sent.inc(undefined, n);
    }
    if (q.length === 0) {
      this.stopDrain(c);
      c.blockedSince = 0;
      return;
    }
    if (c.blockedSince === 0 || n > 0) c.blockedSince = Date.now();
    else if (Date.now() - c.blockedSince > this.o.drainTimeoutMs) return this.tooSlow(c);
    if (!c.drainTimer) {
      c.drainTimer = setTimeout(() => {
        c.drainTimer = undefined;
        this.pump(c);
      }, 10);
    }
  }

  private stopDrain(c: Client): void {
    if (c.drainTimer) clearTimeout(c.drainTimer);
    c.drainTimer = undefined;
  }

  private async replay(c: Client, after: number): Promise<void> {
    const f: AlertFilter = { minSeverity: c.filter.minSeverity, rule: c.filter.rules, cluster: c.filter.cluster, namespace: c.filter.namespace };
    try {
      let from = after;
      for (;;) {
        if (c.closing || c.ws.readyState !== c.ws.OPEN) return;
        const rows = await this.store.alertsAfter({ ...f, afterId: from }, this.o.replayPageSize);
        for (const r of rows) {
          const text = JSON.stringify(feedAlert(r));
          // The replay goes at the client's pace: wait for the socket, close only if it does not drain at all.
          if (c.ws.bufferedAmount + text.length > this.o.maxBufferedBytes && !(await this.drained(c, this.o.maxBufferedBytes - text.length)))
            return this.tooSlow(c);
          if (c.closing || c.ws.readyState !== c.ws.OPEN) return;
          c.ws.send(text);
          c.lastSent = r.id;
          this.counters?.replayed.inc();
          from = r.id;
        }
        if (rows.length < this.o.replayPageSize) break;
        // Between pages, let live alerts in (they queue) and the socket drain.
        if (!(await this.drained(c, this.o.maxBufferedBytes / 4))) return this.tooSlow(c);
      }
      // Go live, synchronously after the last query: what arrived meanwhile, minus what the replay already sent.
      c.replaying = false;
      c.queue = c.queue.filter((e) => e.id > c.lastSent);
      if (c.lastQueued < c.lastSent) c.lastQueued = c.lastSent;
      this.pump(c);
    } catch (e) {
      log.error(`alert feed replay after id ${after} failed: ${(e as Error).message}`, 'feed-replay');
      if (!c.closing) this.closeClient(c, 1011, `replay failed; resume with after=${c.lastSent}`);
    }
  }

  /** Waits until the socket's unsent bytes are at most `low`; false if that takes over drainTimeoutMs. */
  private async drained(c: Client, low: number): Promise<boolean> {
    const until = Date.now() + this.o.drainTimeoutMs;
    while (c.ws.bufferedAmount > low) {
      if (Date.now() > until || c.ws.readyState !== c.ws.OPEN || c.closing) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  private tooSlow(c: Client): void {
    if (c.closing) return;
    this.counters?.closed.inc({ reason: 'slow' });
    this.closeClient(c, CLOSE_TOO_SLOW, `client too slow, resume with after=${c.lastSent}`);
  }

  private closeClient(c: Client, code: number, reason: string): void {
    c.closing = true;
    c.queue = [];
    this.stopDrain(c);
    try {
      c.ws.close(code, reason);
    } catch {
      c.ws.terminate();
    }
    // The close frame waits behind the unsent data; a peer that never reads it is cut off.
    setTimeout(() => c.ws.terminate(), this.o.closeTimeoutMs).unref();
  }

  private beat(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        this.counters?.closed.inc({ reason: 'dead' });
        this.clients.delete(c);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      try {
        c.ws.ping();
      } catch {
        // A socket closing under us: the close handler removes it.
      }
    }
  }

  /** Unsubscribes from the bus and closes every client (code 1001). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    clearInterval(this.heartbeat);
    for (const c of this.clients) {
      this.counters?.closed.inc({ reason: 'shutdown' });
      c.closing = true;
      this.stopDrain(c);
      try {
        c.ws.close(CLOSE_SHUTDOWN, `server shutting down; resume with after=${c.lastSent}`);
      } catch {
        c.ws.terminate();
      }
      // Long enough for the close frame to go out, short enough not to hold up the server's shutdown.
      setTimeout(() => c.ws.terminate(), 500).unref();
    }
    this.clients.clear();
  }
}

export function isSeverity(s: string): s is Severity {
  return (SEVERITIES as readonly string[]).includes(s);
}
