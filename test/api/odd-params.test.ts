import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServe, type Running } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/config.js';
import { ev, lines, tempDir } from '../helpers/events.js';
import { writeFileSync } from 'node:fs';

let running: Running | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

/** Values a client may send where the API expects something else. */
const ODD = [
  '',
  ' ',
  'x',
  '-1',
  '0',
  '1.5',
  '1e309',
  '99999999999999999999999',
  'NaN',
  '*',
  '%',
  "'",
  '"',
  '\\',
  '\u0000',
  'é☃',
  '[]',
  '{}',
  'null',
  'true',
  '2026-13-45T99:99:99Z',
  '-5m',
  'x'.repeat(5000),
];

describe('HTTP API with odd parameters (real server, every GET route of its own OpenAPI document)', () => {
  it('answers each with a page or a 4xx JSON error ({ error }), never a 5xx, and keeps serving', async () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    writeFileSync(
      log,
      lines([
        ev(),
        ev({
          verb: 'create',
          objectRef: { resource: 'pods', subresource: 'exec', namespace: 'default', name: 'web-1' },
          requestURI: '/api/v1/namespaces/default/pods/web-1/exec?command=sh',
        }),
      ]),
    );
    const cfg = loadConfig(undefined, {});
    cfg.store.path = join(dir, 'k.db');
    cfg.server.listen = '127.0.0.1:0';
    cfg.tail = [{ path: log }];
    running = await startServe(cfg, { detect: false });
    const base = `http://${running.address}`;
    const doc = (await (await fetch(`${base}/api/v1/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { parameters?: { name: string; in: string }[] }>>;
    };
    const gets = Object.entries(doc.paths).filter(([, ops]) => ops.get);
    expect(gets.length).toBeGreaterThanOrEqual(8);
    let requests = 0;
    const statuses = new Map<number, number>();
    const check = async (url: string) => {
      const r = await fetch(url);
      requests++;
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      const body = await r.text();
      expect(r.status, `${url.slice(0, 200)} -> ${body.slice(0, 200)}`).toBeLessThan(500);
      if (r.status >= 400) expect(JSON.parse(body), url.slice(0, 200)).toHaveProperty('error');
    };
    for (const [path, ops] of gets) {
      const params = ops.get!.parameters ?? [];
      const fill = (p: string, v: string) => p.replace(/\{(\w+)\}/g, () => encodeURIComponent(v));
      const pathParams = params.filter((p) => p.in === 'path');
      // Odd path parameters (with ordinary query).
      if (pathParams.length > 0) for (const v of ODD) await check(`${base}${fill(path, v)}`);
      // Each query parameter odd in turn (path parameters ordinary).
      const ordinary = fill(path, pathParams.some((p) => p.name === 'dim') ? 'user' : pathParams.some((p) => p.name === 'id') ? '1' : 'alice');
      for (const q of params.filter((p) => p.in === 'query')) {
        for (const v of ODD) await check(`${base}${ordinary}?${q.name}=${encodeURIComponent(v)}`);
        // Given twice.
        await check(`${base}${ordinary}?${q.name}=1&${q.name}=2`);
      }
      // Unknown parameters.
      await check(`${base}${ordinary}?nosuchparam=1`);
    }
    expect(requests).toBeGreaterThan(300);
    // Both kinds of answer happened: the sweep exercised accepted and refused values.
    expect([...statuses.keys()].some((s) => s < 300)).toBe(true);
    expect([...statuses.keys()].some((s) => s >= 400)).toBe(true);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  }, 120_000);
});
