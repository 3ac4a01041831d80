import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ev, lines, tempDir } from '../helpers/events.js';

const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;

function kaudit(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', input, env: { ...process.env, KAUDIT_LOG_LEVEL: 'warn' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('kaudit CLI (built, as users run it)', () => {
  it('prints help', () => {
    const r = kaudit(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/ingest .*import audit log files/);
    expect(kaudit(['nonsense']).code).toBe(2);
  });

  it('imports plain, gzipped and EventList files, counts bad lines, and adds nothing on re-import', () => {
    const d = tempDir();
    const exec = ev({
      verb: 'create',
      requestURI: '/api/v1/namespaces/prod/pods/api-0/exec?command=bash&container=api',
      objectRef: { resource: 'pods', subresource: 'exec', namespace: 'prod', name: 'api-0' },
      user: { username: 'mallory', groups: [] },
      responseStatus: { code: 101 },
    });
    writeFileSync(join(d, 'a.log'), lines([ev(), exec]) + 'garbage\n');
    writeFileSync(join(d, 'b.log.gz'), gzipSync(lines([ev(), ev()])));
    writeFileSync(join(d, 'c.json'), JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [ev(), { kind: 0 }] }, null, 2));
    const db = join(d, 'k.db');
    const files = ['a.log', 'b.log.gz', 'c.json'].map((f) => join(d, f));
    const first = kaudit(['ingest', '--db', db, '--no-detect', ...files]);
    expect(first.code).toBe(0);
    expect(first.err).toMatch(/stored 5 events, skipped 0 duplicates, 2 bad records/);
    const again = kaudit(['ingest', '--db', db, '--no-detect', ...files]);
    expect(again.err).toMatch(/stored 0 events, skipped 5 duplicates, 2 bad records/);
    const q = kaudit(['query', 'exec', '--db', db, '--format', 'json']);
    expect(q.code).toBe(0);
    const rows = q.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toEqual([expect.objectContaining({ user: 'mallory', namespace: 'prod', name: 'api-0', container: 'api', command: 'bash', code: 101 })]);
    const all = kaudit(['query', 'events', '--db', db, '--format', 'json', '--limit', '2']);
    expect(all.out.trim().split('\n')).toHaveLength(2);
    expect(all.err).toMatch(/more: --cursor \S+/);
    // Every stage of one request, by its auditID.
    const one = kaudit(['query', 'events', '--db', db, '--format', 'json', '--audit-id', exec.auditID as string]);
    expect(
      one.out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([expect.objectContaining({ auditID: exec.auditID, user: 'mallory' })]);
    expect(kaudit(['query', 'events', '--db', db, '--format', 'json', '--audit-id', '00000000-0000-4000-8000-999999999999']).out).toBe('');
    const dl = kaudit(['query', 'dead-letters', '--db', db, '--format', 'json']);
    expect(dl.out).toContain('kind is 0');
    const bad = kaudit(['query', 'events', '--db', db, '--since', 'whenever']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/bad time "whenever"/);
  });

  it("imports an EventList as the apiserver's webhook sends it (items without kind and apiVersion)", () => {
    const d = tempDir();
    const fixture = new URL('../../fixtures/webhook/eventlist-v1.json', import.meta.url).pathname;
    const r = kaudit(['ingest', '--db', join(d, 'k.db'), '--no-detect', fixture]);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/stored [1-9]\d* events, skipped 0 duplicates, 0 bad records/);
  });

  it('imports the same webhook batch saved pretty-printed (items without kind and apiVersion), storing what the one-line file stores', () => {
    const d = tempDir();
    const fixture = new URL('../../fixtures/webhook/eventlist-v1.json', import.meta.url).pathname;
    const list = JSON.parse(readFileSync(fixture, 'utf8')) as { items: Record<string, unknown>[] };
    expect(list.items.every((i) => i.kind === undefined && i.apiVersion === undefined)).toBe(true);
    const pretty = join(d, 'batch.json');
    writeFileSync(pretty, JSON.stringify(list, null, 2));
    const r = kaudit(['ingest', '--db', join(d, 'k.db'), '--no-detect', pretty]);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(new RegExp(`stored ${list.items.length} events, skipped 0 duplicates, 0 bad records`));
    const again = kaudit(['ingest', '--db', join(d, 'k.db'), '--no-detect', fixture]);
    expect(again.err).toMatch(new RegExp(`stored 0 events, skipped ${list.items.length} duplicates, 0 bad records`));
    const rows = kaudit(['query', 'events', '--db', join(d, 'k.db'), '--format', 'json'])
      .out.trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((x) => x.auditID).sort()).toEqual(list.items.map((i) => i.auditID).sort());
  });

  it('refuses to serve a non-loopback address without TLS and tokens, and exits', () => {
    const d = tempDir();
    const r = spawnSync(process.execPath, [BIN, 'serve', '--listen', '0.0.0.0:0', '--db', join(d, 'k.db')], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/refusing to listen on 0\.0\.0\.0:0 without TLS .* and credentials/);
  });

  it('stops on a bad config with one line naming the file and the key (exit 2, no stack)', () => {
    const f = join(tempDir(), 'kaudit.yaml');
    writeFileSync(f, 'store:\n  path: /tmp/k.db\n  retention: { maxAge: forever }\n');
    const r = kaudit(['query', 'events', '--config', f]);
    expect(r.code).toBe(2);
    expect(r.err).toBe(`kaudit query: ${f}: store.retention.maxAge: bad duration "forever": use e.g. 500ms, 45s, 10m, 12h, 30d\n`);
  });

  it('says clearly when there is no store', () => {
    const r = kaudit(['query', 'events', '--db', '/nonexistent/k.db']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no store at \/nonexistent\/k.db/);
  });
});

describe('stored raw events after an import (the bytes of the line, or the redacted form)', () => {
  it('stores each line as it was (CRLF, non-ASCII, across read chunks), and a Secret body only redacted', async () => {
    const { SqliteStore } = await import('../../src/store/sqlite-store.js');
    const d = tempDir();
    const plain = JSON.stringify(ev());
    const crlf = JSON.stringify(ev());
    const accents = JSON.stringify(ev({ user: { username: 'jürgen ☃ 🙂', groups: [] } }));
    const secret = JSON.stringify(
      ev({
        verb: 'create',
        level: 'RequestResponse',
        objectRef: { resource: 'secrets', namespace: 'default', name: 'db', apiVersion: 'v1' },
        requestObject: { kind: 'Secret', apiVersion: 'v1', metadata: { name: 'db' }, data: { password: 'aHVudGVyMg==' } },
      }),
    );
    // Enough padding events that later lines cross the importer's 1 MiB read chunks.
    const pad = Array.from({ length: 2500 }, () => JSON.stringify(ev({ annotations: { note: 'x'.repeat(400) } })));
    const last = JSON.stringify(ev({ user: { username: 'jörg', groups: [] } }));
    const body = [plain, crlf + '\r', accents, ...pad, secret, last].join('\n') + '\n';
    writeFileSync(join(d, 'a.log'), body);
    const db = join(d, 'k.db');
    const r = kaudit(['ingest', '--db', db, '--no-detect', join(d, 'a.log')]);
    expect(r.err).toMatch(/stored 2505 events, skipped 0 duplicates, 0 bad records/);
    const store = new SqliteStore(db, { readonly: true });
    try {
      const rows = store.db.prepare('SELECT blob, blob_idx FROM events ORDER BY id').all() as { blob: number; blob_idx: number }[];
      const raws = rows.map((x) => store.rawEvent(x.blob, x.blob_idx)!);
      const expected = [plain, crlf, accents, ...pad];
      expect(raws.slice(0, expected.length)).toEqual(expected);
      expect(raws.at(-1)).toBe(last);
      const storedSecret = raws.at(-2)!;
      expect(storedSecret).not.toContain('aHVudGVyMg==');
      expect(JSON.parse(storedSecret).requestObject.data.password).toMatch(/redacted/i);
    } finally {
      store.close();
    }
  });
});
