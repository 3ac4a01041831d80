/**
 * Decompressed bytes of an open .gz file, read through the handle with positional reads (a handle's own
 * createReadStream cannot be used twice: destroying the first stream leaves the handle unusable).
 */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createGunzip, type ZlibOptions } from 'node:zlib';

async function* chunksOf(fh: FileHandle): AsyncGenerator<Buffer> {
  let pos = 0;
  for (;;) {
    const b = Buffer.allocUnsafe(64 * 1024);
    const { bytesRead } = await fh.read(b, 0, b.length, pos);
    if (bytesRead === 0) return;
    pos += bytesRead;
    yield b.subarray(0, bytesRead);
  }
}

/** The decompressed stream of `fh` from its start; `close` stops reading (the handle stays open). */
export function gunzipHandle(fh: FileHandle, opts: ZlibOptions = {}): { stream: AsyncIterable<Buffer>; close(): void } {
  const raw = Readable.from(chunksOf(fh), { objectMode: false });
  const gunzip = createGunzip(opts);
  raw.on('error', (e) => gunzip.destroy(e));
  raw.pipe(gunzip);
  return {
    stream: gunzip,
    close() {
      raw.destroy();
      gunzip.destroy();
    },
  };
}
