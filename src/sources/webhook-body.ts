import { eventListHeader } from '../events/envelopes/native.js';
import { BodyBuffers } from './body-buffers.js';
import type { EventListHeader, RawRecord } from '../events/record.js';
import { JsonDocumentFramer } from './json-document.js';
import { DocumentError } from './json-splitter.js';

/**
 * The audit webhook's framing: a request body (what kube-apiserver's webhook backend POSTs, an EventList of up to 400
 * events; or one Event, or an array) read into one buffer and split into records. Each item's bytes become its
 * record's text (kept as the stored raw form, so nothing is serialised again), a view of that buffer. What
 * no retry can fix is refused whole (400): a broken document, a list of another kind or audit version.
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

/** What the body parser hands the route: the records, ready for the pipeline. */
export interface ParsedBody {
  records: RawRecord[];
  bytes: number;
  /**
   * Gives the body's buffer back for the next request's. The records are views of it: call this only once nothing
   * reads them any more (their batch committed or was refused). Later calls do nothing.
   */
  release(): void;
}

/**
 * Reads a request body into one buffer (from `buffers`, sized by `expected`, the Content-Length, when known) and splits
 * it into records once it is complete: each item's record is a view of the buffer, so the body's bytes are held once.
 * Enforces the byte limit while reading (a body with no Content-Length cannot exceed it either).
 */
export function readAuditBody(
  payload: NodeJS.ReadableStream,
  limit: number,
  where: string,
  buffers: BodyBuffers = new BodyBuffers(0),
  expected?: number,
): Promise<ParsedBody> {
  return new Promise<ParsedBody>((resolve, reject) => {
    let buf: Buffer | undefined = buffers.take(Math.min(expected ?? 64 * 1024, limit));
    let bytes = 0;
    let settled = false;
    const release = () => {
      if (buf) buffers.give(buf);
      buf = undefined;
    };
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
      // No record escaped: the buffer can take the next body at once.
      release();
      // Stop reading: the reply closes the connection, so the rest of the body is never buffered.
      payload.pause();
      reject(e instanceof DocumentError ? malformed(e.message) : e);
    };
    const onData = (chunk: Buffer) => {
      if (bytes + chunk.length > limit) return fail(tooLarge(limit, `over ${limit} bytes read`));
      if (bytes + chunk.length > buf!.length) {
        // Longer than its Content-Length said, or none was given: a larger buffer (nothing views the old one yet).
        const grown = buffers.take(Math.min(limit, Math.max(bytes + chunk.length, buf!.length * 2)));
        buf!.copy(grown, 0, 0, bytes);
        buffers.give(buf!);
        buf = grown;
      }
      chunk.copy(buf!, bytes);
      bytes += chunk.length;
    };
    const onEnd = () => {
      if (settled) return;
      const records: RawRecord[] = [];
      try {
        const framer = new JsonDocumentFramer(where, (r) => records.push(r));
        framer.push(buf!.subarray(0, bytes));
        const end = framer.end();
        if (end.mode === 'list') {
          // The whole body is in hand: every item takes the list's fields as they are at its end.
          refuseList(end.header);
          for (const r of records) r.list = end.header;
        } else if (end.mode === 'object') finishObject(end.text, records, where);
        settled = true;
        cleanup();
        resolve({ records, bytes, release });
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

function malformed(message: string): WebhookError {
  // The framer's words for a document, said of the body.
  return new WebhookError(400, message.replace(/^empty document/, 'empty body').replace(/^malformed JSON/, 'malformed JSON body'), 'malformed');
}

/** A list that no retry can make readable is refused whole, with the decoder's reason and what to set. */
function refuseList(h: EventListHeader): void {
  if (h.error !== undefined) {
    throw new WebhookError(400, `${h.error}; the apiserver's --audit-webhook-version must be audit.k8s.io/v1 (its default)`, 'malformed');
  }
}

export function tooLarge(limit: number, what: string): WebhookError {
  return new WebhookError(
    413,
    `request body too large (${what}; the limit is webhook.maxBodyBytes = ${limit} bytes). Lower the apiserver's --audit-webhook-batch-max-size or raise the limit.`,
    'too_large',
    { connection: 'close' },
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A body that is one object without an items array: one record (an Event, or an envelope the decoder knows). */
function finishObject(text: string, records: RawRecord[], where: string): void {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw malformed(`malformed JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (isObject(v) && (v.kind === 'EventList' || (v.kind === undefined && 'items' in v))) {
    refuseList(eventListHeader(v.kind, v.apiVersion));
    // `items: null` is how Go writes an empty list.
    if (v.items != null) throw new WebhookError(400, 'not an audit EventList: its items is not an array', 'malformed');
    return;
  }
  // Parsed here already (a body that does not parse is refused whole); stored as sent when it is one line.
  records.push({ value: v, text: text.includes('\n') || text.includes('\r') ? undefined : text, where: `${where} item 0` });
}
