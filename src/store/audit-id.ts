const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** auditIDs are UUIDs in practice: kept as 16 bytes. Anything else is kept as text (never equal to a blob in SQLite). */
export function encodeAuditID(id: string): Buffer | string {
  if (id.length === 36 && UUID.test(id)) return Buffer.from(id.replace(/-/g, ''), 'hex');
  return id;
}

export function decodeAuditID(v: Buffer | string): string {
  if (typeof v === 'string') return v;
  const h = v.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
