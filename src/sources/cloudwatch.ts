import { createRequire } from 'node:module';
import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { log } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { BatchSink, RawRecord } from '../pipeline/pipeline.js';
import { OverloadedError } from '../errors.js';

const require = createRequire(import.meta.url);
/** The SDK, loaded when a CloudWatch source starts (it costs ~100 ms that every other command would pay). */
function sdk(): typeof import('@aws-sdk/client-cloudwatch-logs') {
  return require('@aws-sdk/client-cloudwatch-logs') as typeof import('@aws-sdk/client-cloudwatch-logs');
}

/**
 * EKS control-plane audit logs from CloudWatch Logs: follows every `kube-apiserver-audit-*` stream of a cluster's log
 * group (`/aws/eks/CLUSTER/cluster`) with GetLogEvents, from the head of a new stream, and hands each page to the
 * pipeline as raw records in the EKS envelope (the pipeline unwraps them). Each stream's position (GetLogEvents'
 * forward token, and the last event time as a fallback) is committed with the page's events, so a restart, even after
 * SIGKILL, re-reads nothing committed and skips nothing: a page whose commit did not happen is read again and its
 * events are recognised by their (cluster, auditID, stage) key.
 *
 * Credentials: the AWS SDK's standard chain (environment, shared config and SSO, web identity for IRSA / EKS Pod
 * Identity, instance or container roles). Permissions needed: logs:DescribeLogStreams and logs:GetLogEvents on the
 * log group (see README).
 */
export interface CloudWatchSourceOptions {
  logGroup: string;
  /** Cluster for the events (default: from the log group name, `/aws/eks/NAME/cluster`). */
  cluster?: string;
  region?: string;
  /** Endpoint override: a VPC interface endpoint, or a local CloudWatch Logs API for tests. */
  endpoint?: string;
  /** Streams followed: those whose name starts with this (default `kube-apiserver-audit`). */
  streamPrefix?: string;
  /** Pause between polls once every stream is read to its end (default 5 s). */
  pollMs?: number;
  /** Most events per GetLogEvents page (default 5000; AWS allows up to 10,000). */
  pageSize?: number;
  sink: BatchSink & { readonly overloaded?: boolean };
  /** Where committed positions are read from at start. */
  positions: { position(source: string): Promise<string | undefined> };
  metrics?: Metrics;
  /** A client to use instead of one made from region/endpoint (tests). */
  client?: CloudWatchLogsClient;
}

interface StreamPosition {
  /** GetLogEvents' nextForwardToken after the last committed page. */
  token?: string;
  /** Time of the last committed event (ms): where to start again if the token is refused. */
  ts?: number;
}

export class CloudWatchSource {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private client: CloudWatchLogsClient | undefined;
  private readonly positions = new Map<string, StreamPosition>();
  readonly stats = { pages: 0, events: 0, polls: 0, errors: 0 };
  private lastError: string | undefined;
  private readonly prefix: string;
  private readonly pollMs: number;
  private readonly pageSize: number;
  private readonly counters;

  constructor(private readonly o: CloudWatchSourceOptions) {
    this.prefix = o.streamPrefix ?? 'kube-apiserver-audit';
    this.pollMs = o.pollMs ?? 5000;
    this.pageSize = o.pageSize ?? 5000;
    const m = o.metrics;
    this.counters = m
      ? {
          events: m.counter('kaudit_cloudwatch_events_read_total', 'CloudWatch Logs events read, by log group'),
          errors: m.counter('kaudit_cloudwatch_errors_total', 'CloudWatch Logs API calls that failed (retried), by log group'),
        }
      : undefined;
  }

  /** The position source id of a stream (also the key its position is committed under). */
  sourceOf(stream: string): string {
    return `cloudwatch:${this.o.logGroup}/${stream}`;
  }

  start(): void {
    const { CloudWatchLogsClient } = sdk();
    this.client =
      this.o.client ??
      new CloudWatchLogsClient({
        ...(this.o.region ? { region: this.o.region } : {}),
        ...(this.o.endpoint ? { endpoint: this.o.endpoint } : {}),
        maxAttempts: 5,
      });
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    if (!this.o.client) this.client?.destroy();
  }

  /** The last API error, while the source cannot read (for /readyz-style reporting). */
  get problem(): string | undefined {
    return this.lastError;
  }

  private async run(): Promise<void> {
    let backoff = 1000;
    while (!this.stopped) {
      try {
        this.stats.polls++;
        let busy = false;
        for (const stream of await this.streams()) {
          if (this.stopped) break;
          if (await this.readStream(stream)) busy = true;
        }
        this.lastError = undefined;
        backoff = 1000;
        if (!busy) await this.sleep(this.pollMs);
      } catch (e) {
        this.stats.errors++;
        this.counters?.errors.inc({ log_group: this.o.logGroup });
        const msg = `CloudWatch Logs ${this.o.logGroup}: ${(e as Error).name}: ${(e as Error).message}`;
        this.lastError = msg;
        log.warn(`${msg}; retrying in ${backoff / 1000} s`, `cloudwatch:${this.o.logGroup}`);
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, 60_000);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  /** The audit streams of the log group (all pages). */
  private async streams(): Promise<string[]> {
    const { DescribeLogStreamsCommand } = sdk();
    const out: string[] = [];
    let nextToken: string | undefined;
    do {
      const r = await this.client!.send(new DescribeLogStreamsCommand({ logGroupName: this.o.logGroup, logStreamNamePrefix: this.prefix, nextToken }));
      for (const s of r.logStreams ?? []) if (s.logStreamName) out.push(s.logStreamName);
      nextToken = r.nextToken;
    } while (nextToken && !this.stopped);
    return out;
  }

  private async positionOf(stream: string): Promise<StreamPosition> {
    let p = this.positions.get(stream);
    if (!p) {
      const saved = await this.o.positions.position(this.sourceOf(stream));
      p = {};
      if (saved) {
        try {
          const v = JSON.parse(saved) as StreamPosition;
          p = { token: typeof v.token === 'string' ? v.token : undefined, ts: typeof v.ts === 'number' ? v.ts : undefined };
        } catch {
          log.warn(`CloudWatch Logs ${this.o.logGroup}/${stream}: saved position is not readable; reading the stream from its head (duplicates are skipped)`);
        }
      }
      this.positions.set(stream, p);
    }
    return p;
  }

  /** Reads one stream to its current end, a page a batch. Returns true when it read anything. */
  private async readStream(stream: string): Promise<boolean> {
    const { GetLogEventsCommand } = sdk();
    const pos = await this.positionOf(stream);
    let any = false;
    while (!this.stopped) {
      let r;
      try {
        r = await this.client!.send(
          new GetLogEventsCommand({
            logGroupName: this.o.logGroup,
            logStreamName: stream,
            startFromHead: true,
            limit: this.pageSize,
            ...(pos.token ? { nextToken: pos.token } : pos.ts !== undefined ? { startTime: pos.ts } : {}),
          }),
        );
      } catch (e) {
        if (pos.token && (e as Error).name === 'InvalidParameterException') {
          // An expired or foreign token: start again at the last committed event's time (its events are skipped as
          // duplicates).
          log.warn(
            `CloudWatch Logs ${this.o.logGroup}/${stream}: position token refused (${(e as Error).message}); reading again from ${pos.ts !== undefined ? new Date(pos.ts).toISOString() : 'the head'}`,
          );
          pos.token = undefined;
          continue;
        }
        throw e;
      }
      const events = r.events ?? [];
      const next = r.nextForwardToken;
      if (events.length === 0) {
        // At the end: AWS answers the token it was given. Keep the new one in memory; it is committed with the next
        // page that has events (an empty page re-read after a restart costs one call).
        if (next) pos.token = next;
        return any;
      }
      any = true;
      const records: RawRecord[] = [];
      let ts = pos.ts;
      for (const e of events) {
        if (typeof e.message !== 'string') continue;
        records.push({
          value: { logGroupName: this.o.logGroup, logStreamName: stream, timestamp: e.timestamp ?? 0, message: e.message },
          where: `${this.o.logGroup}/${stream}@${e.timestamp ?? '?'}`,
        });
        if (e.timestamp !== undefined) ts = e.timestamp;
      }
      const position = JSON.stringify({ token: next, ts } satisfies StreamPosition);
      await this.submit(stream, records, position);
      pos.token = next;
      pos.ts = ts;
      this.stats.pages++;
      this.stats.events += records.length;
      this.counters?.events.inc({ log_group: this.o.logGroup }, records.length);
      if (!next) return any;
    }
    return any;
  }

  /** Hands a page to the pipeline, waiting while it is overloaded; resolves once committed. */
  private async submit(stream: string, records: RawRecord[], position: string): Promise<void> {
    const source = this.sourceOf(stream);
    for (;;) {
      try {
        await this.o.sink.submit({
          source,
          cluster: this.o.cluster ?? 'default',
          records,
          format: 'eks',
          // A configured cluster wins; otherwise the envelope names it from the log group.
          clusterFixed: this.o.cluster !== undefined,
          checkpoint: { source, position },
        });
        return;
      } catch (e) {
        if (!(e instanceof OverloadedError) || this.stopped) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}
