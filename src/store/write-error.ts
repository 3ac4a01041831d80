/**
 * Why the store could not write, told apart by SQLite's extended result code (better-sqlite3's SqliteError.code,
 * carried across the writer thread by name) or the file system's errno. A caller decides on the kind, never on the
 * message's words.
 */
export type StoreFault = 'full' | 'io' | 'readonly' | 'busy' | 'corrupt' | 'cannot-open';

const FAULT_OF_CODE: [prefix: string, fault: StoreFault][] = [
  ['SQLITE_FULL', 'full'],
  ['ENOSPC', 'full'],
  ['EDQUOT', 'full'],
  ['SQLITE_IOERR', 'io'],
  ['EIO', 'io'],
  ['SQLITE_READONLY', 'readonly'],
  ['EROFS', 'readonly'],
  ['SQLITE_BUSY', 'busy'],
  ['SQLITE_LOCKED', 'busy'],
  ['SQLITE_CORRUPT', 'corrupt'],
  ['SQLITE_NOTADB', 'corrupt'],
  ['SQLITE_CANTOPEN', 'cannot-open'],
];

/** The fault a result code names (`SQLITE_IOERR_WRITE` is `io`), or undefined for one that is not the store's. */
export function faultOfCode(code: string | undefined): StoreFault | undefined {
  if (!code) return undefined;
  for (const [prefix, fault] of FAULT_OF_CODE) if (code === prefix || code.startsWith(prefix + '_')) return fault;
  return undefined;
}

/** What to do about each fault, for the one line a failure ends with. */
export const FAULT_ADVICE: Record<StoreFault, string> = {
  full: 'free space on its file system (or raise its quota)',
  io: 'check the disk and the kernel log (dmesg) for I/O errors',
  readonly: 'make the store and its directory writable by this user',
  busy: 'stop the other process that holds the store locked',
  corrupt: 'restore the store from a backup, or move it aside to start a new one',
  'cannot-open': "check that the store's directory exists and is writable",
};

/** A write the store could not do: a batch that was not stored, a commit that failed. */
export class StoreWriteError extends Error {
  /** Retrying the same write can succeed once the cause is fixed (always: the store rolled the write back). */
  readonly retriable = true;
  constructor(
    message: string,
    readonly fault: StoreFault,
    /** SQLite's extended result code or the errno, e.g. SQLITE_FULL, SQLITE_IOERR_WRITE. */
    readonly code: string,
  ) {
    super(message);
    this.name = 'StoreWriteError';
  }
}

/**
 * The error to reject with for a failed store operation: a StoreWriteError when its code names a store fault, else a
 * plain Error (a bug, a malformed batch) that keeps its code.
 */
export function storeError(message: string, code: string | undefined): Error {
  const fault = faultOfCode(code);
  if (fault) return new StoreWriteError(message, fault, code!);
  const e = new Error(message);
  if (code) (e as Error & { code?: string }).code = code;
  return e;
}

/** The store fault behind an error, if it is one (a StoreWriteError, or an error with a store result code). */
export function storeFaultOf(e: unknown): StoreFault | undefined {
  if (e instanceof StoreWriteError) return e.fault;
  return faultOfCode((e as { code?: unknown } | undefined)?.code as string | undefined);
}

/**
 * The innermost cause in a store failure's message: "store k.db: batch 4 was rolled back with its transaction
 * (database or disk is full)" and "store k.db: commit failed: database or disk is full" both give SQLite's own words.
 */
export function innerCause(message: string): string {
  const m = /\(([^()]*)\)+\s*$/.exec(message);
  return m ? m[1]! : message.slice(message.lastIndexOf(': ') + 2);
}
