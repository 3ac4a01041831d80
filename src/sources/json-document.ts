import { eventListHeader } from '../events/envelopes/native.js';
import type { EventListHeader, RawRecord } from '../events/record.js';
import { DocumentError, DocumentSplitter, type DocumentItem } from './json-splitter.js';

/**
 * Records of a JSON document read as a stream (a webhook body, a document file): each item of an EventList or element
 * of an array becomes its own record, carrying the list's checked kind and apiVersion (the decoder gives them to the
 * items that lack them); an object without an items array is one record. Framing only: what a record means is the
 * decoder's (events/decode.ts).
 */

/** An item of a document. Its JSON is parsed by the pipeline, like a line of a log; `where` is made only when asked. */
class ItemRecord implements RawRecord {
  constructor(
    readonly text: Buffer,
    readonly line: boolean,
    public list: EventListHeader | undefined,
    private readonly base: string,
    private readonly index: number,
  ) {}

  get where(): string {
    return `${this.base} item ${this.index}`;
  }
}

/** How a document ended: an array, an EventList (its header as known at the end), or one object (its text). */
export type DocumentEnd = { mode: 'array' } | { mode: 'list'; header: EventListHeader; early: EventListHeader } | { mode: 'object'; text: string };

function headerOf(text: string): EventListHeader {
  const o = JSON.parse(text) as Record<string, unknown>;
  return eventListHeader(o.kind, o.apiVersion);
}

export class JsonDocumentFramer {
  private readonly splitter: DocumentSplitter;
  /** The list's fields known when its items array opened: what its items take. */
  private early: EventListHeader | undefined;

  constructor(
    private readonly where: string,
    private readonly emit: (r: RawRecord) => void,
  ) {
    this.splitter = new DocumentSplitter(
      (it) => this.emit(this.record(it)),
      (head) => {
        try {
          this.early = headerOf(head + ']}');
        } catch (e) {
          throw new DocumentError(`malformed JSON before the items of the EventList: ${(e as Error).message.split('\n')[0]}`);
        }
      },
    );
  }

  private record(it: DocumentItem): RawRecord {
    // The text becomes the stored raw line only when it is one line (a pretty-printed item is stored re-serialised).
    const line = it.bytes.indexOf(10) < 0 && it.bytes.indexOf(13) < 0;
    return new ItemRecord(it.bytes, line, this.early, this.where, it.index);
  }

  /** Throws DocumentError on a structural error; the records emitted before it stand. */
  push(chunk: Buffer): void {
    this.splitter.push(chunk);
  }

  get count(): number {
    return this.splitter.count;
  }

  end(): DocumentEnd {
    const e = this.splitter.end();
    if (e.mode === 'array') return e;
    if (this.early === undefined) return { mode: 'object', text: e.text };
    let header: EventListHeader;
    try {
      header = headerOf(e.text);
    } catch (err) {
      throw new DocumentError(`malformed JSON in the EventList's own fields: ${(err as Error).message.split('\n')[0]}`);
    }
    return { mode: 'list', header, early: this.early };
  }
}

/**
 * When an EventList names its kind or apiVersion only after its items (the apiserver writes them first), items read
 * before could not take them: the problem, or undefined when what they took is what the list says.
 */
export function lateListHeader(end: { header: EventListHeader; early: EventListHeader }): string | undefined {
  const { header, early } = end;
  if (header.error === early.error && header.apiVersion === early.apiVersion) return undefined;
  const said = header.error ?? `the list is ${header.apiVersion}`;
  return `the EventList names its kind or apiVersion after its items, which were read as ${early.apiVersion}: ${said}. Write kind and apiVersion before items, as the apiserver does.`;
}
