import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { cleanup, serve, type Served } from './harness.js';

/** `kaudit serve --demo` replays an alert-raising request at intervals, so a newcomer sees a live alert arrive. */
describe('demo replay', () => {
  let srv: Served;
  beforeAll(async () => {
    srv = await serve({ demo: true, replayMs: 1500 });
  });
  afterAll(async () => {
    await srv?.stop();
    if (srv) cleanup(srv.dir);
  });

  it('raises a live alert on the feed within seconds, timed now, in cluster demo', async () => {
    const stored = (await (await fetch(`${srv.url}/api/v1/alerts?limit=1`)).json()) as { items: { id: number }[] };
    const after = stored.items[0]!.id;
    const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/api/v1/alerts/stream?after=${after}`);
    const alert = await new Promise<{ id: number; time: string; cluster: string }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no live alert in 10 s:\n${srv.log()}`)), 10_000);
      ws.on('message', (d) => {
        clearTimeout(t);
        resolve(JSON.parse(String(d)));
      });
    });
    ws.close();
    expect(alert.id).toBeGreaterThan(after);
    expect(alert.cluster).toBe('demo');
    expect(Math.abs(Date.now() - Date.parse(alert.time))).toBeLessThan(60_000);
  });
});
