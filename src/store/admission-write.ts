import type Database from 'better-sqlite3';
import type { AdmissionRow } from './admission-rows.js';

const statements = new WeakMap<Database.Database, { insert: Database.Statement; dropBlob: Database.Statement }>();

function prepared(db: Database.Database) {
  let s = statements.get(db);
  if (!s) {
    s = {
      insert: db.prepare(`INSERT INTO admission (event_id, blob, signal, time, cluster, namespace, user, audit_id, verb, code, object_kind,
        object_name, owner_kind, owner_name, level, version, check_id, violation_level, reason, detail, policy, binding)
        VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
      dropBlob: db.prepare('DELETE FROM admission WHERE blob = ?'),
    };
    statements.set(db, s);
  }
  return s;
}

/**
 * Stores a batch's admission rows (EventRecords.admission) for the events that were new (`eventIds[i]` > 0), inside
 * the writer's open transaction: the rows commit or roll back with their events.
 */
export function insertAdmission(db: Database.Database, json: string, eventIds: readonly number[], blob: number): void {
  const s = prepared(db).insert;
  for (const [i, r] of JSON.parse(json) as [number, AdmissionRow][]) {
    const id = eventIds[i];
    if (!id) continue;
    s.run(
      id,
      blob,
      r.signal,
      r.time,
      r.cluster,
      r.namespace,
      r.user,
      r.auditID,
      r.verb,
      r.code,
      r.objectKind,
      r.objectName,
      r.ownerKind,
      r.ownerName,
      r.level,
      r.version,
      r.check,
      r.violationLevel,
      r.reason,
      r.detail,
      r.policy,
      r.binding,
    );
  }
}

/** Drops the admission rows of a blob's events (retention, a discarded batch). */
export function dropAdmission(db: Database.Database, blob: number): void {
  prepared(db).dropBlob.run(blob);
}
