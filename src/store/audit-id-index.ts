import type Database from 'better-sqlite3';

/**
 * The lookup by auditID alone (an alert's "show me the request", `--audit-id` with no time range).
 *
 * An index on auditID itself would put every insert at a random place in a B-tree as large as the store: a commit
 * of a few thousand events would rewrite a few thousand index pages, several times the log's own bytes. This index
 * leads with the event's row id cut into buckets of 2^AUDIT_ID_BUCKET_BITS consecutive events, then the auditID: a
 * commit writes only into the newest bucket's few dozen pages (measured +100-150 bytes written per event), and a
 * lookup is one seek per bucket (~4 µs each, so ~2.5 ms at 10 million events). Row ids only grow, so a bucket fills
 * once and is never written again but by retention.
 */
export const AUDIT_ID_BUCKET_BITS = 14;

/** The index, as the schema's migration creates it. */
export const AUDIT_ID_INDEX_SQL = `CREATE INDEX IF NOT EXISTS events_audit_id ON events ((id >> ${AUDIT_ID_BUCKET_BITS}), audit_id)`;

/**
 * The WHERE term for `e.audit_id = ?`, written so that SQLite seeks the index once per bucket from the oldest to the
 * newest event (min and max of the row id are each one seek). Falls back to the plain comparison on a store not yet
 * migrated (a reader opened an older store): that scans, as every lookup did before the index.
 */
export function auditIDTerm(db: Database.Database): string {
  if (!hasIndex(db)) return 'e.audit_id = ?';
  const b = AUDIT_ID_BUCKET_BITS;
  return `(e.id >> ${b}) IN (WITH RECURSIVE bucket(x) AS (SELECT (SELECT min(id) FROM events) >> ${b} UNION ALL SELECT x + 1 FROM bucket WHERE x < (SELECT max(id) FROM events) >> ${b}) SELECT x FROM bucket) AND e.audit_id = ?`;
}

const known = new WeakMap<Database.Database, boolean>();

function hasIndex(db: Database.Database): boolean {
  let has = known.get(db);
  if (has === undefined) {
    has = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'events_audit_id'").pluck().get() === 1;
    // Only a positive answer is kept: a reader of an older store starts using the index once a writer has migrated it.
    if (has) known.set(db, has);
  }
  return has;
}
