/**
 * What identifies a log file across rename, compression and restarts: a hash of its first bytes (as Vector's and
 * Fluent Bit's tails do). An inode changes when lumberjack gzips a backup and is reused after a delete; the first bytes
 * of an audit log hold its first event's auditID and never change, since the file only grows. A gzipped backup is
 * fingerprinted on its decompressed bytes, so it matches the plain file it came from.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { constants } from 'node:zlib';
import { gunzipHandle } from './gzip.js';

/** Bytes a fingerprint covers at most (a file shorter than this is fingerprinted on what it has). */
export const FINGERPRINT_BYTES = 256;

export interface Fingerprint {
  /** Hex SHA-256 (first 128 bits) of the file's first `headLen` bytes. */
  head: string;
  headLen: number;
}

export function fingerprintOf(prefix: Buffer, len = Math.min(prefix.length, FINGERPRINT_BYTES)): Fingerprint {
  return { head: createHash('sha256').update(prefix.subarray(0, len)).digest('hex').slice(0, 32), headLen: len };
}

/** Whether a file whose first bytes are `prefix` is the one fingerprinted. An empty fingerprint matches nothing. */
export function matches(prefix: Buffer, fp: Fingerprint): boolean {
  return fp.headLen > 0 && prefix.length >= fp.headLen && fingerprintOf(prefix, fp.headLen).head === fp.head;
}

/** The first bytes (up to FINGERPRINT_BYTES) of an open plain file. */
export async function prefixOfHandle(fh: FileHandle): Promise<Buffer> {
  const b = Buffer.alloc(FINGERPRINT_BYTES);
  const { bytesRead } = await fh.read(b, 0, b.length, 0);
  return b.subarray(0, bytesRead);
}

/**
 * The first decompressed bytes (up to FINGERPRINT_BYTES) of an open gzip file. A file still being written gives what
 * its written part decompresses to (a sync flush at the end instead of an error), possibly nothing.
 */
export async function prefixOfGzip(fh: FileHandle): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  const g = gunzipHandle(fh, { finishFlush: constants.Z_SYNC_FLUSH });
  try {
    for await (const c of g.stream) {
      chunks.push(c as Buffer);
      got += (c as Buffer).length;
      if (got >= FINGERPRINT_BYTES) break;
    }
  } catch {
    // Not gzip, or damaged past the first bytes: what decompressed so far is the answer.
  } finally {
    g.close();
  }
  return Buffer.concat(chunks).subarray(0, FINGERPRINT_BYTES);
}
