/**
 * Queries that say what they did: a --limit over the page cap is reported on stderr, --all prints every matching row
 * through the cursor, `kaudit query count` and GET /api/v1/events/count, /alerts/count count what the same filters
 * list. The built CLI as users run it; the API on real HTTP.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LIMIT } from '../../src/store/queries.js';
import { cleanup, eventList, makeEvents, request, startServer, type Server } from '../api/helpers.js';
import { tempDir } from '../helpers/events.js';

const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;

function kaudit(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 256 << 20, env: { ...process.env, KAUDIT_LOG_LEVEL: 'warn' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** 23,456 events: more than two pages of the cap. Every 7th is by bob; every 50th an exec. */
const N = 23_456;

describe('kaudit query: --limit over the cap, --all and count', () => {
  let db: string;
  let events: Record<string, unknown>[];
  beforeAll(() => {
    const d = tempDir();
    events = makeEvents(N, { execEvery: 50 }).map((e, i) => (i % 7 === 3 ? { ...e, user: { username: 'bob', groups: [] } } : e));
    const file = join(d, 'audit.log');
    writeFileSync(file, events.map((e) => JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...e })).join('\n') + '\n');
    db = join(d, 'k.db');
    const r = kaudit(['ingest', '--db', db, '--no-detect', file]);
    expect(r.err).toMatch(new RegExp(`stored ${N} events`));
  }, 120_000);

  it('says on stderr that a --limit over the page cap prints the cap, and how to get the rest', () => {
    const r = kaudit(['query', 'events', '--db', db, '--format', 'json', '--limit', '20000']);
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(MAX_LIMIT);
    expect(r.err).toMatch(/--limit 20000 is over the page cap of 10000: printing at most 10000 rows; --all prints every matching row/);
    expect(r.err).toMatch(/more: --cursor \S+/);
    // Within the cap: no such line.
    expect(kaudit(['query', 'events', '--db', db, '--format', 'json', '--limit', '10']).err).not.toMatch(/page cap/);
  });

  it('--all prints every matching row once, newest first, across pages', () => {
    const r = kaudit(['query', 'events', '--db', db, '--format', 'json', '--all']);
    expect(r.code).toBe(0);
    const rows = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { auditID: string; time: string; id: number });
    expect(rows).toHaveLength(N);
    expect(new Set(rows.map((x) => x.auditID))).toEqual(new Set(events.map((e) => e.auditID)));
    for (let i = 1; i < rows.length; i++) expect(rows[i - 1]!.time >= rows[i]!.time).toBe(true);
    expect(r.err).not.toMatch(/more:/);
    // With a filter, and in the table format (one header, then every row).
    const bob = kaudit(['query', 'events', '--db', db, '--user', 'bob', '--all', '--format', 'table']);
    const lines = bob.out.trim().split('\n');
    const bobs = events.filter((_, i) => i % 7 === 3).length;
    expect(lines).toHaveLength(bobs + 1);
    expect(lines.filter((l) => l.startsWith('TIME'))).toHaveLength(1);
    expect(kaudit(['query', 'events', '--db', db, '--all', '--limit', '5']).code).toBe(2);
  });

  it('count: the number of rows the same filters list', () => {
    // Not on a terminal: one JSON object, as every query prints; --format table: the bare number.
    expect(kaudit(['query', 'count', '--db', db]).out).toBe(`{"count":${N}}\n`);
    const bobs = events.filter((_, i) => i % 7 === 3).length;
    expect(kaudit(['query', 'count', '--db', db, '--user', 'bob', '--format', 'table']).out).toBe(`${bobs}\n`);
    expect(JSON.parse(kaudit(['query', 'count', 'events', '--db', db, '--user', 'bob', '--format', 'json']).out)).toEqual({ count: bobs });
    const execs = events.filter((e) => (e.objectRef as { subresource?: string }).subresource === 'exec').length;
    expect(kaudit(['query', 'count', '--db', db, '--resource', 'pods', '--verb', 'create', '--format', 'table']).out).toBe(`${execs}\n`);
    expect(kaudit(['query', 'count', '--db', db, '--user', 'nobody-at-all', '--format', 'table']).out).toBe('0\n');
    expect(kaudit(['query', 'count', 'alerts', '--db', db, '--format', 'table']).out).toBe('0\n');
    const bad = kaudit(['query', 'count', 'pods', '--db', db]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/count takes events \(the default\) or alerts/);
  });
});

describe('GET /api/v1/events/count and /api/v1/alerts/count', () => {
  let s: Server;
  beforeAll(async () => {
    s = await startServer();
    // 1,200 events, 24 of them execs, which the test detector alerts on (one alert row each).
    const items = makeEvents(1200, { execEvery: 50, podPrefix: 'high-' });
    for (let i = 0; i < items.length; i += 400)
      expect(
        (await request(`${s.url}/api/v1/audit/webhook/prod`, eventList(items.slice(i, i + 400)), { headers: { 'content-type': 'application/json' } })).status,
      ).toBe(200);
  });
  afterAll(async () => {
    await s.close();
    cleanup(s.dir);
  });
  const get = async (path: string) => {
    const r = await fetch(s.url + path);
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };

  it('counts what the same filters list', async () => {
    expect(await get('/api/v1/events/count')).toEqual({ status: 200, body: { count: 1200 } });
    expect((await get('/api/v1/events/count?verb=create&cluster=prod')).body).toEqual({ count: 24 });
    const listed = await get('/api/v1/events?verb=create&cluster=prod&limit=1000');
    expect((listed.body.items as unknown[]).length).toBe(24);
    expect((await get('/api/v1/events/count?user=nobody')).body).toEqual({ count: 0 });
    expect((await get('/api/v1/events/count?since=2020-01-01&until=2020-01-02')).body).toEqual({ count: 0 });
    expect(await get('/api/v1/alerts/count')).toEqual({ status: 200, body: { count: 24 } });
    expect((await get('/api/v1/alerts/count?severity=critical')).body).toEqual({ count: 0 });
    expect((await get('/api/v1/alerts/count?rule=test.pod-exec&severity=high')).body).toEqual({ count: 24 });
  });

  it('refuses what it does not take, with 400, and is in the OpenAPI document', async () => {
    const r = await get('/api/v1/events/count?limit=5');
    expect(r.status).toBe(400);
    expect(String(r.body.error)).toMatch(/additional properties|must NOT have additional/i);
    expect((await get('/api/v1/events/count?since=whenever')).status).toBe(400);
    const doc = (await get('/api/v1/openapi.json')).body as { paths: Record<string, { get: { parameters: { name: string }[] } }> };
    expect(doc.paths['/api/v1/events/count']!.get.parameters.map((p) => p.name)).toEqual(expect.arrayContaining(['user', 'verb', 'since', 'until', 'cluster']));
    expect(doc.paths['/api/v1/alerts/count']).toBeDefined();
  });
});
