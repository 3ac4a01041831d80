import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { decoderFor } from '../events/decode.js';
import type { RawRecord } from '../events/record.js';
import type { AuditEvent } from '../events/types.js';
import { JsonDocumentFramer, lateListHeader } from './json-document.js';
import { DocumentError } from './json-splitter.js';
import { LineRecord, LineSplitter, type Line, type LongLine } from './lines.js';

/**
 * Audit log files (plain or gzipped) framed into raw records: JSON lines (the apiserver's --audit-log-format=json), or
 * one JSON document (an EventList, an array, one object) streamed through the same framing as webhook bodies.
 */

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
 * document, one JSON array, or one object. Documents are split as they stream, never read whole.
 */
export async function* readFileRecords(path: string, opts: ReadOptions = {}): AsyncGenerator<RawRecord[]> {
  yield* frameRecords(await openStream(path, opts), path, opts.maxLine);
}

/**
 * Records of a byte stream named `name` (a file's path, `stdin`): JSON lines when its first line is a whole JSON value,
 * else one JSON document. Each chunk must be a buffer of its own (lines and items keep views of it).
 */
export async function* frameRecords(chunks: AsyncIterable<Buffer>, name: string, maxLine = DEFAULT_MAX_LINE): AsyncGenerator<RawRecord[]> {
  const path = name;
  const it = chunks[Symbol.asyncIterator]();
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
  yield* frameDocument(rest, path);
}

/** A JSON document's records, yielded per chunk read; a structural error ends it with an error record. */
async function* frameDocument(chunks: AsyncIterable<Buffer>, path: string): AsyncGenerator<RawRecord[]> {
  let out: RawRecord[] = [];
  const framer = new JsonDocumentFramer(path, (r) => out.push(r));
  try {
    for await (const chunk of chunks) {
      framer.push(chunk);
      if (out.length > 0) {
        yield out;
        out = [];
      }
    }
    const end = framer.end();
    if (end.mode === 'object') out.push({ text: end.text, where: path });
    else if (end.mode === 'list') {
      const late = lateListHeader(end);
      if (late !== undefined) out.push({ error: late, where: path });
    }
  } catch (e) {
    if (!(e instanceof DocumentError)) throw e;
    out.push({ error: `not a valid JSON document (${e.message})`, where: path });
  }
  if (out.length > 0) yield out;
}

/** Events of a set of files, in order, with errors for bad records: for `detect`, `policy simulate` and the like. */
export async function* readEventFiles(
  paths: string[],
  opts: ReadOptions & { format?: string } = {},
): AsyncGenerator<{ event: AuditEvent; where: string; text?: string; cluster?: string } | { error: string; where: string }> {
  // Made before the first file is opened: an unknown format is refused at once, naming the known ones.
  const decoder = decoderFor(opts.format);
  for (const path of paths) {
    for await (const recs of readFileRecords(path, opts)) {
      for (const r of recs) {
        for (const d of decoder.decode(r)) {
          const where = d.where === undefined ? r.where : `${r.where} ${d.where}`;
          if ('error' in d) yield { error: d.error, where };
          else yield { event: d.event, where, text: d.text, cluster: d.cluster };
        }
      }
    }
  }
}
