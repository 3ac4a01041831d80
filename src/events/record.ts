/**
 * One undecoded input record, as a source frames it: JSON text (a line, a document, an item of an EventList or array
 * split out of a stream), or a value a source already parsed, or an error found while framing (a line over the length
 * limit). `where` locates it inside its source. The decoder (decode.ts) turns it into audit events.
 */
export interface RawRecord {
  text?: string | Buffer;
  value?: unknown;
  error?: string;
  where: string;
  /**
   * The record is an item of an EventList that a source split out of the stream (a webhook body, a streamed file):
   * the list's kind and apiVersion, checked once (see eventListHeader). Items lack kind and apiVersion as the apiserver
   * sends them and take the list's.
   */
  list?: EventListHeader;
  /** The text holds no line break (a line of a log, a one-line item): it can be stored as the event's raw line. */
  line?: boolean;
  /**
   * The text's UTF-8 bytes, when at hand (a line of a file): `bytes` from `bytesStart` to `bytesEnd`. Stored as they
   * are when the event is not redacted.
   */
  bytes?: Buffer;
  bytesStart?: number;
  bytesEnd?: number;
}

/** An EventList's own fields, checked: the apiVersion its items take, or why the list is refused. */
export interface EventListHeader {
  readonly apiVersion: string;
  readonly error?: string;
}
