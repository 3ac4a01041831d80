import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeAuditID, encodeAuditID } from '../../src/store/audit-id.js';

describe('auditID encoding', () => {
  it('keeps a UUID as its 16 bytes, and gives it back as it was', () => {
    for (let i = 0; i < 200; i++) {
      const id = randomUUID();
      const enc = encodeAuditID(id);
      expect(Buffer.isBuffer(enc)).toBe(true);
      expect((enc as Buffer).toString('hex')).toBe(id.replaceAll('-', ''));
      expect(decodeAuditID(enc)).toBe(id);
    }
  });

  it('keeps anything that is not a lowercase 8-4-4-4-12 UUID as text, unchanged', () => {
    for (const id of ['', 'abc', 'A1B2C3D4-0000-4000-8000-000000000000', '0000000g-0000-4000-8000-000000000000', '00000000-0000-4000-8000-00000000000', '00000000-0000-4000-8000-0000000000000', '000000000000-4000-8000-000000000000-', '00000000_0000_4000_8000_000000000000']) {
      expect(encodeAuditID(id)).toBe(id);
      expect(decodeAuditID(encodeAuditID(id))).toBe(id);
    }
  });
});
