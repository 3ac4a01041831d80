/**
 * Admission rows (admission-rows.ts: one per Pod Security violation, exemption, parse error and admission-policy
 * audit failure) as documents of the fleet store, written beside their events: into the admission index of the
 * event's day (retention drops both together), with `create` and the id `<event's document id>:<row's place among
 * its rows>`, so a batch written again, a rebalance or two detectors store each row once.
 *
 * The rows of an event are written once its event is in the store (stored by this batch or by an earlier one: a
 * batch that failed after its events were stored writes the missing rows when it is sent again). This is the one
 * step the events' write (store.ts insert) hands to this file.
 *
 * `before` and `beforeBaseline` make the Pod Security report's request counts exact with a document count: they
 * list the signals of the rows before this one in the same event with the same check (of those at the baseline
 * violation level), so "the first row of its request that a filter matches" is a term query (admission-queries.ts).
 */
import type { AdmissionRow } from '../admission-rows.js';
import type { DeadLetter } from '../batch.js';
import { bulk, type BulkItem } from './bulk.js';
import type { OpenSearchConnection } from './connection.js';
import type { EventDoc } from './documents.js';
import { admissionIndex } from './indices.js';

/**
 * A row as a document: the row's fields (admission-rows.ts), its time as `ts` (microseconds) and `@timestamp`
 * (milliseconds), its place among its event's rows, and `object` (kind/name) for the report's per-object terms.
 */
export type AdmissionDoc = Omit<AdmissionRow, 'time'> & {
  ts: number;
  '@timestamp': number;
  ordinal: number;
  before: number[];
  beforeBaseline: number[];
  object: string;
};

/** A batch's admission rows as documents: per row, the event (its index in the batch) it belongs to. */
export function admissionDocs(json: string | undefined): { event: number; ordinal: number; doc: AdmissionDoc }[] {
  if (!json) return [];
  const out: { event: number; ordinal: number; doc: AdmissionDoc }[] = [];
  let event = -1;
  let seen: AdmissionRow[] = [];
  for (const [i, r] of JSON.parse(json) as [number, AdmissionRow][]) {
    if (i !== event) {
      event = i;
      seen = [];
    }
    const same = seen.filter((s) => s.check === r.check);
    const { time, ...fields } = r;
    out.push({
      event: i,
      ordinal: seen.length,
      doc: {
        ...fields,
        ts: time,
        '@timestamp': Math.floor(time / 1000),
        ordinal: seen.length,
        before: [...new Set(same.map((s) => s.signal))],
        beforeBaseline: [...new Set(same.filter((s) => s.violationLevel === 'baseline').map((s) => s.signal))],
        object: `${r.objectKind}/${r.objectName}`,
      },
    });
    seen.push(r);
  }
  return out;
}

export interface AdmissionWritten {
  /** Rows of events this batch stored first: deleted with them if the batch is discarded. */
  created: [index: string, id: string][];
  /** Rows OpenSearch refused for good, with the event: dead-lettered with the batch's finish. */
  refused: DeadLetter[];
}

/**
 * Writes the admission rows of a batch's events that are in the store (`items[i]`: the event's own create, 2xx new,
 * 409 stored before). Rows refused for now are retried by bulk(); a failure to write fails the call (retriable), so
 * the batch is sent again and the rows still missing are written then.
 */
export async function writeAdmission(
  conn: OpenSearchConnection,
  prefix: string,
  json: string | undefined,
  events: { doc: EventDoc; id: string; item: BulkItem }[],
  stopped: () => boolean,
): Promise<AdmissionWritten> {
  const out: AdmissionWritten = { created: [], refused: [] };
  const rows = admissionDocs(json).filter((r) => {
    const s = events[r.event]?.item.status ?? 0;
    return (s >= 200 && s < 300) || s === 409;
  });
  if (rows.length === 0) return out;
  const ops = rows.map((r) => ({
    action: 'create' as const,
    index: admissionIndex(prefix, r.doc.ts),
    id: `${events[r.event]!.id}:${r.ordinal}`,
    doc: r.doc,
  }));
  const items = await bulk(conn, ops, { stopped });
  items.forEach((it, k) => {
    const ev = events[rows[k]!.event]!;
    if (it.status >= 200 && it.status < 300) {
      if (ev.item.status !== 409) out.created.push([ops[k]!.index, ops[k]!.id]);
    } else if (it.status !== 409) {
      const d = ev.doc;
      out.refused.push({
        source: 'opensearch',
        where: `${d.cluster}/${d.auditID}/${d.stage}`,
        reason: `OpenSearch refused the event's admission row ${rows[k]!.ordinal} (${rows[k]!.doc.check}): ${it.error ?? `status ${it.status}`}`,
        data: d.raw,
      });
    }
  });
  return out;
}
