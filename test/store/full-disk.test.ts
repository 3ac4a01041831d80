/**
 * A store whose file system fills up, on a real size-limited file system (a tmpfs the test mounts, then grows with a
 * remount: "space freed" under the running process). For each way in (file import, tail, webhook): nothing
 * acknowledged is lost, nothing is stored twice, the store opens cleanly afterwards (PRAGMA integrity_check), and the
 * failure is one clear line with a distinct exit code (import) or a not-ready /readyz with the reason (serve). The
 * Kafka source's case is in test/kafka/full-disk.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { startServe, type Running } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/config.js';
import { setLogSink } from '../../src/log.js';
import { ev, tempDir, waitFor } from '../helpers/events.js';
import { inspectStore, paddedEvents } from '../helpers/store-check.js';
import { describeWithTmpfs } from '../helpers/tmpfs.js';

const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;

function expectExactlyOnce(path: string, events: Record<string, unknown>[]): void {
  const s = inspectStore(path);
  expect(s.integrity).toBe('ok');
  expect(s.total).toBe(events.length);
  const missing = events.filter((e) => s.ids.get(e.auditID as string) !== 1).map((e) => e.auditID);
  expect(missing).toEqual([]);
}

describeWithTmpfs('a full disk under the store (real tmpfs)', (mount) => {
  const running: Running[] = [];
  afterEach(async () => {
    for (const r of running.splice(0)) await r.stop().catch(() => undefined);
    setLogSink((line) => process.stderr.write(line + '\n'));
  });

  it('kaudit ingest: one line, exit code 3, and the same command after space is freed stores the rest exactly once', () => {
    const fs = mount(3 << 20);
    const src = tempDir();
    const file = join(src, 'audit.log');
    const events = paddedEvents(12_000, 'imp');
    writeFileSync(file, events.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const db = join(fs.dir, 'k.db');
    const run = () =>
      spawnSync(process.execPath, [BIN, 'ingest', '--db', db, '--no-detect', file], {
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, KAUDIT_LOG_LEVEL: 'warn' },
      });

    const full = run();
    expect(full.status).toBe(3);
    const lines = full.stderr.trim().split('\n');
    // One line: what failed, where, how much was stored, what to do. No stack trace.
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^kaudit ingest: the store ${db} could not write \\(full: SQLITE_FULL, database or disk is full\\) while importing ${file}; at least \\d+ events were stored\\. To finish: free space .* run the same command again`,
      ),
    );
    const claimed = Number(/at least (\d+) events/.exec(lines[0]!)![1]);
    const after = inspectStore(db);
    expect(after.integrity).toBe('ok');
    expect(after.total).toBeGreaterThanOrEqual(claimed);
    expect(after.total).toBeLessThan(events.length);

    fs.resize(64 << 20);
    const again = run();
    expect(again.status).toBe(0);
    const m = /stored (\d+) events, skipped (\d+) duplicates/.exec(again.stderr)!;
    expect(Number(m[1]) + Number(m[2])).toBe(events.length);
    expect(Number(m[2])).toBe(after.total);
    expectExactlyOnce(db, events);
  });

  it('kaudit serve, webhook: 500 while full, /readyz not ready with the reason, ready again by itself when space returns; every acknowledged batch stored once', async () => {
    const fs = mount(3 << 20);
    const logs: string[] = [];
    setLogSink((l) => logs.push(l));
    const cfg = loadConfig(undefined, {});
    cfg.store.path = join(fs.dir, 'k.db');
    cfg.server.listen = '127.0.0.1:0';
    const r = await startServe(cfg, { detect: false });
    running.push(r);
    const base = `http://${r.address}`;
    const post = (items: Record<string, unknown>[]) =>
      fetch(`${base}/api/v1/audit/webhook/prod`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }),
      });
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    const batches = Array.from({ length: 40 }, (_, b) => paddedEvents(200, `wh${b}`));
    const acked: number[] = [];
    const refused: number[] = [];
    for (let b = 0; b < batches.length; b++) {
      const res = await post(batches[b]!);
      if (res.status === 200) acked.push(b);
      else {
        expect(res.status).toBe(500);
        expect(await res.json()).toEqual({ error: 'the batch could not be stored; retry' });
        refused.push(b);
      }
      if (refused.length >= 3) break;
    }
    expect(acked.length).toBeGreaterThan(0);
    expect(refused.length).toBe(3);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { status: string; error: string };
    expect(body.status).toBe('not ready');
    expect(body.error).toMatch(/store .*k\.db cannot write since .*: full \(SQLITE_FULL: database or disk is full\); free space/);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/kaudit_store_write_failures_total\{fault="full"\} [1-9]/);
    expect(metrics).toMatch(/kaudit_store_writable 0/);
    // One line said it started failing (each batch also has its own rate-limited line).
    expect(logs.filter((l) => /error store .* cannot write since/.test(l))).toHaveLength(1);
    // Every acknowledged event is stored, once.
    const mid = inspectStore(cfg.store.path);
    for (const b of acked) for (const e of batches[b]!) expect(mid.ids.get(e.auditID as string)).toBe(1);

    // Space returns; no request arrives (a load balancer took the node out): the probe finds it, and it is ready.
    fs.resize(64 << 20);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, '/readyz ready again after space was freed', 20_000);
    expect(logs.some((l) => /info store .* writes again after/.test(l))).toBe(true);
    // The apiserver retries what was refused, and some of what was acknowledged (a retry after a lost reply).
    const rest = batches.map((_, b) => b).filter((b) => !acked.includes(b));
    for (const b of [...rest, acked[0]!]) expect((await post(batches[b]!)).status).toBe(200);
    await r.stop();
    running.length = 0;
    expectExactlyOnce(cfg.store.path, batches.flat());
  });

  it('kaudit serve, tail: stops at the full store with its position committed, and reads on once space returns; every line stored once', async () => {
    const fs = mount(3 << 20);
    setLogSink(() => undefined);
    const src = tempDir();
    const log = join(src, 'audit.log');
    const events = paddedEvents(12_000, 'tail');
    writeFileSync(log, '');
    const cfg = loadConfig(undefined, {});
    cfg.store.path = join(fs.dir, 'k.db');
    cfg.server.listen = '127.0.0.1:0';
    cfg.tail.push({ path: log });
    const r = await startServe(cfg, { detect: false });
    running.push(r);
    const base = `http://${r.address}`;
    for (let i = 0; i < events.length; i += 1000)
      appendFileSync(
        log,
        events
          .slice(i, i + 1000)
          .map((e) => JSON.stringify(e))
          .join('\n') + '\n',
      );
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 503, 'the store to fill up', 60_000);
    // The committed position covers only stored lines: every line before its offset is in the store.
    // The tail's state (v2): the file being read and how far, plus the files read to their end (none here: no rotation).
    const state = JSON.parse((await r.store.position(`file:${log}`)) ?? '{}') as { v?: number; cur?: { line: number }; done?: unknown[] };
    expect(state.v).toBe(2);
    expect(state.done ?? []).toEqual([]);
    const pos = state.cur ?? { line: 0 };
    const mid = inspectStore(cfg.store.path);
    expect(mid.integrity).toBe('ok');
    expect(pos.line).toBeGreaterThan(0);
    expect(pos.line).toBeLessThan(events.length);
    for (const e of events.slice(0, pos.line)) expect(mid.ids.get(e.auditID as string)).toBe(1);

    fs.resize(64 << 20);
    await waitFor(() => inspectStore(cfg.store.path).total >= events.length, 'the tail to store the rest', 60_000);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    await r.stop();
    running.length = 0;
    expectExactlyOnce(cfg.store.path, events);
  });

  it('kaudit serve, webhook: an exec in a batch refused for a full disk raises its alert when the batch is sent again', async () => {
    const fs = mount(3 << 20);
    setLogSink(() => undefined);
    const cfg = loadConfig(undefined, {});
    cfg.store.path = join(fs.dir, 'k.db');
    cfg.server.listen = '127.0.0.1:0';
    const r = await startServe(cfg);
    running.push(r);
    const base = `http://${r.address}`;
    const post = (items: Record<string, unknown>[]) =>
      fetch(`${base}/api/v1/audit/webhook/prod`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }),
      });
    // Fill the store until batches are refused.
    for (let b = 0, refused = 0; refused < 2; b++) {
      expect(b).toBeLessThan(60);
      if ((await post(paddedEvents(200, `fill${b}`))).status === 500) refused++;
    }
    // A batch with an exec (kubectl's first stage of it, ResponseStarted): detected, then not stored.
    const exec = ev({
      auditID: 'exec-on-a-full-disk',
      verb: 'create',
      stage: 'ResponseStarted',
      requestURI: '/api/v1/namespaces/prod/pods/api-0/exec?command=sh&container=api',
      objectRef: { resource: 'pods', subresource: 'exec', namespace: 'prod', name: 'api-0' },
      responseStatus: { code: 101 },
      user: { username: 'mallory', groups: ['system:authenticated'] },
    });
    const batch = [...paddedEvents(200, 'with-exec'), exec];
    expect((await post(batch)).status).toBe(500);
    fs.resize(64 << 20);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, '/readyz ready again', 20_000);
    // The apiserver's retry: stored now, and the exec alerts.
    expect((await post(batch)).status).toBe(200);
    const alerts = (await (await fetch(`${base}/api/v1/alerts?rule=pod-exec`)).json()) as { items: { auditID: string; count: number }[] };
    expect(alerts.items.map((a) => [a.auditID, a.count])).toEqual([['exec-on-a-full-disk', 1]]);
  });
});
