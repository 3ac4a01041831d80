/**
 * The fleet store's indices and the template kaudit installs for them:
 *
 *   <prefix>-events-YYYY.MM.DD   one per day of event time (requestReceivedTimestamp, UTC): retention drops whole days
 *   <prefix>-admission-YYYY.MM.DD  the admission rows of that day's events (admission-docs.ts), dropped with them
 *   <prefix>-alerts              one row per alert group (the alert's key as document id)
 *   <prefix>-alert-groups        per group key, the row that repeats are counted on (read in real time, by id)
 *   <prefix>-dead-letters        records rejected as bad input, with the reason
 *   <prefix>-positions           each source's committed position, by source
 *   <prefix>-state               saved detection state, writers' leases, pending-detection marks
 *
 * Mappings are explicit (`dynamic: strict`): identities, verbs, resources, names and addresses are keywords (exact
 * match, wildcards, terms aggregations), times are numbers in microseconds (exact, as SQLite keeps them) beside a
 * date for people and tools, and the redacted audit event is kept in the source but not indexed.
 */
import type { OpenSearchConnection } from './connection.js';

export interface IndexNames {
  prefix: string;
  /** Every day's events index: `<prefix>-events-*`. */
  events: string;
  /** Every day's admission index: `<prefix>-admission-*`. */
  admission: string;
  alerts: string;
  groups: string;
  deadLetters: string;
  positions: string;
  state: string;
}

export function indexNames(prefix: string): IndexNames {
  return {
    prefix,
    events: `${prefix}-events-*`,
    admission: `${prefix}-admission-*`,
    alerts: `${prefix}-alerts`,
    groups: `${prefix}-alert-groups`,
    deadLetters: `${prefix}-dead-letters`,
    positions: `${prefix}-positions`,
    state: `${prefix}-state`,
  };
}

function dayIndex(prefix: string, kind: 'events' | 'admission', timeMicros: number): string {
  const d = new Date(Math.floor(timeMicros / 1000));
  const p = (n: number) => String(n).padStart(2, '0');
  return `${prefix}-${kind}-${d.getUTCFullYear()}.${p(d.getUTCMonth() + 1)}.${p(d.getUTCDate())}`;
}

/** The events index a time (microseconds) belongs to: its UTC day. */
export function eventsIndex(prefix: string, timeMicros: number): string {
  return dayIndex(prefix, 'events', timeMicros);
}

/** The admission index of an event's rows: the same UTC day as the event's own index. */
export function admissionIndex(prefix: string, timeMicros: number): string {
  return dayIndex(prefix, 'admission', timeMicros);
}

/** The day a day index (events or admission) holds (ms since the epoch at its start), or undefined for another name. */
export function dayOfIndex(prefix: string, name: string): number | undefined {
  const m = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(?:events|admission)-(\\d{4})\\.(\\d{2})\\.(\\d{2})$`).exec(name);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : undefined;
}

const KEYWORD = { type: 'keyword' } as const;
const LONG = { type: 'long' } as const;
/** Kept in the document's source only: returned, never searched. */
const STORED_ONLY = { type: 'keyword', index: false, doc_values: false } as const;

export const EVENT_MAPPINGS = {
  dynamic: 'strict',
  properties: {
    ts: LONG,
    '@timestamp': { type: 'date', format: 'epoch_millis' },
    eid: LONG,
    stage: KEYWORD,
    stageCode: { type: 'byte' },
    final: { type: 'boolean' },
    auditID: KEYWORD,
    cluster: KEYWORD,
    verb: KEYWORD,
    user: KEYWORD,
    groups: KEYWORD,
    impersonatedUser: KEYWORD,
    sourceIP: KEYWORD,
    userAgent: KEYWORD,
    apiGroup: KEYWORD,
    apiVersion: KEYWORD,
    resource: KEYWORD,
    subresource: KEYWORD,
    namespace: KEYWORD,
    name: KEYWORD,
    code: { type: 'integer' },
    decision: KEYWORD,
    level: KEYWORD,
    command: STORED_ONLY,
    container: STORED_ONLY,
    cat: { type: 'byte' },
    raw: STORED_ONLY,
  },
};

/** One document per admission row (admission-rows.ts), as SQLite's admission table keeps them. */
export const ADMISSION_MAPPINGS = {
  dynamic: 'strict',
  properties: {
    ts: LONG,
    '@timestamp': { type: 'date', format: 'epoch_millis' },
    signal: { type: 'byte' },
    /** The row's place among its event's rows, and the signals of the rows before it of the same check (requests). */
    ordinal: { type: 'short' },
    before: { type: 'byte' },
    beforeBaseline: { type: 'byte' },
    cluster: KEYWORD,
    namespace: KEYWORD,
    user: KEYWORD,
    auditID: KEYWORD,
    verb: KEYWORD,
    code: { type: 'integer' },
    objectKind: KEYWORD,
    objectName: KEYWORD,
    object: KEYWORD,
    ownerKind: KEYWORD,
    ownerName: KEYWORD,
    level: KEYWORD,
    version: KEYWORD,
    check: KEYWORD,
    violationLevel: KEYWORD,
    reason: STORED_ONLY,
    detail: STORED_ONLY,
    policy: KEYWORD,
    binding: KEYWORD,
  },
};

/** Fields added to the alerts index after it was first made: put on an existing index at every start. */
const ALERT_ADDED_FIELDS = {
  /** The posture rules' details (`workload`, `cis`), which the posture table groups by. */
  workload: KEYWORD,
  cis: KEYWORD,
};

const ALERT_MAPPINGS = {
  dynamic: 'strict',
  properties: {
    ...ALERT_ADDED_FIELDS,
    seq: LONG,
    rule: KEYWORD,
    severity: { type: 'byte' },
    cluster: KEYWORD,
    groupKey: KEYWORD,
    firstTime: LONG,
    lastTime: LONG,
    count: { type: 'integer' },
    auditID: KEYWORD,
    stage: KEYWORD,
    eventId: LONG,
    lastEventId: LONG,
    user: KEYWORD,
    namespace: KEYWORD,
    body: STORED_ONLY,
  },
};

const SMALL_MAPPINGS: Record<'groups' | 'deadLetters' | 'positions' | 'state', object> = {
  groups: { dynamic: 'strict', properties: { alert: KEYWORD, lastTime: LONG } },
  deadLetters: {
    dynamic: 'strict',
    properties: { seq: LONG, received: LONG, source: KEYWORD, position: KEYWORD, reason: STORED_ONLY, size: LONG, data: STORED_ONLY },
  },
  positions: { dynamic: 'strict', properties: { source: KEYWORD, position: STORED_ONLY, updated: LONG } },
  state: {
    dynamic: 'strict',
    properties: { kind: KEYWORD, owner: KEYWORD, seen: LONG, value: STORED_ONLY, docs: STORED_ONLY, slot: LONG },
  },
};

/**
 * Installs the events template and creates the fixed indices if missing. Safe to run from every detector at every
 * start: the template is replaced with the same content and "already exists" is not an error.
 */
export async function installIndices(conn: OpenSearchConnection, names: IndexNames, opts: { replicas: number; shards: number }): Promise<void> {
  const settings = { number_of_replicas: opts.replicas };
  await conn.request('PUT', `/_index_template/${names.prefix}-events`, {
    index_patterns: [names.events],
    priority: 200,
    template: {
      settings: { ...settings, number_of_shards: opts.shards, codec: 'best_compression', refresh_interval: '1s' },
      mappings: EVENT_MAPPINGS,
    },
  });
  await conn.request('PUT', `/_index_template/${names.prefix}-admission`, {
    index_patterns: [names.admission],
    priority: 200,
    template: { settings: { ...settings, number_of_shards: 1, refresh_interval: '1s' }, mappings: ADMISSION_MAPPINGS },
  });
  const fixed: [string, object][] = [
    [names.alerts, ALERT_MAPPINGS],
    [names.groups, SMALL_MAPPINGS.groups],
    [names.deadLetters, SMALL_MAPPINGS.deadLetters],
    [names.positions, SMALL_MAPPINGS.positions],
    [names.state, SMALL_MAPPINGS.state],
  ];
  for (const [index, mappings] of fixed) {
    const r = await conn.request<{ error?: { type?: string } }>(
      'PUT',
      `/${index}`,
      { settings: { ...settings, number_of_shards: 1 }, mappings },
      { ignore: [400] },
    );
    if (r.status === 400 && r.body.error?.type !== 'resource_already_exists_exception')
      throw new Error(`OpenSearch refused to create ${index}: ${JSON.stringify(r.body.error)}`);
  }
  // An alerts index made by an older kaudit: new fields are added to its strict mapping (adding is always allowed).
  await conn.request('PUT', `/${names.alerts}/_mapping`, { properties: ALERT_ADDED_FIELDS });
  // A shard just created is still recovering for a moment, and a get or search on it answers 503: a writer that
  // starts with another (two detectors at once) would fail its first read of the state index. Wait until no shard of
  // them is initializing: yellow alone is not enough, OpenSearch counts a new index's initializing primary as yellow.
  await conn.request('GET', `/_cluster/health/${fixed.map(([index]) => index).join(',')}`, undefined, {
    query: { wait_for_status: 'yellow', wait_for_no_initializing_shards: 'true', timeout: '30s' },
    // Still not there: go on, and let the first write say what is wrong (a retriable error).
    ignore: [408],
  });
}
