import type { BatchWriter } from './batch.js';
import type { OpenSearchSettings } from './opensearch/connection.js';
import { safeUrl } from './opensearch/safe-url.js';
import type { SqliteStore } from './sqlite-store.js';
import type { AuditStore, RetentionOptions, StoreOptions, StoreReader } from './store.js';
import { dropEarlyWriter, WriterThread } from './writer.js';

/**
 * Opening a store of either kind. Apart from the seam (store.ts), so that the seam names no kind and no kind's module
 * imports the seam back through it. Callers get the seam's interfaces; only this module knows the classes.
 */

/**
 * The OpenSearch kind, loaded only when configured: its client is some 70 modules, ~40 ms of every start of a
 * command that uses SQLite (a one-event import included).
 */
async function openSearchStore(): Promise<typeof import('./opensearch/store.js').OpenSearchStore> {
  return (await import('./opensearch/store.js')).OpenSearchStore;
}

/** Where a store is: a SQLite file, or an OpenSearch cluster when `opensearch` is set. */
export interface StoreLocation {
  path: string;
  opensearch?: OpenSearchSettings;
}

/**
 * The SQLite kind in this thread, loaded when a command reads the store here: an import writes through the writer
 * thread only, and loading better-sqlite3 in the main thread too was ~30-70 ms of its start (issue #21).
 */
async function sqliteStore(): Promise<typeof SqliteStore> {
  return (await import('./sqlite-store.js')).SqliteStore;
}

/** Opens the configured store in this thread, to read (`readonly`) or to read and write. */
export async function openStoreAt(where: StoreLocation, opts: StoreOptions = {}): Promise<AuditStore> {
  if (where.opensearch) return (await openSearchStore()).open(where.opensearch, opts);
  return new (await sqliteStore())(where.path, opts);
}

/** What a long-running writer of the store needs beyond the batch protocol. */
export interface StoreWriter extends BatchWriter {
  readonly redactionKey: Buffer;
  close(): Promise<void> | void;
}

/** A writer of the configured store: SQLite's writer thread, or an OpenSearch client. */
export async function openStoreWriter(where: StoreLocation, opts: StoreOptions = {}): Promise<StoreWriter> {
  if (where.opensearch) {
    void dropEarlyWriter();
    return (await openSearchStore()).open(where.opensearch, opts);
  }
  return WriterThread.open(where.path, opts);
}

/** Where a store is, for messages (the OpenSearch URL without credentials). */
export function describeStore(where: StoreLocation): string {
  return where.opensearch ? safeUrl(where.opensearch.url) : where.path;
}

export interface ServingStore {
  /** Where, for messages (a path, or the OpenSearch URL without credentials). */
  where: string;
  writer: StoreWriter;
  reader: StoreReader;
  /**
   * A batch-sized write that resolves once the store can write again (the SQLite kind, whose writes fail on a full or
   * broken disk); absent where the store reports its own health (OpenSearch: `check`).
   */
  probeWrite?: (bytes: number) => Promise<void>;
  /** Other processes write to it too (the fleet store): this node's feed must follow the store, not its own pipeline. */
  shared: boolean;
  close(): Promise<void>;
}

/**
 * The store of `kaudit serve`: SQLite's writes go through one writer thread and reads through their own connection;
 * OpenSearch takes both on one client.
 */
export async function openServingStore(where: StoreLocation, opts: StoreOptions, retention?: RetentionOptions & { intervalMs: number }): Promise<ServingStore> {
  if (where.opensearch) {
    void dropEarlyWriter();
    const s = await (await openSearchStore()).open(where.opensearch, { ...opts, retention });
    return { where: s.conn.where, writer: s, reader: s, shared: true, close: () => s.close() };
  }
  const writer = await WriterThread.open(where.path, opts, retention);
  let reader: SqliteStore;
  try {
    reader = new (await sqliteStore())(where.path, { readonly: true });
  } catch (e) {
    await writer.close();
    throw e;
  }
  return {
    where: where.path,
    writer,
    reader,
    probeWrite: (bytes) => writer.probeWrite(bytes),
    shared: false,
    async close() {
      await writer.close();
      reader.close();
    },
  };
}
