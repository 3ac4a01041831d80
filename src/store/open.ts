import { SqliteStore } from './sqlite-store.js';
import type { AuditStore, StoreOptions } from './store.js';

/**
 * Opens the store at `path` (the embedded SQLite kind; the only kind so far). Apart from the seam (store.ts), so that
 * the seam names no kind and no kind's module imports the seam back through it.
 */
export function openStore(path: string, opts: StoreOptions = {}): AuditStore {
  return new SqliteStore(path, opts);
}
