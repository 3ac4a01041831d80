import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import StreamJsonParser from 'stream-json/Parser.js';
import PickFilter from 'stream-json/filters/Pick.js';
import StreamArrayStreamer from 'stream-json/streamers/StreamArray.js';
import { LineSplitter, lineText, type Line, type LongLine } from '../sources/lines.js';
import { documentItems, isEventList, parseJson, toAuditEvent } from './decode.js';
import { BadInputError } from './errors.js';
import type { AuditEvent } from './types.js';
import { gunzip, isGzip as isGzipBytes } from './envelopes/common.js';
import { ENVELOPES, envelopeNamed, findEnvelope, FORMATS, isNativeShape, type Envelope, type Format } from './envelopes/index.js';

/**
 * One undecoded input record: JSON text (a line, or a whole document), or a value already parsed by a streaming
 * parser, or an error found while reading (a line over the length limit). `where` locates it inside its source.
 */
export interface RawRecord {
  text?: string | Buffer;
  value?: unknown;
  error?: string;
  where: string;
  /**
   * The record is an item of an EventList of this apiVersion. The apiserver's webhook and EventList files leave kind
   * and apiVersion off the items: an item with neither takes kind Event and this apiVersion, in the event and in its
   * stored text, so the stored form is the same as the log backend's.
   */
  inherit?: string;
  /** The text is one line (a line splitter's): no need to look for line breaks in it. */
  line?: boolean;
  /**
   * The text's UTF-8 bytes, when at hand (a line of a file): `bytes` from `bytesStart` to `bytesEnd`. Stored as they
   * are when the event is not redacted.
   */
  bytes?: Buffer;
  bytesStart?: number;
  bytesEnd?: number;
}

/**
 * A line of a file as a RawRecord. Its `where` ("path:line") is made only when asked for (bad input): most records
 * never need it, and a string per line would be garbage the young generation has to copy while batches wait.
 */
export class LineRecord implements RawRecord {
  readonly line = true;
  constructor(
    private readonly l: Line,
    private readonly path: string,
  ) {}

  /**
   * An ASCII line's text is decoded from its chunk when asked for (when it is parsed: see AsciiChunk), and not kept
   * here: the record lives on until its batch is decoded, the string need not.
   */
  get text(): string {
    return lineText(this.l);
  }

  get bytes(): Buffer | undefined {
    return this.l.data;
  }

  get bytesStart(): number | undefined {
    return this.l.dataStart;
  }

  get bytesEnd(): number | undefined {
    return this.l.dataEnd;
  }

  get where(): string {
    return `${this.path}:${this.l.lineNo}`;
  }
}

export interface ReadOptions {
  /** Longest accepted line, bytes (default 1 MiB). */
  maxLine?: number;
  /** Called with bytes read from disk (compressed size for .gz), for progress. */
  onBytes?: (n: number) => void;
}

const DEFAULT_MAX_LINE = 1 << 20;
const CHUNK = 1 << 20;

async function isGzip(path: string): Promise<boolean> {
  if (path.endsWith('.gz')) return true;
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    return bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** Chunks read ahead of the one being split: the reads run on libuv's pool while this thread works. */
const READ_AHEAD = 3;

/**
 * A plain file's chunks, each a fresh buffer, with READ_AHEAD reads under way: a read stream asks for the next chunk
 * only once the last is taken, and on a busy machine the parsing thread would then wait for each read.
 */
async function readAhead(path: string, onBytes?: (n: number) => void): Promise<AsyncIterable<Buffer>> {
  const fh = await open(path, 'r');
  return (async function* () {
    let pos = 0;
    const queue: Promise<Buffer>[] = [];
    const readNext = () => {
      const at = pos;
      pos += CHUNK;
      const b = Buffer.allocUnsafeSlow(CHUNK);
      const p = fh.read(b, 0, CHUNK, at).then((r) => b.subarray(0, r.bytesRead));
      // Awaited in turn below; until then a failure must not count as unhandled.
      p.catch(() => {});
      queue.push(p);
    };
    try {
      for (let i = 0; i < READ_AHEAD; i++) readNext();
      for (;;) {
        const chunk = await queue.shift()!;
        if (chunk.length === 0) return;
        onBytes?.(chunk.length);
        // A short read is the end of the file as it was: the reads ahead of it are past that end (were the file
        // growing, what they got would not follow on from this chunk).
        if (chunk.length < CHUNK) {
          yield chunk;
          return;
        }
        readNext();
        yield chunk;
      }
    } finally {
      await Promise.allSettled(queue);
      await fh.close();
    }
  })();
}

async function openStream(path: string, opts: ReadOptions): Promise<AsyncIterable<Buffer>> {
  // Opening first turns a missing or unreadable file into a rejected promise here, not an unhandled stream error.
  const gz = await isGzip(path);
  if (!gz) return readAhead(path, opts.onBytes);
  const file = createReadStream(path, { highWaterMark: CHUNK });
  let source: AsyncIterable<Buffer> = file;
  if (gz) {
    const gunzip = createGunzip({ chunkSize: CHUNK });
    file.on('error', (e) => gunzip.destroy(e));
    source = file.pipe(gunzip);
  }
  if (!opts.onBytes) return source;
  // Progress from the file's read position (compressed bytes for .gz). Not a 'data' listener: that would put the
  // stream in flowing mode and race the iterator for chunks.
  const onBytes = opts.onBytes;
  return (async function* () {
    let reported = 0;
    for await (const chunk of source) {
      if (file.bytesRead > reported) {
        onBytes(file.bytesRead - reported);
        reported = file.bytesRead;
      }
      yield chunk;
    }
  })();
}

function firstNonSpace(b: Buffer): number {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
  }
  return -1;
}

/**
 * Reads an audit log file and yields its records in chunks (an array per read buffer, so the per-record cost stays
 * small). Accepts plain or gzipped files holding JSON lines (the apiserver's --audit-log-format=json), one EventList
 * document, or one JSON array of events. Documents are parsed with stream-json, never read whole.
 */
export async function* readFileRecords(path: string, opts: ReadOptions = {}): AsyncGenerator<RawRecord[]> {
  const maxLine = opts.maxLine ?? DEFAULT_MAX_LINE;
  const it = (await openStream(path, opts))[Symbol.asyncIterator]();
  // Decide the format from the first bytes: JSON lines when the first line is a whole JSON value, else a document.
  const head: Buffer[] = [];
  let headLen = 0;
  let mode: 'lines' | 'array' | 'object' | undefined;
  let done = false;
  while (!mode) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    // A UTF-8 byte order mark (files written by some editors and tools) is not JSON: JSON's RFC lets a parser ignore
    // it, and an EventList would otherwise be read as lines and refused whole.
    const chunk = head.length === 0 && r.value.length >= 3 && r.value[0] === 0xef && r.value[1] === 0xbb && r.value[2] === 0xbf ? r.value.subarray(3) : r.value;
    head.push(chunk);
    headLen += chunk.length;
    const buf = head.length === 1 ? head[0]! : Buffer.concat(head, headLen);
    const i = firstNonSpace(buf);
    if (i < 0) continue;
    if (buf[i] === 0x5b /* [ */) mode = 'array';
    else {
      const nl = buf.indexOf(10, i);
      if (nl >= 0) {
        try {
          const v = JSON.parse(buf.toString('utf8', i, nl));
          void v;
          mode = 'lines';
        } catch {
          mode = buf[i] === 0x7b ? 'object' : 'lines';
        }
      } else if (headLen > maxLine) {
        mode = buf[i] === 0x7b ? 'object' : 'lines';
      }
    }
  }
  if (!mode) {
    // Whole file seen without a newline: one document, or one unterminated line.
    mode = 'lines';
  }
  const rest: AsyncIterable<Buffer> = {
    [Symbol.asyncIterator]: () => {
      let headIdx = 0;
      return {
        next: async () => {
          if (headIdx < head.length) return { done: false, value: head[headIdx++]! };
          if (done) return { done: true, value: undefined };
          return it.next();
        },
        // A reader that stops early (an import whose store failed) closes the file now, not at garbage collection.
        return: async () => {
          await it.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
  if (mode === 'lines') {
    // Read streams hand over a fresh buffer per chunk: lines may keep views of them.
    const splitter = new LineSplitter(maxLine, 0, 0, true);
    let out: RawRecord[] = [];
    const push = (l: Line | LongLine) => {
      if ('tooLong' in l) out.push({ error: `line is ${l.bytes} bytes, over the ${maxLine}-byte limit`, where: `${path}:${l.lineNo}` });
      else if (l.text !== undefined ? l.text.length > 0 : l.dataEnd! > l.dataStart!) out.push(new LineRecord(l, path));
    };
    for await (const chunk of rest) {
      splitter.push(chunk, push);
      if (out.length > 0) {
        yield out;
        out = [];
      }
    }
    splitter.flush(push);
    if (out.length > 0) yield out;
    return;
  }
  yield* readDocument(path, Readable.from(rest), mode);
}

async function* readDocument(path: string, input: Readable, mode: 'array' | 'object'): AsyncGenerator<RawRecord[]> {
  const parser = new StreamJsonParser({ jsonStreaming: false });
  let tail: NodeJS.ReadWriteStream = input.pipe(parser);
  input.on('error', (e) => parser.destroy(e));
  if (mode === 'object') {
    // An EventList: stream its items. A single pretty-printed Event is picked whole by the second filter.
    const pick = new PickFilter({ filter: (stack: readonly unknown[]) => stack.length === 1 && stack[0] === 'items' });
    parser.on('error', (e) => pick.destroy(e));
    tail = tail.pipe(pick);
  }
  const arr = new StreamArrayStreamer();
  (tail as unknown as Readable).on('error', (e: Error) => arr.destroy(e));
  tail = tail.pipe(arr);
  let out: RawRecord[] = [];
  let n = 0;
  try {
    for await (const item of tail as unknown as AsyncIterable<{ key: number; value: unknown }>) {
      n++;
      out.push({ value: item.value, where: `${path} item ${item.key}` });
      if (out.length >= 512) {
        yield out;
        out = [];
      }
    }
  } catch (e) {
    if (out.length > 0) yield out;
    yield [{ error: `not a valid JSON document (${(e as Error).message.split('\n')[0]})`, where: path }];
    return;
  }
  if (out.length > 0) yield out;
  if (n === 0 && mode === 'object') {
    // No items: maybe one pretty-printed Event. Re-read it whole (bounded by the document limit of the caller).
    yield [{ text: await readWhole(path), where: path }];
  }
}

async function readWhole(path: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await openStream(path, {})) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** One decoded item of a record: an event (with the cluster and envelope it came in), or why an item is bad. */
export type DecodedItem =
  | { event: AuditEvent; text?: string; cluster?: string; envelope?: string; where?: string }
  | { error: string; envelope?: string; where?: string };

/**
 * Decodes one record into its events (a document may hold many); bad input becomes an error entry. `format`: `auto`
 * unwraps a record that is not a native event by its shape (an EKS CloudWatch record, a GKE LogEntry, an AKS
 * diagnostic record, a forwarder's record: see envelopes/), `native` never does, an envelope's name forces it.
 */
export function decodeRecord(r: RawRecord, format: Format = 'auto'): DecodedItem[] {
  if (r.error !== undefined) return [{ error: r.error }];
  let v: unknown;
  try {
    // Read once: a LineRecord decodes its text on each read (the second read of a line once cost a decode of its own).
    let raw = r.text;
    // A gzipped record (a CloudWatch Logs subscription payload as Kinesis or a queue carries it).
    if (raw !== undefined && typeof raw !== 'string' && isGzipBytes(raw)) {
      try {
        raw = gunzip(raw, 'record');
      } catch (e) {
        return [{ error: (e as Error).message }];
      }
    }
    let text = typeof raw === 'string' || raw === undefined ? raw : raw.toString('utf8');
    v = r.value !== undefined ? r.value : parseJson(text ?? '');
    if (format !== 'native') {
      const env = format === 'auto' ? (isNativeShape(v) ? undefined : findEnvelope(v)) : envelopeNamed(format);
      if (env) return unwrapRecord(env, v, format !== 'auto');
      if (format !== 'auto') return [{ error: `unknown format ${JSON.stringify(format)}: use one of ${FORMATS.join(', ')}` }];
    }
    if (r.inherit !== undefined) text = inheritListFields(v, text, r.inherit);
    // The common case, one event a line: no document to split.
    if (r.line && typeof v === 'object' && v !== null && !Array.isArray(v) && !isEventList(v)) {
      try {
        return [{ event: toAuditEvent(v), text }];
      } catch (e) {
        return [{ error: noEnvelope((e as Error).message, format) }];
      }
    }
    const items = documentItems(v);
    // The text is kept as the stored raw line only when it is one line (a pretty-printed document is re-serialised).
    const single = items.length === 1 && items[0] === v && text !== undefined && !text.includes('\n') && !text.includes('\r');
    return items.map((item) => {
      try {
        return { event: toAuditEvent(item), text: single ? text : undefined };
      } catch (e) {
        return { error: items.length === 1 && items[0] === v ? noEnvelope((e as Error).message, format) : (e as Error).message };
      }
    });
  } catch (e) {
    if (e instanceof BadInputError) return [{ error: e.reason }];
    throw e;
  }
}

/** A record that is not an audit event: say that no envelope took it either (decoding never guesses silently). */
function noEnvelope(reason: string, format: Format): string {
  return format === 'auto' && reason.startsWith('not an audit event') ? `${reason}; nor a record of any envelope (${ENVELOPES.map((e) => e.name).join(', ')})` : reason;
}

/** The events inside an envelope's record; each item's error names the envelope, and one bad item costs only itself. */
function unwrapRecord(env: Envelope, v: unknown, forced: boolean): DecodedItem[] {
  const envelope = env.name;
  if (forced && !env.matches(v)) {
    return [{ error: `${envelope}: not a record of this format (forced by --format ${envelope}): ${describeShape(v)}`, envelope }];
  }
  const out: DecodedItem[] = [];
  for (const it of env.unwrap(v)) {
    if ('error' in it) {
      out.push({ error: `${envelope}: ${it.error}`, envelope, where: it.where });
      continue;
    }
    let value = it.value;
    let text: string | undefined;
    try {
      if (typeof value === 'string') {
        value = JSON.parse(value);
        // The event's own text is its stored form when it is one line.
        if (!(it.value as string).includes('\n') && !(it.value as string).includes('\r')) text = it.value as string;
      }
      out.push({ event: toAuditEvent(value), text, cluster: it.cluster, envelope, where: it.where });
    } catch (e) {
      const msg = e instanceof SyntaxError ? `event text is not JSON (${e.message.split('\n')[0]})` : (e as Error).message;
      out.push({ error: `${envelope}: ${msg}`, envelope, where: it.where });
    }
  }
  return out;
}

function describeShape(v: unknown): string {
  if (typeof v !== 'object' || v === null) return `a JSON ${v === null ? 'null' : typeof v}`;
  if (Array.isArray(v)) return 'a JSON array';
  const keys = Object.keys(v).slice(0, 6);
  return `an object with keys ${keys.join(', ')}${Object.keys(v).length > 6 ? ', ...' : ''}`;
}

/**
 * Gives an EventList item with neither kind nor apiVersion the list's (see RawRecord.inherit), in the parsed value
 * and in its text; returns the text to store, or undefined when it must be serialised again.
 */
function inheritListFields(v: unknown, text: string | undefined, apiVersion: string): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return text;
  const o = v as Record<string, unknown>;
  const noKind = o.kind === undefined;
  const noVersion = o.apiVersion === undefined;
  if (!noKind && !noVersion) return text;
  if (noKind) o.kind = 'Event';
  if (noVersion) o.apiVersion = apiVersion;
  // Splice the fields into the text when it is an object with other fields (else there is no comma to put after them).
  if (text === undefined || text.charCodeAt(0) !== 0x7b || Object.keys(o).length <= 2) return undefined;
  const fields = noKind ? (noVersion ? `"kind":"Event","apiVersion":${JSON.stringify(apiVersion)},` : '"kind":"Event",') : `"apiVersion":${JSON.stringify(apiVersion)},`;
  return '{' + fields + text.slice(1);
}

/** Events of a set of files, in order, with errors for bad records: for `detect`, `policy simulate` and the like. */
export async function* readEventFiles(paths: string[], opts: ReadOptions & { format?: Format } = {}): AsyncGenerator<{ event: AuditEvent; where: string; text?: string; cluster?: string } | { error: string; where: string }> {
  for (const path of paths) {
    for await (const recs of readFileRecords(path, opts)) {
      for (const r of recs) {
        for (const d of decodeRecord(r, opts.format)) {
          const where = d.where === undefined ? r.where : `${r.where} ${d.where}`;
          if ('error' in d) yield { error: d.error, where };
          else yield { event: d.event, where, text: d.text, cluster: d.cluster };
        }
      }
    }
  }
}
