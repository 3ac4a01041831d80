/** Store checks for the fault tests: what is stored, how often, and whether the file is sound. */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { ev } from './events.js';

/** Events that compress badly (random hex in an annotation), so a few thousand fill a few MiB. */
export function paddedEvents(n: number, tag: string): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ev({ auditID: `${tag}-${String(i).padStart(8, '0')}`, annotations: { pad: randomBytes(300).toString('hex') } }));
}

/** Every stored event's auditID with how often it is stored, and the store's integrity check, on a fresh connection. */
export function inspectStore(path: string): { ids: Map<string, number>; total: number; integrity: string } {
  const db = new Database(path, { readonly: true });
  try {
    const ids = new Map<string, number>();
    // audit_id is stored as 16 bytes for UUIDs, else as text: these tests use text ids.
    for (const r of db.prepare('SELECT CAST(audit_id AS TEXT) AS id, count(*) AS n FROM events GROUP BY audit_id').all() as { id: string; n: number }[])
      ids.set(r.id, r.n);
    const total = db.prepare('SELECT count(*) FROM events').pluck().get() as number;
    const integrity = (db.prepare('PRAGMA integrity_check').pluck().all() as string[]).join('; ');
    return { ids, total, integrity };
  } finally {
    db.close();
  }
}
