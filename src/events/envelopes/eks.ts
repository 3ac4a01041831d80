import { clusterName, decodeBase64, EnvelopeError, gunzip, isGzip, isObject, itemError, parseJsonOf, typeName } from './common.js';
import type { Envelope, EnvelopeItem } from './types.js';

/**
 * Amazon EKS control-plane audit logs, as CloudWatch Logs holds them: log group `/aws/eks/CLUSTER/cluster`, streams
 * `kube-apiserver-audit-*`, each log event's `message` the audit event's JSON text. Shapes read:
 *
 * - an export by `aws logs filter-log-events` or `get-log-events`: `{"events": [{"timestamp", "message", ...}], ...}`
 * - one CloudWatch log event a line (`{"timestamp": 1700000000000, "message": "{...}", "logStreamName": ...}`), as a
 *   `jq -c '.events[]'` of an export writes them and as kaudit's own CloudWatch source hands them over
 * - a subscription filter's payload, once gunzipped: `{"messageType": "DATA_MESSAGE", "logGroup", "logStream",
 *   "logEvents": [...]}`; a `CONTROL_MESSAGE` (the reachability check CloudWatch sends) holds no events
 * - a Kinesis Data Firehose HTTP endpoint delivery: `{"requestId", "timestamp", "records": [{"data": base64}]}`, each
 *   record's data the gzipped subscription payload (or, with Firehose's decompression on, the payload itself)
 *
 * The cluster comes from the log group name where the shape carries it (subscription payloads, kaudit's source).
 */

/** `/aws/eks/prod/cluster` -> `prod`. */
export function clusterOfLogGroup(group: unknown): string | undefined {
  if (typeof group !== 'string') return undefined;
  const m = /^\/aws\/eks\/([^/]+)\/cluster$/.exec(group);
  return m ? clusterName(m[1]) : undefined;
}

function isLogEvent(v: unknown): v is Record<string, unknown> {
  return isObject(v) && typeof v.message === 'string' && typeof v.timestamp === 'number';
}

function isSubscriptionMessage(o: Record<string, unknown>): boolean {
  return (o.messageType === 'DATA_MESSAGE' || o.messageType === 'CONTROL_MESSAGE') && (Array.isArray(o.logEvents) || typeof o.logGroup === 'string');
}

function isExport(o: Record<string, unknown>): boolean {
  if (!Array.isArray(o.events)) return false;
  // `filter-log-events` and `get-log-events` answers; an empty page still has its paging fields.
  if (o.events.length === 0) return 'nextForwardToken' in o || 'searchedLogStreams' in o || 'nextToken' in o || 'nextBackwardToken' in o;
  return isLogEvent(o.events[0]);
}

function isFirehose(o: Record<string, unknown>): boolean {
  return typeof o.requestId === 'string' && Array.isArray(o.records) && (o.records.length === 0 || (isObject(o.records[0]) && 'data' in o.records[0]));
}

/** A single CloudWatch log event: a numeric timestamp and a message, plus one of the fields CloudWatch adds. */
function isSingleLogEvent(o: Record<string, unknown>): boolean {
  return isLogEvent(o) && ('ingestionTime' in o || 'eventId' in o || 'logStreamName' in o || 'id' in o || 'logGroupName' in o);
}

function logEventItems(events: unknown[], cluster: string | undefined, prefix: string, out: EnvelopeItem[]): void {
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    const where = `${prefix}[${i}]`;
    if (!isObject(e)) out.push({ error: `CloudWatch log event is ${typeName(e)}, not an object`, where });
    else if (typeof e.message !== 'string') out.push({ error: `CloudWatch log event has no message string (got ${typeName(e.message)})`, where });
    else out.push(cluster === undefined ? { value: e.message, where } : { value: e.message, cluster, where });
  }
}

function subscriptionItems(o: Record<string, unknown>, prefix: string, out: EnvelopeItem[]): void {
  if (o.messageType === 'CONTROL_MESSAGE') return;
  if (!Array.isArray(o.logEvents)) {
    out.push({ error: 'CloudWatch Logs DATA_MESSAGE has no logEvents array', where: prefix || undefined });
    return;
  }
  logEventItems(o.logEvents, clusterOfLogGroup(o.logGroup), `${prefix ? prefix + ' ' : ''}logEvents`, out);
}

/**
 * Splits text holding one or more JSON values written back to back (gzip members concatenated by Firehose decode to
 * `{...}{...}`) into the values.
 */
export function concatenatedJson(text: string, what: string): unknown[] {
  try {
    return [JSON.parse(text)];
  } catch {
    /* several values, or broken: split and parse each */
  }
  const out: unknown[] = [];
  let depth = 0;
  let inStr = false;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inStr = false;
      continue;
    }
    if (c === 0x22) inStr = true;
    else if (c === 0x7b || c === 0x5b) {
      if (depth++ === 0) start = i;
    } else if (c === 0x7d || c === 0x5d) {
      if (--depth === 0) out.push(parseJsonOf(text.slice(start, i + 1), what));
      if (depth < 0) throw new EnvelopeError(`${what} is not JSON (unbalanced "${String.fromCharCode(c)}")`);
    } else if (depth === 0 && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
      throw new EnvelopeError(`${what} is not JSON (unexpected ${JSON.stringify(text[i])} between values)`);
    }
  }
  if (depth !== 0 || inStr || out.length === 0) throw new EnvelopeError(`${what} is not JSON (it ends inside a value: truncated?)`);
  return out;
}

function firehoseItems(o: Record<string, unknown>, out: EnvelopeItem[]): void {
  const records = o.records as unknown[];
  for (let i = 0; i < records.length; i++) {
    const where = `records[${i}]`;
    const r = records[i];
    try {
      if (!isObject(r)) throw new EnvelopeError(`Firehose record is ${typeName(r)}, not an object`);
      let bytes = decodeBase64(r.data, 'Firehose record data');
      if (isGzip(bytes)) bytes = gunzip(bytes, 'Firehose record data');
      const values = concatenatedJson(bytes.toString('utf8'), 'Firehose record data');
      for (const v of values) {
        if (isObject(v) && isSubscriptionMessage(v)) subscriptionItems(v, where, out);
        // Firehose's message extraction delivers each log event's message alone: the audit event itself.
        else if (isObject(v) && (v.kind === 'Event' || 'auditID' in v)) out.push({ value: v, where });
        else throw new EnvelopeError(`Firehose record data is neither a CloudWatch Logs subscription message nor an audit event (a JSON ${typeName(v)})`);
      }
    } catch (e) {
      out.push(itemError(e, where));
    }
  }
}

export const eks: Envelope = {
  name: 'eks',
  matches(v) {
    if (!isObject(v)) return false;
    return isSubscriptionMessage(v) || isExport(v) || isFirehose(v) || isSingleLogEvent(v);
  },
  unwrap(v) {
    const out: EnvelopeItem[] = [];
    if (!isObject(v)) return [{ error: `not an EKS CloudWatch Logs record: a JSON ${typeName(v)}` }];
    if (isSubscriptionMessage(v)) subscriptionItems(v, '', out);
    else if (isFirehose(v)) firehoseItems(v, out);
    else if (Array.isArray(v.events)) logEventItems(v.events, clusterOfLogGroup(v.logGroupName), 'events', out);
    else if (isLogEvent(v)) {
      const cluster = clusterOfLogGroup(v.logGroupName);
      out.push(cluster === undefined ? { value: v.message } : { value: v.message, cluster });
    } else out.push({ error: 'not an EKS CloudWatch Logs record: no events, logEvents, records or message' });
    return out;
  },
};
