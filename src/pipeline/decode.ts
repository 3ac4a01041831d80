import { decoderFor, toAuditEvent, type Decoder } from '../events/decode.js';
import type { RawRecord } from '../events/record.js';
import { normalise } from '../events/normalise.js';
import { deadLetterData, type RedactionOptions } from '../events/redact.js';
import type { NormalisedEvent } from '../events/types.js';
import type { DeadLetter } from '../store/batch.js';
import { RecordPacker, type EventRecords } from '../store/records.js';

/** A batch decoded: its events packed for the store, the ones detection may use, and its bad records. */
export interface Decoded {
  /** Events decoded (bad records aside). */
  count: number;
  /** The events packed for the store, raw JSON included (until sent to the writer). */
  records: EventRecords | undefined;
  /** The events some rule may use, and their indexes in the batch. */
  keep: NormalisedEvent[];
  keepIdx: number[];
  /**
   * For kept events parsed without their bodies (see lazy-bodies.ts), the line to parse in full when detection takes
   * them (`whole`), by their place in `keep`; absent when there are none.
   */
  keepWhole?: (string | undefined)[];
  deadLetters: DeadLetter[];
  /** Per envelope (eks, gke, aks, forwarder) that records were unwrapped from: events decoded and items refused. */
  envelopes?: Map<string, { events: number; bad: number }>;
}

export interface DecodeOptions {
  redaction: RedactionOptions;
  /** Pack the events for a store (no: detection only). */
  pack: boolean;
  /** Where the packed raw JSON's buffer comes from (default: a new one). */
  buffers?: (bytes: number) => Buffer;
  /** Which events detection gets: none, all, or those a rule may use. */
  keep: 'none' | 'all' | ((e: NormalisedEvent) => boolean);
  /** A bad record's one-line message, and its kind for rate limiting. */
  warn: (message: string, kind: string) => void;
  /** `auto` (default): each record's envelope by its shape; else `native` or an envelope's name for every record. */
  format?: string;
  /** A decoder of its own (other envelopes); default: kaudit's, for `format`. */
  decoder?: Decoder;
  /** Every event goes to the batch's cluster, whatever its envelope names (see RawBatch.clusterFixed). */
  clusterFixed?: boolean;
}

/**
 * Decoding and normalisation of one batch; pure apart from `warn`. Each event is packed for the store as soon as it
 * is normalised, and only the events detection may use are kept as objects: the rest die young. `cluster` is the
 * source's: an event whose envelope names its own cluster goes to that one, unless the source fixed the cluster.
 */
export function decodeBatch(source: string, cluster: string, records: readonly RawRecord[], o: DecodeOptions): Decoded {
  const decoder = o.decoder ?? decoderFor(o.format);
  const fixed = o.clusterFixed === true;
  const keep: NormalisedEvent[] = [];
  const keepIdx: number[] = [];
  let keepWhole: (string | undefined)[] | undefined;
  const deadLetters: DeadLetter[] = [];
  let rawBytes = 0;
  // Indexed loops here and below: iterators of for-of loops allocated ~0.2 KB an event in a profile of an import.
  if (o.pack) {
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      rawBytes += (r.bytes !== undefined ? r.bytesEnd! - r.bytesStart! : (r.text?.length ?? 1024)) + 1;
    }
  }
  const packer = o.pack ? new RecordPacker(records.length, rawBytes, o.buffers) : undefined;
  const wants = o.keep;
  let count = 0;
  let envelopes: Map<string, { events: number; bad: number }> | undefined;
  const tally = (name: string, bad: boolean) => {
    envelopes ??= new Map();
    let t = envelopes.get(name);
    if (!t) envelopes.set(name, (t = { events: 0, bad: 0 }));
    if (bad) t.bad++;
    else t.events++;
  };
  for (let ri = 0; ri < records.length; ri++) {
    const r = records[ri]!;
    const items = decoder.decode(r, true);
    for (let di = 0; di < items.length; di++) {
      const d = items[di]!;
      if ('error' in d) {
        const where = d.where === undefined ? r.where : `${r.where} ${d.where}`;
        if (d.envelope !== undefined) tally(d.envelope, true);
        deadLetters.push({ source, where, reason: d.error, data: deadLetterData(r.text, r.value, o.redaction) });
        o.warn(`bad input at ${where}: ${d.error}`, `bad-input:${source}`);
        continue;
      }
      if (d.envelope !== undefined) tally(d.envelope, false);
      let n: NormalisedEvent;
      let kept: boolean;
      try {
        n = normalise(d.event, fixed ? cluster : (d.cluster ?? cluster), o.redaction, d.text);
        kept = wants === 'all' || (wants !== 'none' && wants(n));
        // Parsed without its bodies (see lazy-bodies.ts) and wanted by a rule: detection gets the event in full, parsed
        // when it takes the event (`whole`), not now. The bodies' objects then live only while detection reads them:
        // held through the batch's insert they outlived the young generation and made most of the old one's garbage.
        // Such a line has nothing to redact (no Secret in its bodies' text), so the stored line is the same either way.
        if (kept && 'partial' in d && d.partial) {
          keepWhole ??= new Array<string | undefined>(keep.length);
          keepWhole[keep.length] = d.text;
        }
        if (packer) {
          // The line's own bytes when its text is stored unchanged (not redacted): copied, not encoded again.
          if (r.bytes !== undefined && d.text !== undefined && n.raw === d.text) packer.add(n, r.bytes, r.bytesStart, r.bytesEnd);
          else packer.add(n);
          n.raw = '';
        }
      } catch (e) {
        // What validation let through and storing cannot take (JSON nested deeper than the stack allows to serialise
        // again, a field of a type nothing checked): this event's dead letter, not its batch's failure.
        const reason =
          e instanceof RangeError && /call stack/.test(e.message)
            ? 'JSON nested too deeply to store (deeper than this process can serialise again)'
            : `cannot store this event: ${(e as Error).message.split('\n')[0]}`;
        deadLetters.push({ source, where: r.where, reason, data: deadLetterData(r.text, r.value, o.redaction) });
        o.warn(`bad input at ${r.where}: ${reason}`, `bad-input:${source}`);
        continue;
      }
      if (kept) {
        keep.push(n);
        keepIdx.push(count);
      }
      count++;
    }
  }
  if (keepWhole) keepWhole.length = keep.length;
  return { count, records: packer?.finish(), keep, keepIdx, ...(keepWhole ? { keepWhole } : {}), deadLetters, envelopes };
}

/**
 * The kept events `whole` names parsed in full, in place (see Decoded.keepWhole). A line whose bodies do not parse (the
 * event was stored from its other fields) stays as it was parsed, without them, and is reported by `warn`.
 */
export function wholeEvents(
  events: NormalisedEvent[],
  whole: readonly (string | undefined)[],
  redaction: RedactionOptions,
  warn: (message: string) => void,
): void {
  for (let i = 0; i < events.length; i++) {
    const text = whole[i];
    if (text === undefined) continue;
    const e = events[i]!;
    try {
      const n = normalise(toAuditEvent(JSON.parse(text)), e.cluster, redaction, text);
      n.raw = '';
      events[i] = n;
    } catch (err) {
      warn(`event ${e.auditID}: its request or response body is not JSON (${(err as Error).message.split('\n')[0]}); detected without its bodies`);
    }
  }
}
