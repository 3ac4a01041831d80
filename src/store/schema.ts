import type Database from 'better-sqlite3';
import { AUDIT_ID_RUNS_SQL } from './audit-id-index.js';

/**
 * The store's schema, as ordered migrations. `PRAGMA user_version` records how many have run.
 *
 * Events keep their indexed fields as columns; low-cardinality strings (users, groups, user agents, IPs, resources,
 * namespaces, verbs, clusters) are interned in `dict` so a row stays small. The raw JSON of each batch is stored
 * once, compressed, in `blobs`, and each event points at its line in its blob: compressing a batch together is what
 * keeps the store well under half the size of the log it came from.
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
  CREATE TABLE dict (id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE);
  CREATE TABLE blobs (
    id INTEGER PRIMARY KEY,
    first_event INTEGER NOT NULL,
    last_event INTEGER NOT NULL,
    max_time INTEGER NOT NULL,
    data BLOB NOT NULL
  );
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    stage INTEGER NOT NULL,
    audit_id BLOB NOT NULL,
    cluster INTEGER NOT NULL,
    verb INTEGER NOT NULL,
    user INTEGER NOT NULL,
    groups INTEGER NOT NULL,
    imp_user INTEGER NOT NULL,
    source_ip INTEGER NOT NULL,
    user_agent INTEGER NOT NULL,
    api_group INTEGER NOT NULL,
    api_version INTEGER NOT NULL,
    resource INTEGER NOT NULL,
    subresource TEXT NOT NULL,
    namespace INTEGER NOT NULL,
    name TEXT NOT NULL,
    code INTEGER NOT NULL,
    decision INTEGER NOT NULL,
    level INTEGER NOT NULL,
    command TEXT,
    container TEXT,
    blob INTEGER NOT NULL,
    blob_idx INTEGER NOT NULL,
    cat INTEGER
  );
  -- The identity of an event is (cluster, auditID, stage). Every stage of a request carries the same
  -- requestReceivedTimestamp, so leading with time makes the same key unique while new rows land at the right
  -- edge of the index (random UUIDs first made each insert a random B-tree write, three times slower), and
  -- the index doubles as the time index.
  CREATE UNIQUE INDEX events_key ON events (time, audit_id, stage, cluster);
  CREATE INDEX events_user_time ON events (user, time);
  -- The analyst questions (exec sessions, secret reads, RBAC changes) each touch a small share of events: a
  -- partial index over just those rows answers them at a fraction of the insert cost of a resource index.
  CREATE INDEX events_cat_time ON events (cat, time) WHERE cat IS NOT NULL;
  CREATE TABLE rollup (
    hour INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    value INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, dim, value)
  ) WITHOUT ROWID;
  CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    severity INTEGER NOT NULL,
    cluster TEXT NOT NULL,
    group_key TEXT NOT NULL,
    first_time INTEGER NOT NULL,
    last_time INTEGER NOT NULL,
    count INTEGER NOT NULL,
    audit_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    event_id INTEGER,
    last_event_id INTEGER,
    user TEXT NOT NULL,
    namespace TEXT NOT NULL,
    body TEXT NOT NULL
  );
  CREATE INDEX alerts_group ON alerts (group_key, last_time);
  CREATE INDEX alerts_time ON alerts (first_time);
  CREATE INDEX alerts_rule ON alerts (rule, first_time);
  CREATE UNIQUE INDEX alerts_once ON alerts (rule, cluster, audit_id);
  CREATE TABLE positions (source TEXT PRIMARY KEY, position TEXT NOT NULL, updated INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    received INTEGER NOT NULL,
    source TEXT NOT NULL,
    position TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB
  );
  `,
  // Batches whose events are committed and whose detection has not finished (see BatchWriter insert and finish), with
  // the writer that owns them: "pid:instance".
  `CREATE TABLE pending (blob INTEGER PRIMARY KEY, owner TEXT NOT NULL);`,
  // How a blob is compressed (BLOB_CODECS): blobs written before this column are raw deflate.
  `ALTER TABLE blobs ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;`,
  // Admission signals decoded from events' annotations (admission-rows.ts): Pod Security violations, exemptions and
  // admission-policy audit failures, a row each, with the workload and its owner. Few rows (pod and workload writes in
  // namespaces labelled for audit), so strings are kept as they are. They go with their event's blob (retention,
  // discard). Stores written before this migration have no rows for their older events.
  `
  CREATE TABLE admission (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL,
    blob INTEGER NOT NULL,
    signal INTEGER NOT NULL,
    time INTEGER NOT NULL,
    cluster TEXT NOT NULL,
    namespace TEXT NOT NULL,
    user TEXT NOT NULL,
    audit_id TEXT NOT NULL,
    verb TEXT NOT NULL,
    code INTEGER NOT NULL,
    object_kind TEXT NOT NULL,
    object_name TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    level TEXT NOT NULL,
    version TEXT NOT NULL,
    check_id TEXT NOT NULL,
    violation_level TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    policy TEXT NOT NULL,
    binding TEXT NOT NULL
  );
  CREATE INDEX admission_time ON admission (signal, time);
  CREATE INDEX admission_namespace ON admission (namespace, time);
  CREATE INDEX admission_blob ON admission (blob);
  `,
  // Was the bucket index for the lookup by auditID alone, `events_audit_id ON events ((id >> 14), audit_id)`, which
  // migration 6 replaces: a store older than both goes straight to 6 without building it.
  'SELECT 1;',
  // The lookup by auditID alone, without a time range: sorted runs merged in tiers (audit-id-index.ts).
  AUDIT_ID_RUNS_SQL,
];

/** blobs.codec values. */
export const BLOB_CODECS = { deflateRaw: 0, brotli: 1 } as const;

export function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(`store schema version ${version} is newer than this kaudit (${MIGRATIONS.length}); upgrade kaudit`);
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** Stage and decision codes stored as small integers. */
export const STAGE_CODES = { RequestReceived: 0, ResponseStarted: 1, ResponseComplete: 2, Panic: 3 } as const;
export const STAGE_NAMES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;
export const LEVEL_CODES = { None: 0, Metadata: 1, Request: 2, RequestResponse: 3 } as const;
export const LEVEL_NAMES = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;
export const DECISION_CODES = { '': 0, allow: 1, forbid: 2 } as const;
export const DECISION_NAMES = ['', 'allow', 'forbid'] as const;
/*
 * The codes of a validated event's stage, level and decision. A switch on the string, not an object lookup: the
 * strings come from JSON.parse, and looking up a property by a fresh string key costs a string-table probe per event.
 */
export function stageCode(stage: string): number {
  switch (stage) {
    case 'ResponseComplete':
      return STAGE_CODES.ResponseComplete;
    case 'RequestReceived':
      return STAGE_CODES.RequestReceived;
    case 'ResponseStarted':
      return STAGE_CODES.ResponseStarted;
    case 'Panic':
      return STAGE_CODES.Panic;
  }
  throw new Error(`unknown stage ${JSON.stringify(stage)}`);
}

export function levelCode(level: string): number {
  switch (level) {
    case 'Metadata':
      return LEVEL_CODES.Metadata;
    case 'Request':
      return LEVEL_CODES.Request;
    case 'RequestResponse':
      return LEVEL_CODES.RequestResponse;
    case 'None':
      return LEVEL_CODES.None;
  }
  throw new Error(`unknown level ${JSON.stringify(level)}`);
}

export function decisionCode(decision: string): number {
  return decision === 'allow' ? DECISION_CODES.allow : decision === 'forbid' ? DECISION_CODES.forbid : DECISION_CODES[''];
}

/** Event categories behind the analyst questions (events.cat). */
export const CATEGORY = { exec: 1, secretRead: 2, rbacChange: 3 } as const;

/** Dimensions of the hourly rollup behind the top-N queries. */
export const ROLLUP_DIMS = { user: 0, resource: 1, verb: 2, namespace: 3, sourceIP: 4 } as const;
export type RollupDim = keyof typeof ROLLUP_DIMS;
