/**
 * Bulk writes with per-item outcomes. OpenSearch answers a bulk request item by item: some items can be refused for
 * now (429, es_rejected_execution_exception, a 5xx from a shard) while others are stored. Those are sent again, alone,
 * with the project's retry (retry.ts); items refused for good (a mapping conflict, a term too long to index) are
 * returned with OpenSearch's reason, for the caller to dead-letter. Nothing is dropped silently: what is neither stored
 * nor refused for good fails the call with a retriable error.
 */
import { StoreUnavailableError } from '../../errors.js';
import { retry } from '../../retry.js';
import { describeError, type OpenSearchConnection } from './connection.js';

export interface BulkOp {
  action: 'create' | 'index' | 'delete';
  index: string;
  id: string;
  doc?: unknown;
  /** Optimistic concurrency: write only over this version. */
  ifSeqNo?: number;
  ifPrimaryTerm?: number;
}

export interface BulkItem {
  /** The item's HTTP status: 2xx stored, 409 a create of an existing id (or a version conflict), else refused. */
  status: number;
  /** OpenSearch's reason when refused. */
  error?: string;
}

interface RawItem {
  status: number;
  error?: { type?: string; reason?: string };
}

/** Refused for now, not for good. */
function retriableItem(item: RawItem): boolean {
  return item.status === 429 || item.status >= 500 || item.error?.type === 'es_rejected_execution_exception';
}

export interface BulkOptions {
  refresh?: boolean;
  /** Attempts after the first for items (or requests) refused for now (default 6: about 20 s). */
  retries?: number;
  stopped?: () => boolean;
}

export async function bulk(conn: OpenSearchConnection, ops: readonly BulkOp[], o: BulkOptions = {}): Promise<BulkItem[]> {
  const out = new Array<BulkItem>(ops.length);
  if (ops.length === 0) return out;
  let todo = ops.map((_, i) => i);
  await retry(
    async () => {
      let ndjson = '';
      for (const i of todo) {
        const op = ops[i]!;
        const meta: Record<string, unknown> = { _index: op.index, _id: op.id };
        if (op.ifSeqNo !== undefined) {
          meta.if_seq_no = op.ifSeqNo;
          meta.if_primary_term = op.ifPrimaryTerm;
        }
        ndjson += JSON.stringify({ [op.action]: meta }) + '\n';
        if (op.action !== 'delete') ndjson += JSON.stringify(op.doc) + '\n';
      }
      const r = await conn.request<{ items: Record<string, RawItem>[] }>('POST', '/_bulk', undefined, {
        ndjson,
        query: o.refresh ? { refresh: 'true' } : undefined,
      });
      const again: number[] = [];
      let reason = '';
      r.body.items.forEach((entry, k) => {
        const i = todo[k]!;
        const item = Object.values(entry)[0]!;
        if (retriableItem(item)) {
          again.push(i);
          reason ||= `${item.status} ${describeError(item.error)}`;
        } else out[i] = item.error ? { status: item.status, error: describeError(item.error) } : { status: item.status };
      });
      todo = again;
      if (todo.length > 0) throw new StoreUnavailableError(`OpenSearch at ${conn.where} refused ${todo.length} of ${ops.length} writes for now: ${reason}`);
    },
    { retries: o.retries ?? 6, initialMs: 200, maxMs: 5000, stopped: o.stopped },
  );
  return out;
}
