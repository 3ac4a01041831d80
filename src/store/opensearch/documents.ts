/**
 * Events as OpenSearch documents: a batch's packed records (records.ts) turned into documents, a document turned back
 * into the row queries return, and the document id that makes every write of the same event land on one document.
 */
import { createHash } from 'node:crypto';
import { formatMicros } from '../../events/time.js';
import { nestedDeeperThan, MAX_RETURNED_DEPTH, type EventRow } from '../queries.js';
import {
  FieldReader,
  N_CAT,
  N_CLUSTER,
  N_CODE,
  N_DECISION,
  N_GROUP,
  N_GROUPS,
  N_IMP,
  N_IP,
  N_LEVEL,
  N_NAMESPACE,
  N_RESOURCE,
  N_STAGE,
  N_TIME,
  N_UA,
  N_USER,
  N_VERB,
  N_VERSION,
  NUL,
  NUM_FIELDS,
  type EventRecords,
} from '../records.js';
import { DECISION_NAMES, LEVEL_NAMES, STAGE_NAMES } from '../schema.js';

export interface EventDoc {
  ts: number;
  '@timestamp': number;
  eid: number;
  stage: string;
  stageCode: number;
  final: boolean;
  auditID: string;
  cluster: string;
  verb: string;
  user: string;
  groups: string;
  impersonatedUser: string;
  sourceIP: string;
  userAgent: string;
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
  code: number;
  decision: string;
  level: string;
  command?: string;
  container?: string;
  cat?: number;
  raw: string;
}

/**
 * An event's document id and its numeric id, both from a hash of (cluster, auditID, stage): the same event written
 * by any detector, any number of times, is one document. The document id keeps 128 bits (distinct events never share
 * one); the numeric id (the API's event id) keeps 53, as a JSON number can.
 */
export function eventKey(cluster: string, auditID: string, stage: string): { id: string; eid: number } {
  const h = createHash('sha256').update(cluster).update(NUL).update(auditID).update(NUL).update(stage).digest();
  return { id: h.subarray(0, 16).toString('base64url'), eid: h.readUIntBE(0, 6) * 32 + (h[6]! >> 3) };
}

/** A batch's events as documents, in batch order. */
export function eventDocs(batch: EventRecords): EventDoc[] {
  const n = batch.count;
  const nums = batch.nums;
  const dict = batch.dict.split(NUL);
  const text = new FieldReader(batch.text);
  const raw = Buffer.from(batch.raw.buffer, batch.raw.byteOffset, batch.raw.byteLength).toString('utf8').split('\n');
  const docs: EventDoc[] = new Array<EventDoc>(n);
  for (let i = 0; i < n; i++) {
    const o = i * NUM_FIELDS;
    const stageCode = nums[o + N_STAGE]!;
    const stage = STAGE_NAMES[stageCode]!;
    const cluster = dict[nums[o + N_CLUSTER]!]!;
    const auditID = text.read();
    const subresource = text.read();
    const name = text.read();
    const command = text.read();
    const container = text.read();
    const ts = nums[o + N_TIME]!;
    const cat = nums[o + N_CAT]!;
    const doc: EventDoc = {
      ts,
      '@timestamp': Math.floor(ts / 1000),
      eid: eventKey(cluster, auditID, stage).eid,
      stage,
      stageCode,
      final: stageCode >= 2,
      auditID,
      cluster,
      verb: dict[nums[o + N_VERB]!]!,
      user: dict[nums[o + N_USER]!]!,
      groups: dict[nums[o + N_GROUPS]!]!,
      impersonatedUser: dict[nums[o + N_IMP]!]!,
      sourceIP: dict[nums[o + N_IP]!]!,
      userAgent: dict[nums[o + N_UA]!]!,
      apiGroup: dict[nums[o + N_GROUP]!]!,
      apiVersion: dict[nums[o + N_VERSION]!]!,
      resource: dict[nums[o + N_RESOURCE]!]!,
      subresource,
      namespace: dict[nums[o + N_NAMESPACE]!]!,
      name,
      code: nums[o + N_CODE]!,
      decision: DECISION_NAMES[nums[o + N_DECISION]!] ?? '',
      level: LEVEL_NAMES[nums[o + N_LEVEL]!]!,
      raw: raw[i] ?? '',
    };
    if (command) doc.command = command;
    if (container) doc.container = container;
    if (cat >= 0) doc.cat = cat;
    docs[i] = doc;
  }
  return docs;
}

/** The row a query returns for a stored document (as SQLite's toRow does for a row). */
export function eventRow(d: EventDoc, includeEvent: boolean): EventRow {
  const row: EventRow = {
    id: d.eid,
    time: formatMicros(d.ts),
    stage: d.stage as EventRow['stage'],
    auditID: d.auditID,
    cluster: d.cluster,
    verb: d.verb,
    user: d.user,
    groups: d.groups ? d.groups.split(',') : [],
    impersonatedUser: d.impersonatedUser,
    sourceIP: d.sourceIP,
    userAgent: d.userAgent,
    apiGroup: d.apiGroup,
    apiVersion: d.apiVersion,
    resource: d.resource,
    subresource: d.subresource,
    namespace: d.namespace,
    name: d.name,
    code: d.code,
    decision: d.decision as EventRow['decision'],
    level: d.level as EventRow['level'],
  };
  if (d.command !== undefined) row.command = d.command;
  if (d.container !== undefined) row.container = d.container;
  if (includeEvent) {
    if (nestedDeeperThan(d.raw, MAX_RETURNED_DEPTH)) {
      row.event = null;
      row.eventOmitted = `the event's JSON is nested more than ${MAX_RETURNED_DEPTH} levels deep: not returned`;
    } else row.event = d.raw ? JSON.parse(d.raw) : null;
  }
  return row;
}
