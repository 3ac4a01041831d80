import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = fileURLToPath(new URL('../../src/', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? files(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : [],
  );
}

describe('the store seam', () => {
  // Another kind of store (OpenSearch) can stand behind the seam only if nothing outside src/store reaches past it.
  it('nothing outside src/store opens SQLite, names the SQLite store or runs SQL on its connection', () => {
    const reaching: string[] = [];
    for (const f of files(src)) {
      const rel = relative(src, f);
      if (rel.startsWith('store/')) continue;
      const text = readFileSync(f, 'utf8');
      if (/from ['"][./]*store\/sqlite-store\.js['"]/.test(text)) reaching.push(`${rel}: imports the SQLite store`);
      if (/from ['"]better-sqlite3['"]/.test(text)) reaching.push(`${rel}: imports better-sqlite3`);
      if (/\bstore\??\.db\b/.test(text)) reaching.push(`${rel}: uses the store's SQLite connection`);
    }
    expect(reaching).toEqual([]);
  });
});
