import type Database from 'better-sqlite3';

/**
 * What the SQLite kind's query modules (queries.ts, timeline.ts) read through: the connection, the string
 * dictionary and the stored raw events. SqliteStore provides it; naming this instead of the class keeps those modules
 * from importing the store that imports them.
 */
export interface SqliteContext {
  readonly db: Database.Database;
  /** The dictionary id of a string, if stored. */
  lookup(value: string): number | undefined;
  /** The string of a dictionary id. */
  dictValue(id: number): string;
  /** One event's stored JSON: line `idx` of blob `blobId`. */
  rawEvent(blobId: number, idx: number): string | undefined;
}
