/** Value of a lowercase hex digit's char code, or -1. */
function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * auditIDs are UUIDs in practice (8-4-4-4-12 lowercase hex): kept as 16 bytes. Anything else is kept as text (never
 * equal to a blob in SQLite). Parsed by hand: this runs once per stored event.
 *
 * `into`: a 16-byte buffer to write the bytes to, returned instead of a new one (the writer binds one scratch buffer
 * for every row: SQLite copies a bound blob, so the buffer is free again once the statement has run).
 */
export function encodeAuditID(id: string, into?: Buffer): Buffer | string {
  if (id.length !== 36 || id.charCodeAt(8) !== 45 || id.charCodeAt(13) !== 45 || id.charCodeAt(18) !== 45 || id.charCodeAt(23) !== 45) return id;
  const out = into ?? Buffer.allocUnsafe(16);
  let o = 0;
  for (let i = 0; i < 36; i += 2) {
    if (i === 8 || i === 13 || i === 18 || i === 23) i++;
    const hi = hexVal(id.charCodeAt(i));
    const lo = hexVal(id.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) return id;
    out[o++] = (hi << 4) | lo;
  }
  return out;
}

export function decodeAuditID(v: Buffer | string): string {
  if (typeof v === 'string') return v;
  const h = v.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
