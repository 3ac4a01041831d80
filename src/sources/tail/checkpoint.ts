/**
 * The tail's saved state, committed in the store with each batch it ends (events and position in one transaction;
 * see Store): the file being read and how far, and the files read to their end. Versioned: a state written by an
 * older kaudit (v1: just the position in one file) is read as a v2 state with that file in progress.
 */
import { FINGERPRINT_BYTES, type Fingerprint } from './fingerprint.js';

/** Where reading stands in one file. */
export interface FilePosition extends Fingerprint {
  /** Informational (device and inode change on gzip, and inodes are reused): the fingerprint decides. */
  dev: number;
  ino: number;
  /** Byte offset just past the last line committed (in the decompressed bytes of a gzipped file). */
  offset: number;
  /** Lines consumed up to offset (for error messages). */
  line: number;
  /** The file's name when last read (for messages). */
  name?: string;
}

export interface TailState {
  v: 2;
  /** The file being read; none between two files (the last one finished, the next not yet opened). */
  cur?: FilePosition;
  /** Fingerprints of the last files read to their end, oldest first (at most DONE_KEPT). */
  done: Fingerprint[];
}

/**
 * Finished files remembered. Only the newest one still present matters (files are read in write order, so everything
 * before it was read too); more let the tail keep its place when a few of the newest backups have been deleted.
 */
export const DONE_KEPT = 16;

export function emptyState(): TailState {
  return { v: 2, done: [] };
}

function isFingerprint(x: unknown): x is Fingerprint {
  const f = x as Fingerprint;
  return typeof f === 'object' && f !== null && typeof f.head === 'string' && Number.isInteger(f.headLen) && f.headLen >= 0 && f.headLen <= FINGERPRINT_BYTES;
}

function isPosition(x: unknown): x is FilePosition {
  const p = x as FilePosition;
  return isFingerprint(p) && Number.isInteger(p.offset) && p.offset >= 0 && Number.isInteger(p.line) && p.line >= 0;
}

/** A saved state, or undefined when it is not one (the caller says so and starts afresh). */
export function parseState(text: string): TailState | undefined {
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof x !== 'object' || x === null) return undefined;
  const o = x as Record<string, unknown>;
  if (o.v === 2) {
    if (!Array.isArray(o.done) || !o.done.every(isFingerprint)) return undefined;
    if (o.cur !== undefined && !isPosition(o.cur)) return undefined;
    return { v: 2, cur: o.cur as FilePosition | undefined, done: (o.done as Fingerprint[]).slice(-DONE_KEPT) };
  }
  // v1: { dev, ino, head, headLen, offset, line } of the file being read.
  if (o.v === undefined && isPosition(o)) {
    const p = o as unknown as FilePosition;
    return { v: 2, cur: { head: p.head, headLen: p.headLen, dev: Number(p.dev) || 0, ino: Number(p.ino) || 0, offset: p.offset, line: p.line }, done: [] };
  }
  return undefined;
}

export function encodeState(s: TailState): string {
  return JSON.stringify(s);
}

/** The state once `fp` has been read to its end and nothing is open. */
export function finished(s: TailState, fp: Fingerprint | undefined): TailState {
  const done =
    fp && fp.headLen > 0
      ? [...s.done.filter((d) => d.head !== fp.head || d.headLen !== fp.headLen), { head: fp.head, headLen: fp.headLen }].slice(-DONE_KEPT)
      : s.done;
  return { v: 2, done };
}
