import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseTokens } from '../../src/api/auth.js';

const T1 = '0123456789abcdef0123456789abcdef';
const T2 = 'fedcba9876543210fedcba9876543210';

describe('tokens file', () => {
  it('reads TOKEN SCOPE [CLUSTER] lines, with comments, CRLF line ends and a byte order mark', () => {
    const text = `\ufeff${T1} admin\r\n# a comment\r\n\r\n  ${T2}   ingest   prod-eu  # the apiserver of prod-eu\r\n`;
    const entries = parseTokens(text, 'tokens');
    expect(entries.map((e) => [e.scope, e.cluster, e.where])).toEqual([
      ['admin', undefined, 'tokens:1'],
      ['ingest', 'prod-eu', 'tokens:4'],
    ]);
    // The mark is not part of the first token: the token as clients send it matches.
    expect(entries[0]!.digest.equals(createHash('sha256').update(T1).digest())).toBe(true);
  });

  it('names the line and what is wrong with it', () => {
    expect(() => parseTokens(`${T1} read\n${T1} admin\n`, 'f')).toThrow(/f:2: the same token appears twice/);
    expect(() => parseTokens('short read\n', 'f')).toThrow(/f:1: token is too short/);
    expect(() => parseTokens(`${T1} root\n`, 'f')).toThrow(/scope "root" is not one of ingest, read, admin/);
  });
});
