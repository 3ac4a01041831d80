import type Database from 'better-sqlite3';

/**
 * Whether the store can take a write the size of a batch: commits `bytes` of zeros (SQLite writes them as pages, to
 * the WAL and at its checkpoints to the database file), then removes them. Used while writes are failing, to learn
 * when space has come back without waiting for a source's retry (a node taken out of a load balancer gets none).
 * Throws the write's SQLite error (SQLITE_FULL, ...) when it cannot.
 */
export function probeWrite(db: Database.Database, bytes: number): void {
  const put = db.prepare("INSERT INTO meta (key, value) VALUES ('write-probe', zeroblob(?)) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  const del = db.prepare("DELETE FROM meta WHERE key = 'write-probe'");
  db.transaction(() => put.run(bytes)).immediate();
  db.transaction(() => del.run()).immediate();
}
