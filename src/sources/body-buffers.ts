/**
 * Recycled buffers for webhook request bodies. A body read chunk by chunk, its items kept as views of the socket's
 * chunks (16 KiB each over TLS) until the batch commits, keeps those chunks alive for a second or more under load: long
 * enough to reach V8's old generation, where the dead ones pile up outside the heap until the next full collection.
 * Measured on `kaudit serve` under a 20,000 events/s webhook load: 20-65 MB of array buffers, most of them dead, and
 * malloc's heap grown to match (issue #21: resident memory under 200 MB and flat). Copied into a buffer taken from
 * here, the chunks die young; the buffer comes back when the request is answered and is filled again by the next one.
 *
 * A buffer must be given back only when nothing reads its bytes any more (the request's batch committed or refused):
 * its next body overwrites them. One that is never given back is only a buffer the collector frees.
 */
export class BodyBuffers {
  private spare: Buffer[] = [];
  private spareBytes = 0;
  /** Bytes of the buffers taken and not given back. */
  private inUse = 0;

  /**
   * `maxBytes`: the most held in buffers in use and kept together (the webhook's admitted body bytes: more are never
   * in use at once), so that what is kept for reuse is only what the bodies in progress leave.
   */
  constructor(private readonly maxBytes: number) {}

  /** A buffer of at least `bytes`: the smallest kept one that fits, else a new one. */
  take(bytes: number): Buffer {
    let best = -1;
    for (let i = 0; i < this.spare.length; i++) {
      const b = this.spare[i]!;
      if (b.length >= bytes && (best < 0 || b.length < this.spare[best]!.length)) best = i;
    }
    if (best >= 0) {
      const b = this.spare[best]!;
      this.spare[best] = this.spare[this.spare.length - 1]!;
      this.spare.pop();
      this.spareBytes -= b.length;
      this.inUse += b.length;
      return b;
    }
    // Rounded up to 64 KiB, so a buffer fits the next bodies of about the same size.
    const b = Buffer.allocUnsafeSlow(Math.max(64 * 1024, Math.ceil(bytes / 65536) * 65536));
    this.inUse += b.length;
    return b;
  }

  /**
   * Keeps `b` (taken from here, given back once) for a later body, unless the buffers in use and kept would pass the
   * bound: then it is left to the collector.
   */
  give(b: Buffer): void {
    this.inUse -= b.length;
    if (this.inUse + this.spareBytes + b.length > this.maxBytes) return;
    this.spare.push(b);
    this.spareBytes += b.length;
  }

  /** Bytes kept for reuse. */
  get bytes(): number {
    return this.spareBytes;
  }
}
