/**
 * Splits a byte stream into lines, tracking the byte offset just past each line's newline (the position a tail
 * checkpoints). A line longer than `maxLine` bytes is reported once as too long and skipped up to its newline; the
 * stream goes on. A partial last line stays buffered until its newline arrives.
 */
import { isAscii } from 'node:buffer';
import type { RawRecord } from '../events/record.js';

export interface Line {
  /**
   * The line's text. Left out when the splitter keeps bytes (see keepBytes) and the line is ASCII: it is then
   * `data` from `dataStart` to `dataEnd`, decoded when needed (see lineText).
   */
  text?: string;
  /** Where the line's bytes are (without the newline or a trailing CR), when the splitter keeps them. */
  data?: Buffer;
  dataStart?: number;
  dataEnd?: number;
  /** Byte offset just past this line's newline. */
  end: number;
  /** 1-based line number within the stream. */
  lineNo: number;
}

/** A line's text (decoded from its bytes when the splitter left it as bytes). */
export function lineText(l: Line): string {
  // Left out only for an ASCII line, whose bytes decode as latin1 (a copy, no UTF-8 decoding). Decoded here, one line
  // at a time, rather than a chunk at once and sliced: a 1 MiB string goes to V8's large-object space, which only a
  // full collection frees (callgrind, a 60,000-event import: 2.5% more instructions in all that way).
  return l.text ?? l.data!.toString('latin1', l.dataStart!, l.dataEnd!);
}

export interface LongLine {
  tooLong: true;
  bytes: number;
  end: number;
  lineNo: number;
}

export class LineSplitter {
  private carry: Buffer[] = [];
  private carryLen = 0;
  private skipping = false;
  private skipped = 0;
  /** Offset of the first byte not yet consumed into a complete line. */
  offset: number;
  lineNo: number;

  /**
   * `keepBytes`: each line also carries its bytes, a view of the chunk (the caller promises never to reuse a chunk's
   * memory), so the line's raw form can be copied as bytes instead of being encoded again from the text.
   */
  constructor(
    readonly maxLine: number,
    startOffset = 0,
    startLine = 0,
    private readonly keepBytes = false,
  ) {
    this.offset = startOffset;
    this.lineNo = startLine;
  }

  /** Bytes buffered for an unfinished line. */
  get pending(): number {
    return this.carryLen + (this.skipping ? this.skipped : 0);
  }

  push(chunk: Buffer, out: (l: Line | LongLine) => void): void {
    let start = 0;
    // A UTF-8 byte order mark at the very start of a file is not part of its first line (JSON's RFC lets a parser
    // ignore it; left in, the first event would be refused as bad input). Its bytes still count in the offsets.
    if (this.offset === 0 && this.carryLen === 0 && !this.skipping && chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) {
      start = 3;
      this.offset = 3;
    }
    // Without keepBytes (`kaudit detect` on stdin) an ASCII chunk is decoded once and its lines are slices of that
    // string; with it (file imports and tails) each line is decoded when it is parsed (lineText).
    const ascii = chunk.length >= 4096 && isAscii(chunk);
    const whole = ascii && !this.keepBytes ? chunk.toString('latin1') : undefined;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const partLen = nl - start;
      this.lineNo++;
      if (this.skipping) {
        const bytes = this.skipped + partLen;
        this.offset += bytes + 1;
        this.skipping = false;
        this.skipped = 0;
        out({ tooLong: true, bytes, end: this.offset, lineNo: this.lineNo });
      } else if (this.carryLen + partLen > this.maxLine) {
        const bytes = this.carryLen + partLen;
        this.offset += bytes + 1;
        this.carry = [];
        this.carryLen = 0;
        out({ tooLong: true, bytes, end: this.offset, lineNo: this.lineNo });
      } else {
        let text: string | undefined;
        let data: Buffer | undefined;
        let dataStart = start;
        let dataEnd = nl;
        if (this.carryLen === 0) {
          if (this.keepBytes) {
            data = chunk;
            // An ASCII line stays bytes until it is parsed: queued lines then hold no string of their own.
            if (!ascii) text = chunk.toString('utf8', start, nl);
          } else {
            text = whole !== undefined ? whole.slice(start, nl) : chunk.toString('utf8', start, nl);
          }
        } else {
          this.carry.push(chunk.subarray(start, nl));
          const joined = Buffer.concat(this.carry, this.carryLen + partLen);
          text = joined.toString('utf8');
          data = joined;
          dataStart = 0;
          dataEnd = joined.length;
          this.carry = [];
        }
        const bytes = this.carryLen + partLen;
        this.carryLen = 0;
        this.offset += bytes + 1;
        // Windows line endings and blank lines are not events.
        if (dataEnd > dataStart && (data ? data[dataEnd - 1] === 13 : text!.charCodeAt(text!.length - 1) === 13)) {
          if (text !== undefined) text = text.slice(0, -1);
          dataEnd--;
        }
        out(this.keepBytes ? { text, data, dataStart, dataEnd, end: this.offset, lineNo: this.lineNo } : { text, end: this.offset, lineNo: this.lineNo });
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.length - start;
      if (this.skipping) {
        this.skipped += rest;
      } else if (this.carryLen + rest > this.maxLine) {
        this.skipping = true;
        this.skipped = this.carryLen + rest;
        this.carry = [];
        this.carryLen = 0;
      } else {
        // Copy: the caller may reuse its read buffer.
        this.carry.push(Buffer.from(chunk.subarray(start)));
        this.carryLen += rest;
      }
    }
  }

  /** At end of a finished file (import, or a rotated file that will not grow): the unterminated last line, if any. */
  flush(out: (l: Line | LongLine) => void): void {
    if (this.skipping) {
      this.lineNo++;
      this.offset += this.skipped;
      out({ tooLong: true, bytes: this.skipped, end: this.offset, lineNo: this.lineNo });
      this.skipping = false;
      this.skipped = 0;
    } else if (this.carryLen > 0) {
      this.lineNo++;
      const data = Buffer.concat(this.carry, this.carryLen);
      // As in push: a trailing CR is not part of the line.
      const dataEnd = data[data.length - 1] === 13 ? data.length - 1 : data.length;
      const text = data.toString('utf8', 0, dataEnd);
      this.offset += this.carryLen;
      this.carry = [];
      this.carryLen = 0;
      out(this.keepBytes ? { text, data, dataStart: 0, dataEnd, end: this.offset, lineNo: this.lineNo } : { text, end: this.offset, lineNo: this.lineNo });
    }
  }

  reset(offset: number, lineNo = 0): void {
    this.carry = [];
    this.carryLen = 0;
    this.skipping = false;
    this.skipped = 0;
    this.offset = offset;
    this.lineNo = lineNo;
  }
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
   * An ASCII line's text is decoded from its chunk when asked for (when it is parsed: see lineText), and not kept
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
