import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isObject } from '../config/values.js';
import { OverloadedError } from '../errors.js';
import { log } from '../log.js';
import type { BadRecord, BatchSink, RawRecord } from '../pipeline/pipeline.js';
import { CLUSTER_NAME, type Principal } from './auth.js';
import type { ApiContext } from './context.js';

/**
 * The audit webhook backend: what kube-apiserver's `--audit-webhook-config-file` sends. The apiserver POSTs an
 * `EventList` (application/json) of up to 400 events to exactly the configured URL, several batches in flight, and
 * retries anything but 200-206 with backoff. So: 200 only once the batch is committed (nothing acknowledged can be
 * lost), 503 with Retry-After at once when the pipeline is full (the apiserver's retry then buffers), and 4xx for
 * bodies that no retry can fix, each with a message saying what is wrong.
 *
 * The body is split while it streams in: each event's bytes become its own string (kept as the stored raw form, so
 * nothing is serialised again) and are parsed with JSON.parse; the request body is never held whole beside them.
 */

/** A refusal with an HTTP status, a message for the sender, and the metric reason. */
export class WebhookError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'WebhookError';
  }
}

const MAX_DEPTH = 512;
const WS = new Uint8Array(256);
WS[0x20] = WS[0x0a] = WS[0x0d] = WS[0x09] = 1;
const ITEMS = Buffer.from('items');

/** One event of a body: its JSON text and the index it had in the document. */
export interface BodyItem {
  /** The item's bytes: a view of the body's chunk when it lies in one (off the JS heap until the pipeline reads it). */
  bytes: Buffer;
  index: number;
}

/**
 * Splits a JSON body, chunk by chunk, into the events it holds: the items of an EventList (`{"items":[...]}`), the
 * elements of an array, or one Event object. It checks the structure (brackets, strings, one top-level value); the
 * items' own syntax is checked by JSON.parse afterwards. Memory: the item in progress and what was emitted.
 */
export class BodySplitter {
  private mode: 'array' | 'object' | undefined;
  private stack: number[] = [];
  /** Brackets open inside an item beyond MAX_DEPTH (counted, not kept). */
  private deeper = 0;
  private inString = false;
  private pendingEscape = false;
  private done = false;
  /** Depth at which items are values: 1 in a top-level array, 2 inside an EventList's items array. */
  private itemLevel = -1;
  private itemOpen = false;
  private itemParts: Buffer[] = [];
  private itemsSeen = 0;
  private commaPending = false;
  // Object mode: the envelope is the top object without the items array's content (kind, apiVersion, metadata).
  private envelopeParts: Buffer[] = [];
  private envelopeOpen = false;
  private expectKey = false;
  private keyOpen = false;
  private keyParts: Buffer[] = [];
  private lastKeyIsItems = false;
  private awaitingValue = false;
  private itemsFound = false;
  private offset = 0;

  constructor(private readonly emit: (item: BodyItem) => void) {}

  private fail(msg: string, at: number): never {
    throw new WebhookError(400, `malformed JSON body at byte ${this.offset + at}: ${msg}`, 'malformed');
  }

  push(buf: Buffer): void {
    const n = buf.length;
    let i = 0;
    let itemFrom = this.itemOpen ? 0 : -1;
    let envFrom = this.envelopeOpen ? 0 : -1;
    let keyFrom = this.keyOpen ? 0 : -1;
    const stack = this.stack;
    while (i < n) {
      if (this.inString) {
        // The string's closing quote: the next quote not escaped by an odd run of backslashes. Measured on audit
        // events, a native search per quote beats a byte loop (1.3 against 1.7 ns a byte).
        if (this.pendingEscape) i++;
        const from = i;
        let q = -1;
        while (i < n) {
          const at = buf.indexOf(0x22, i);
          if (at < 0) break;
          let k = at - 1;
          while (k >= from && buf[k] === 0x5c) k--;
          if (((at - 1 - k) & 1) === 0) {
            q = at;
            break;
          }
          i = at + 1;
        }
        if (q < 0) {
          // The string goes on in the next chunk; an odd run of backslashes at the end escapes its first byte.
          let k = n - 1;
          while (k >= from && buf[k] === 0x5c) k--;
          this.pendingEscape = ((n - 1 - k) & 1) === 1;
          i = n;
          break;
        }
        this.pendingEscape = false;
        i = q + 1;
        this.inString = false;
        if (keyFrom >= 0) {
          this.keyParts.push(buf.subarray(keyFrom, q));
          keyFrom = -1;
          this.keyOpen = false;
          const key = this.keyParts.length === 1 ? this.keyParts[0]! : Buffer.concat(this.keyParts);
          this.keyParts = [];
          this.lastKeyIsItems = key.equals(ITEMS);
          this.expectKey = false;
        }
        continue;
      }
      const depth = stack.length;
      if (depth > this.itemLevel && this.itemLevel > 0) {
        // Inside an item: only strings and brackets matter until it closes.
        const level = this.itemLevel;
        let closed = false;
        while (i < n) {
          const c = buf[i]!;
          if (c === 0x22) {
            this.inString = true;
            i++;
            break;
          }
          if (c === 0x7b || c === 0x5b) {
            // Past MAX_DEPTH an item's brackets are only counted: the item is one event (a request body can nest
            // that deep), and its own parse checks them; the body's other events must not be refused with it.
            if (stack.length >= MAX_DEPTH) this.deeper++;
            else stack.push(c);
          } else if (c === 0x7d || c === 0x5d) {
            if (this.deeper > 0) {
              this.deeper--;
              i++;
              continue;
            }
            const open = stack.pop();
            if (c === 0x7d ? open !== 0x7b : open !== 0x5b) this.fail(`unexpected "${String.fromCharCode(c)}"`, i);
            if (stack.length === level) {
              i++;
              closed = true;
              break;
            }
          }
          i++;
        }
        if (closed || this.inString) continue;
        break;
      }
      const c = buf[i]!;
      if (WS[c]) {
        i++;
        continue;
      }
      if (this.done) this.fail('unexpected data after the end of the JSON document', i);
      if (depth === 0 && c !== 0x7b && c !== 0x5b) this.fail('the body must be a JSON object (EventList or Event) or an array of events', i);
      if (depth === this.itemLevel && !this.itemOpen && c !== 0x2c && c !== 0x5d) {
        this.itemOpen = true;
        this.commaPending = false;
        itemFrom = i;
      }
      if (this.awaitingValue && depth === 1) {
        // The value of a top-level key starts here; an array under "items" holds the events.
        this.awaitingValue = false;
        if (this.lastKeyIsItems && c === 0x5b) {
          if (this.itemsFound) this.fail('the EventList has two "items" keys', i);
          this.itemsFound = true;
          this.envelopeParts.push(buf.subarray(envFrom, i + 1));
          this.envelopeOpen = false;
          envFrom = -1;
          stack.push(c);
          this.itemLevel = 2;
          i++;
          continue;
        }
      }
      switch (c) {
        case 0x22: // "
          this.inString = true;
          if (depth === 1 && this.mode === 'object' && this.expectKey) {
            this.keyOpen = true;
            keyFrom = i + 1;
          }
          break;
        case 0x7b: // {
        case 0x5b: // [
          if (depth === 0) {
            this.mode = c === 0x5b ? 'array' : 'object';
            if (c === 0x5b) this.itemLevel = 1;
            else {
              this.envelopeOpen = true;
              envFrom = i;
              this.expectKey = true;
            }
          }
          if (depth >= MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`, i);
          stack.push(c);
          break;
        case 0x7d: // }
        case 0x5d: {
          // ]
          const open = stack.pop();
          if (open === undefined || (c === 0x7d ? open !== 0x7b : open !== 0x5b)) this.fail(`unexpected "${String.fromCharCode(c)}"`, i);
          if (depth === this.itemLevel) {
            // The items array (or the top-level array) closes: its last item ends here.
            if (this.itemOpen) this.endItem(buf, itemFrom, i);
            else if (this.commaPending) this.fail('a comma before "]"', i);
            itemFrom = -1;
            this.itemLevel = -1;
            if (this.mode === 'object') {
              this.envelopeOpen = true;
              envFrom = i;
            }
          }
          if (depth === 1) {
            this.done = true;
            if (this.envelopeOpen) {
              this.envelopeParts.push(buf.subarray(envFrom, i + 1));
              this.envelopeOpen = false;
              envFrom = -1;
            }
          }
          break;
        }
        case 0x2c: // ,
          if (depth === this.itemLevel) {
            if (!this.itemOpen) this.fail('an empty array element', i);
            this.endItem(buf, itemFrom, i);
            itemFrom = -1;
            this.commaPending = true;
          } else if (depth === 1 && this.mode === 'object') this.expectKey = true;
          break;
        case 0x3a: // :
          if (depth === 1 && this.mode === 'object') this.awaitingValue = true;
          break;
      }
      i++;
    }
    if (this.itemOpen && itemFrom >= 0) this.itemParts.push(buf.subarray(itemFrom));
    if (this.envelopeOpen && envFrom >= 0) this.envelopeParts.push(buf.subarray(envFrom));
    if (this.keyOpen && keyFrom >= 0) this.keyParts.push(buf.subarray(keyFrom));
    this.offset += n;
  }

  private endItem(buf: Buffer, from: number, to: number): void {
    let bytes: Buffer;
    if (this.itemParts.length === 0) bytes = buf.subarray(from, to);
    else {
      if (to > from) this.itemParts.push(buf.subarray(from, to));
      bytes = Buffer.concat(this.itemParts);
      this.itemParts = [];
    }
    // Whitespace between the item and its comma or bracket is not the item's: its stored line ends where it does (and
    // a one-line item followed by a line break stays a line, stored as it came).
    let end = bytes.length;
    while (end > 0 && WS[bytes[end - 1]!]) end--;
    if (end < bytes.length) bytes = bytes.subarray(0, end);
    this.itemOpen = false;
    this.emit({ bytes, index: this.itemsSeen++ });
  }

  /**
   * Ends the body. For an object body, returns its text without the items array's content (an EventList's kind,
   * apiVersion and metadata with `"items":[]`), or the whole object when it has no items array (an Event).
   */
  end(): { mode: 'array' } | { mode: 'object'; text: string; itemsFound: boolean } {
    if (!this.mode) throw new WebhookError(400, 'empty body: expected an EventList, an Event or an array of events', 'malformed');
    if (!this.done) throw new WebhookError(400, `malformed JSON body: it ends inside ${this.inString ? 'a string' : 'an object or array'} (truncated?)`, 'malformed');
    if (this.mode === 'array') return { mode: 'array' };
    const text = this.envelopeParts.length === 1 ? this.envelopeParts[0]!.toString('utf8') : Buffer.concat(this.envelopeParts).toString('utf8');
    this.envelopeParts = [];
    return { mode: 'object', text, itemsFound: this.itemsFound };
  }

  get count(): number {
    return this.itemsSeen;
  }
}

const API_VERSIONS = new Set(['audit.k8s.io/v1', 'audit.k8s.io/v1beta1']);

/** What the body parser hands the route: the records, ready for the pipeline. */
export interface ParsedBody {
  records: RawRecord[];
  bytes: number;
}

/**
 * Reads a request body as it streams in, splitting it into events. Enforces the byte limit while reading (a body with
 * no Content-Length cannot exceed it either). Events of an EventList lack `kind` and `apiVersion` (the apiserver
 * sets them only on the list): they are given the list's, in the parsed value and in the stored text, so the stored
 * form is the same as the log backend's.
 */
export function readAuditBody(payload: NodeJS.ReadableStream, limit: number, where: string): Promise<ParsedBody> {
  return new Promise<ParsedBody>((resolve, reject) => {
    const records: RawRecord[] = [];
    let bytes = 0;
    let settled = false;
    const splitter = new BodySplitter((item) => records.push(recordOf(item.bytes, where, item.index)));
    const cleanup = () => {
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      payload.removeListener('error', onError);
      payload.removeListener('aborted', onAborted);
      payload.removeListener('close', onClose);
    };
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      // Stop reading: the reply closes the connection, so the rest of the body is never buffered.
      payload.pause();
      reject(e);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limit) return fail(tooLarge(limit, `over ${limit} bytes read`));
      try {
        splitter.push(chunk);
      } catch (e) {
        fail(e);
      }
    };
    const onEnd = () => {
      if (settled) return;
      try {
        const end = splitter.end();
        if (end.mode === 'object') finishObject(end.text, end.itemsFound, records, where);
        settled = true;
        cleanup();
        resolve({ records, bytes });
      } catch (e) {
        fail(e);
      }
    };
    const onError = (e: Error) => fail(new WebhookError(400, `request body could not be read: ${e.message}`, 'aborted'));
    const onAborted = () => fail(new WebhookError(400, 'request aborted by the client before the body was complete', 'aborted'));
    const onClose = () => {
      if (!settled) onAborted();
    };
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onError);
    payload.on('aborted', onAborted);
    payload.on('close', onClose);
  });
}

function tooLarge(limit: number, what: string): WebhookError {
  return new WebhookError(
    413,
    `request body too large (${what}; the limit is webhook.maxBodyBytes = ${limit} bytes). Lower the apiserver's --audit-webhook-batch-max-size or raise the limit.`,
    'too_large',
    { connection: 'close' },
  );
}

/**
 * An event of a body. Its JSON is parsed by the pipeline, like a line of a log file: an item that does not parse is
 * that item's dead letter, not the loss of its batch mates. `where` is made only when asked for.
 */
class ItemRecord implements RawRecord {
  value?: unknown;
  inherit?: string;
  constructor(
    public text: string | Buffer | undefined,
    private readonly base: string,
    private readonly index: number,
  ) {}

  get where(): string {
    return `${this.base} item ${this.index}`;
  }
}

function recordOf(bytes: Buffer, where: string, index: number): RawRecord {
  // The text becomes the stored raw line: it must be one line (a pretty-printed body is stored re-serialised).
  if (bytes.indexOf(10) < 0 && bytes.indexOf(13) < 0) return new ItemRecord(bytes, where, index);
  const r = new ItemRecord(undefined, where, index);
  try {
    r.value = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new WebhookError(400, `malformed JSON: event ${index} of the body does not parse (${(e as Error).message.split('\n')[0]})`, 'malformed');
  }
  return r;
}

/** An object body: an EventList envelope (its items already split off), or one Event. */
function finishObject(text: string, itemsFound: boolean, records: RawRecord[], where: string): void {
  let env: unknown;
  try {
    env = JSON.parse(text);
  } catch (e) {
    throw new WebhookError(400, `malformed JSON body (${(e as Error).message.split('\n')[0]})`, 'malformed');
  }
  if (!isObject(env)) throw new WebhookError(400, 'the body must be a JSON object (EventList or Event) or an array of events', 'malformed');
  const isList = itemsFound || env.kind === 'EventList' || 'items' in env;
  if (!isList) {
    // One Event: already parsed, as the envelope. Stored as sent when it is one line.
    const r = new ItemRecord(text.includes('\n') || text.includes('\r') ? undefined : text, where, 0);
    r.value = env;
    records.push(r);
    return;
  }
  if (env.kind !== undefined && env.kind !== 'EventList') throw new WebhookError(400, `a body with an items array must be kind "EventList", not ${JSON.stringify(env.kind)}`, 'malformed');
  if (!itemsFound && env.items != null) throw new WebhookError(400, 'EventList items must be an array', 'malformed');
  const apiVersion = env.apiVersion;
  if (apiVersion !== undefined && (typeof apiVersion !== 'string' || !API_VERSIONS.has(apiVersion))) {
    throw new WebhookError(400, `EventList apiVersion ${JSON.stringify(apiVersion)} is not audit.k8s.io/v1 or audit.k8s.io/v1beta1; set the apiserver's --audit-webhook-version to one of them`, 'malformed');
  }
  const av = typeof apiVersion === 'string' ? apiVersion : 'audit.k8s.io/v1';
  for (const r of records) r.inherit = av;
}

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
  submit(cluster: string, records: RawRecord[], tag: string): Promise<Committed> {
    const n = records.length;
    if (this.inFlight >= this.o.maxInFlight && this.pendingEvents + n > this.o.maxPendingEvents && this.pendingEvents > 0) {
      return Promise.reject(new OverloadedError(`webhook queue is full (${this.pendingEvents} events waiting); retry later`));
    }
    return new Promise<Committed>((resolve, reject) => {
      const w: Waiting = { records, tag, resolve, reject };
      let g: Group | undefined;
      for (let i = this.queue.length - 1; i >= 0; i--) {
        const q = this.queue[i]!;
        if (q.cluster === cluster && q.events + n <= this.o.maxEvents) {
          g = q;
          break;
        }
      }
      if (g) {
        g.waiting.push(w);
        g.events += n;
      } else this.queue.push({ cluster, waiting: [w], events: n });
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
      this.sink.submit({ source: `webhook:${g.cluster}`, cluster: g.cluster, records }).then(
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

declare module 'fastify' {
  interface FastifyRequest {
    /** The cluster a webhook request writes to (credential binding, else path, else the default). */
    auditCluster?: string;
  }
}

export interface WebhookOptions {
  ctx: ApiContext;
  /** Webhook requests being read or waiting for their commit; past this, 503 (default 64). */
  maxInFlight?: number;
  /**
   * Body bytes admitted and not yet answered (being read, parsed, waiting or committing); a request that would pass
   * this is refused with 503 before its body is read (default: 8 MiB, at least webhook.maxBodyBytes).
   */
  maxBytesInFlight?: number;
  /** Group commit tuning; `false` hands each request to the pipeline as its own batch. */
  coalesce?: CoalescerOptions | false;
}

const RETRY_AFTER_SECONDS = '1';
/** Default admission budget: about 24 apiserver batches of 400 typical events. More only adds parse work and GC. */
const BYTES_IN_FLIGHT = 8 * 1024 * 1024;

/**
 * Cluster precedence: a credential bound to a cluster always writes to that cluster; a path segment naming another
 * cluster is refused (403), naming the same one is fine. An unbound credential (or none, on loopback) writes to the
 * path's cluster, else to the configured default `cluster`.
 */
export function webhookCluster(principal: Principal | undefined, pathCluster: string | undefined, fallback: string): { cluster: string } | { status: 400 | 403; error: string } {
  if (pathCluster !== undefined && !CLUSTER_NAME.test(pathCluster)) {
    return { status: 400, error: `bad cluster name "${pathCluster.slice(0, 80)}" in the path (letters, digits, . _ -; at most 63)` };
  }
  const bound = principal?.cluster;
  if (bound !== undefined) {
    if (pathCluster !== undefined && pathCluster !== bound) {
      return { status: 403, error: `${principal!.name} is bound to cluster "${bound}" and cannot write to cluster "${pathCluster}"` };
    }
    return { cluster: bound };
  }
  return { cluster: pathCluster ?? fallback };
}

export async function webhookRoutes(app: FastifyInstance, opts: WebhookOptions): Promise<void> {
  const { ctx } = opts;
  const limit = ctx.config.webhook.maxBodyBytes;
  const maxInFlight = opts.maxInFlight ?? 64;
  const m = ctx.metrics;
  const rejected = m.counter('kaudit_webhook_rejected_total', 'Webhook requests refused, by reason (content_type, too_large, malformed, overloaded, busy, cluster, error)');
  const received = m.counter('kaudit_webhook_events_received_total', 'Events received in webhook bodies that were handed to the pipeline');
  const bytesIn = m.counter('kaudit_webhook_bytes_total', 'Webhook body bytes read');
  const acked = m.counter('kaudit_webhook_batches_acknowledged_total', 'Webhook batches committed and answered 200');
  const seconds = m.counter('kaudit_webhook_request_seconds_sum', 'Total seconds webhook requests took, receipt to answer');
  const count = m.counter('kaudit_webhook_request_seconds_count', 'Webhook requests answered');
  // Admission happens before a body is read: parsing a body that is then refused would be work thrown away, and under
  // overload that waste collapses throughput (measured: 64 concurrent senders got a fifth of what 8 got).
  const maxBytes = opts.maxBytesInFlight ?? Math.max(BYTES_IN_FLIGHT, limit);
  let inFlight = 0;
  let bytesInFlight = 0;
  m.collect('kaudit_webhook_in_flight', 'Webhook requests being read or waiting for their commit', () => [{ value: inFlight }]);
  m.collect('kaudit_webhook_bytes_in_flight', 'Webhook body bytes admitted and not yet answered', () => [{ value: bytesInFlight }]);
  const counted = new WeakMap<FastifyRequest, number>();
  const coalescer = opts.coalesce === false ? undefined : new WebhookCoalescer(ctx.sink, opts.coalesce);
  if (coalescer) m.collect('kaudit_webhook_pending_events', 'Webhook events waiting to be merged into a pipeline batch', () => [{ value: coalescer.pending }]);

  const refuse = (reply: FastifyReply, status: number, reason: string, error: string, headers: Record<string, string> = {}) => {
    rejected.inc({ reason });
    return reply.code(status).headers(headers).send({ error });
  };

  // Only this plugin's routes: JSON bodies are split as they stream; anything else is refused before it is read.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', (req, payload, done) => {
    readAuditBody(payload, limit, whereOf(req)).then(
      (b) => done(null, b),
      (e) => done(e as Error),
    );
  });
  app.addContentTypeParser('*', (req, _payload, done) => {
    const type = req.headers['content-type'];
    done(new WebhookError(415, `unsupported Content-Type ${JSON.stringify(type ?? '')}: the audit webhook takes application/json (an EventList, an Event or an array of events)`, 'content_type', { connection: 'close' }));
  });

  app.setErrorHandler((err: FastifyError & { reason?: string; headers?: Record<string, string> }, req, reply) => {
    // The body may be unread past the error: close the connection rather than read (and discard) the rest.
    if (err instanceof WebhookError) return refuse(reply, err.statusCode, err.reason, err.message, { connection: 'close', ...err.headers });
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return refuse(reply, 415, 'content_type', 'missing or unsupported Content-Type: the audit webhook takes application/json', { connection: 'close' });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return refuse(reply, 413, 'too_large', tooLarge(limit, 'Content-Length over the limit').message, { connection: 'close' });
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) log.error(`webhook request ${req.id}: ${err.message}`, 'webhook-error');
    return refuse(reply, status, status === 500 ? 'error' : 'malformed', status === 500 ? 'internal error; retry' : err.message);
  });

  const onRequest = async (req: FastifyRequest<{ Params: { cluster?: string } }>, reply: FastifyReply) => {
    const c = webhookCluster(req.principal, req.params.cluster, ctx.config.cluster);
    if ('error' in c) return refuse(reply, c.status, 'cluster', c.error, { connection: 'close' });
    req.auditCluster = c.cluster;
    const len = Number(req.headers['content-length']);
    if (Number.isFinite(len) && len > limit) return refuse(reply, 413, 'too_large', tooLarge(limit, `Content-Length ${len}`).message, { connection: 'close' });
    const enc = req.headers['content-encoding'];
    if (enc !== undefined && enc.toLowerCase() !== 'identity') return refuse(reply, 415, 'content_type', `unsupported Content-Encoding "${enc}": send the body uncompressed`, { connection: 'close' });
    // Refuse before reading the body when it could not be accepted anyway: the apiserver retries after Retry-After.
    // Early 503s keep the connection: Node discards the unread body (bounded by Content-Length, checked above), which
    // is cheaper than the new TLS handshake the sender's retry would otherwise need.
    if (ctx.sink.overloaded === true || coalescer?.full) {
      return refuse(reply, 503, 'overloaded', 'ingest queue is full; retry later', { 'retry-after': RETRY_AFTER_SECONDS });
    }
    if (inFlight >= maxInFlight) return refuse(reply, 503, 'busy', `too many webhook requests in progress (${maxInFlight}); retry later`, { 'retry-after': RETRY_AFTER_SECONDS });
    // A body without Content-Length is reserved at 1 MiB; it is still bounded by webhook.maxBodyBytes while read.
    const reserve = Number.isFinite(len) ? len : 1024 * 1024;
    if (bytesInFlight > 0 && bytesInFlight + reserve > maxBytes) {
      return refuse(reply, 503, 'busy', `webhook is busy (${bytesInFlight} body bytes in progress); retry later`, { 'retry-after': RETRY_AFTER_SECONDS });
    }
    inFlight++;
    bytesInFlight += reserve;
    counted.set(req, reserve);
  };
  const onResponse = async (req: FastifyRequest, reply: FastifyReply) => {
    const reserved = counted.get(req);
    if (reserved !== undefined) {
      counted.delete(req);
      inFlight--;
      bytesInFlight -= reserved;
    }
    seconds.inc(undefined, reply.elapsedTime / 1000);
    count.inc();
  };

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const body = req.body as ParsedBody | undefined;
    if (!body) return refuse(reply, 400, 'malformed', 'empty body: expected an EventList, an Event or an array of events (Content-Type: application/json)');
    const cluster = req.auditCluster!;
    bytesIn.inc(undefined, body.bytes);
    received.inc(undefined, body.records.length);
    try {
      let o: Committed;
      if (coalescer) o = await coalescer.submit(cluster, body.records, whereOf(req) + ' ');
      else {
        const r = await ctx.sink.submit({ source: `webhook:${cluster}`, cluster, records: body.records });
        o = { stored: r.stored, duplicates: r.duplicates, requests: 1, bad: r.bad };
      }
      acked.inc();
      return reply.code(200).send({
        cluster,
        events: body.records.length,
        bad: o.bad.length,
        ...(o.bad.length ? { badRecords: o.bad.slice(0, 10) } : {}),
        stored: o.stored,
        duplicates: o.duplicates,
        requests: o.requests,
      });
    } catch (e) {
      if (e instanceof OverloadedError) {
        return refuse(reply, 503, 'overloaded', 'ingest queue is full; retry later', { 'retry-after': RETRY_AFTER_SECONDS });
      }
      log.error(`webhook batch for cluster ${cluster} (request ${req.id}) was not stored: ${(e as Error).message}`, 'webhook-store');
      return refuse(reply, 500, 'error', 'the batch could not be stored; retry');
    }
  };

  const schema = {
    summary: "kube-apiserver's audit webhook backend: POST an EventList (or one Event, or an array); 200 once committed",
    tags: ['ingest'],
  };
  // A client that goes away releases its admission too (whichever of the two hooks runs first; the other finds nothing).
  const onRequestAbort = async (req: FastifyRequest) => {
    const reserved = counted.get(req);
    if (reserved === undefined) return;
    counted.delete(req);
    inFlight--;
    bytesInFlight -= reserved;
  };
  const routeOpts = { schema, bodyLimit: limit, onRequest, onResponse, onRequestAbort };
  app.post('/audit/webhook', routeOpts as never, handler);
  app.post(
    '/audit/webhook/:cluster',
    { ...routeOpts, schema: { ...schema, params: { type: 'object', properties: { cluster: { type: 'string', pattern: CLUSTER_NAME.source, description: 'cluster the events belong to (a credential bound to a cluster must name that one or none)' } } } } } as never,
    handler,
  );
}

function whereOf(req: FastifyRequest): string {
  return `webhook ${req.auditCluster ?? ''} request ${req.id}`;
}
