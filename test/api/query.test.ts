import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { startServe, type Running } from '../../src/cli/serve.js';
import { ev, lines, tempDir, waitFor } from '../helpers/events.js';

let running: Running | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

async function serve(extra: (c: ReturnType<typeof loadConfig>) => void = () => {}) {
  const dir = tempDir();
  const cfg = loadConfig(undefined, {});
  cfg.store.path = join(dir, 'k.db');
  cfg.server.listen = '127.0.0.1:0';
  extra(cfg);
  running = await startServe(cfg, { detect: false });
  const base = `http://${running.address}`;
  const get = async (path: string): Promise<{ status: number; body: any }> => {
    const r = await fetch(base + path);
    return { status: r.status, body: r.headers.get('content-type')?.includes('json') ? await r.json() : await r.text() };
  };
  return { dir, cfg, base, get };
}

describe('HTTP API (real server on 127.0.0.1)', () => {
  it('serves events with filters and stable cursor paging while a tail ingests', async () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    const evs = Array.from({ length: 30 }, (_, i) =>
      ev({ verb: i % 3 === 0 ? 'delete' : 'get', requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() }),
    );
    writeFileSync(log, lines(evs));
    const s = await serve((c) => c.tail.push({ path: log, cluster: 'east' }));
    await waitFor(async () => (await s.get('/api/v1/events?limit=100')).body.items?.length === 30, '30 events');
    const deletes = await s.get('/api/v1/events?verb=delete&cluster=east');
    expect(deletes.body.items).toHaveLength(10);
    expect(deletes.body.items.every((r: { verb: string; cluster: string }) => r.verb === 'delete' && r.cluster === 'east')).toBe(true);
    const p1 = await s.get('/api/v1/events?limit=12');
    appendFileSync(log, lines(Array.from({ length: 5 }, (_, i) => ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 2, 0, 0, i)).toISOString() }))));
    await waitFor(async () => (await s.get('/api/v1/events?limit=100')).body.items?.length === 35, '35 events');
    const p2 = await s.get(`/api/v1/events?limit=12&cursor=${p1.body.next}`);
    const p3 = await s.get(`/api/v1/events?limit=12&cursor=${p2.body.next}`);
    const ids = [...p1.body.items, ...p2.body.items, ...p3.body.items].map((r: { id: number }) => r.id);
    expect(new Set(ids).size).toBe(30);
    expect(p3.body.next).toBeUndefined();
    const one = await s.get(`/api/v1/events/${ids[0]}`);
    expect(one.body.event.auditID).toBe(one.body.auditID);
    expect((await s.get('/api/v1/events/999999')).status).toBe(404);
  });

  it('answers the analyst routes, and rejects bad parameters with 400', async () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    writeFileSync(
      log,
      lines([
        ev({
          verb: 'create',
          requestURI: '/api/v1/namespaces/d/pods/p/exec?command=sh&container=c',
          objectRef: { resource: 'pods', subresource: 'exec', namespace: 'd', name: 'p' },
          responseStatus: { code: 101 },
        }),
        ev({ verb: 'get', objectRef: { resource: 'secrets', namespace: 'd', name: 's' }, user: { username: 'eve' } }),
        ev({ verb: 'patch', objectRef: { resource: 'roles', namespace: 'd', name: 'r', apiGroup: 'rbac.authorization.k8s.io' } }),
      ]),
    );
    const s = await serve((c) => c.tail.push({ path: log }));
    await waitFor(async () => (await s.get('/api/v1/events')).body.items?.length === 3, '3 events');
    expect((await s.get('/api/v1/analyst/exec')).body.items[0]).toMatchObject({ name: 'p', command: 'sh', container: 'c' });
    expect((await s.get('/api/v1/analyst/secret-reads')).body.items[0]).toMatchObject({ user: 'eve', name: 's' });
    expect((await s.get('/api/v1/analyst/rbac-changes')).body.items[0]).toMatchObject({ verb: 'patch', resource: 'roles' });
    expect((await s.get('/api/v1/analyst/users/eve/activity')).body.items).toHaveLength(1);
    expect((await s.get('/api/v1/analyst/top/user')).body.items[0]).toEqual({ value: 'alice@example.com', count: 2 });
    expect((await s.get('/api/v1/events?since=yesterday-ish')).status).toBe(400);
    expect((await s.get('/api/v1/events?limit=0')).status).toBe(400);
    expect((await s.get('/api/v1/events?limit=100000')).status).toBe(400);
    expect((await s.get('/api/v1/events?cursor=zzz')).status).toBe(400);
    expect((await s.get('/api/v1/events?bogus=1')).status).toBe(400);
    expect((await s.get('/api/v1/analyst/top/planets')).status).toBe(400);
  });

  it('serves health, readiness, metrics and an OpenAPI document of its routes', async () => {
    const s = await serve();
    expect((await s.get('/healthz')).body).toEqual({ status: 'ok' });
    expect((await s.get('/readyz')).status).toBe(200);
    const m = await s.get('/metrics');
    expect(m.body).toContain('# TYPE kaudit_store_bytes gauge');
    const gauge = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(m.body)?.[1]);
    // The process's memory: resident (all threads) above the main thread's heap in use, which is above zero.
    expect(gauge('nodejs_heap_size_used_bytes')).toBeGreaterThan(1e6);
    expect(gauge('process_resident_memory_bytes')).toBeGreaterThan(gauge('nodejs_heap_size_used_bytes'));
    expect(m.body).not.toContain('kaudit_detection_state_entries'); // served without detection
    const doc = (await s.get('/api/v1/openapi.json')).body;
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/v1/events', '/api/v1/events/{id}', '/api/v1/alerts', '/api/v1/analyst/exec']));
    expect(doc.paths['/api/v1/events'].get.parameters.map((p: { name: string }) => p.name)).toContain('user');
  });
});
