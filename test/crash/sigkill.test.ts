/**
 * Crash consistency, measured: `kaudit ingest` during a large import and `kaudit serve` under a webhook load are
 * killed with SIGKILL at 20 random points each and restarted; afterwards every event is stored exactly once, every
 * exec's alert is present once (its row's count 1: detected once), no batch is left pending detection, and the store
 * passes PRAGMA integrity_check.
 *
 * The kill points are drawn from a seeded generator; the seed is printed, and KAUDIT_CRASH_SEED=<seed> replays them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { makeEvents } from '../api/helpers.js';
import { tempDir } from '../helpers/events.js';
import { rng } from '../helpers/rng.js';

const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;
const KILLS = 20;
const SEED = Number(process.env.KAUDIT_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(args: string[]): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KAUDIT_LOG_LEVEL: 'warn' } });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-20_000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, exited };
}

interface Check {
  events: number;
  alerts: number;
}

/** Every event of `events` stored once and nothing else; every exec's pod-exec alert present once, detected once. */
function checkStore(path: string, events: Record<string, unknown>[]): Check {
  const db = new Database(path, { readonly: true });
  try {
    expect((db.prepare('PRAGMA integrity_check').pluck().all() as string[]).join('; ')).toBe('ok');
    expect(db.prepare('SELECT count(*) FROM pending').pluck().get()).toBe(0);
    expect(db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(events.length);
    const ids = new Set((db.prepare('SELECT hex(audit_id) FROM events').pluck().all() as string[]).map((h) => h.toLowerCase()));
    const hex = (id: unknown) => String(id).replaceAll('-', '');
    const missing = events.filter((e) => !ids.has(hex(e.auditID)));
    expect(missing.map((e) => e.auditID)).toEqual([]);
    const execs = events.filter((e) => (e.objectRef as { subresource?: string }).subresource === 'exec').map((e) => String(e.auditID));
    const rows = db.prepare("SELECT audit_id AS id, count AS n FROM alerts WHERE rule = 'pod-exec'").all() as { id: string; n: number }[];
    const byId = new Map(rows.map((r) => [r.id, r.n]));
    expect(rows.length).toBe(execs.length);
    expect(execs.filter((id) => byId.get(id) !== 1)).toEqual([]);
    return { events: events.length, alerts: execs.length };
  } finally {
    db.close();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe(`SIGKILL at ${KILLS} random points (seed ${SEED}; KAUDIT_CRASH_SEED=${SEED} replays)`, () => {
  it('kaudit ingest: killed during a large import and run again, every event stored once and every alert once', async () => {
    const random = rng(SEED);
    const dir = tempDir();
    const file = join(dir, 'audit.log');
    // 40,000 events (~23 MB), every 20th an exec into its own pod (2,000 alerts of pod-exec).
    const events = makeEvents(40_000, { execEvery: 20 });
    writeFileSync(file, events.map((e) => JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...e })).join('\n') + '\n');
    const db = join(dir, 'k.db');
    const stored = () => {
      try {
        const r = new Database(db, { readonly: true, fileMustExist: true });
        try {
          return r.prepare('SELECT count(*) FROM events').pluck().get() as number;
        } finally {
          r.close();
        }
      } catch {
        return 0;
      }
    };
    // Kill points: a fifth during start-up (loading rules, taking over the batches the last kill left undetected), at a
    // random time after the start; the rest once the store has grown past a random number of events (drawn in
    // increasing order over the import), then a random moment more. Progress, not time: the machine's speed varies.
    // Start-up kills fall within 650 ms: a start takes 0.25-0.4 s on a quiet machine, and a run over a store that
    // already holds every event finishes in ~1.1 s, so a later point would find it gone.
    const targets = Array.from({ length: KILLS }, () => Math.floor(random() * events.length * 0.9)).sort((a, b) => a - b);
    const plan = targets.map((target) => (random() < 0.2 ? { startupMs: Math.round(50 + random() * 600) } : { target, extraMs: Math.round(random() * 200) }));
    const points: string[] = [];
    let kills = 0;
    for (const k of plan) {
      const p = run(['ingest', '--db', db, '--quiet', file]);
      if ('startupMs' in k) await Promise.race([sleep(k.startupMs!), p.exited]);
      else {
        while (p.child.exitCode === null && stored() < k.target) await Promise.race([sleep(20), p.exited]);
        await Promise.race([sleep(k.extraMs), p.exited]);
      }
      p.child.kill('SIGKILL');
      const r = await p.exited;
      if (r.signal !== 'SIGKILL') {
        // It finished first: a clean run, not a kill.
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        points.push(`finished before ${'startupMs' in k ? `${k.startupMs} ms` : `${k.target} stored + ${k.extraMs} ms`}`);
        continue;
      }
      kills++;
      points.push('startupMs' in k ? `${k.startupMs} ms after start` : `${stored()} stored`);
    }
    const storing = plan.filter((k) => !('startupMs' in k)).length;
    expect(kills, points.join('; ')).toBeGreaterThanOrEqual(KILLS - 2);
    const final = run(['ingest', '--db', db, '--quiet', file]);
    const done = await final.exited;
    expect(done.code).toBe(0);
    const c = checkStore(db, events);
    process.stderr.write(
      `crash test (ingest, seed ${SEED}): ${kills} kills (${storing} planned while storing, the rest in start-up): ${points.join('; ')}; checked ${c.events} events, ${c.alerts} alerts\n`,
    );
  }, 600_000);

  it('kaudit serve: killed under a webhook load and restarted, every acknowledged event stored once and every alert once', async () => {
    const random = rng(SEED ^ 0x5eed);
    const dir = tempDir();
    const db = join(dir, 'k.db');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/api/v1/audit/webhook/prod`;
    const sent: Record<string, unknown>[][] = [];
    let acked = 0;
    let refusals = 0;
    let sending = true;
    // Four senders, as apiservers do: a batch is retried until it is answered 200 (connection refused or reset, 5xx).
    const sender = async () => {
      while (sending) {
        const batch = makeEvents(200, { execEvery: 20 });
        sent.push(batch);
        const body = JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: batch });
        for (;;) {
          try {
            const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
            await res.arrayBuffer();
            if (res.status === 200) break;
            refusals++;
          } catch {
            refusals++;
          }
          await sleep(50 + random() * 150);
        }
        acked++;
      }
    };
    const ready = async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
      } catch {
        return false;
      }
    };
    // Kill points: a fifth during start-up, at a random time after the start; the rest once the server is ready and
    // has acknowledged a batch since it started, then a random moment more (batches in every step of the pipeline).
    const points: string[] = [];
    let server = run(['serve', '--db', db, '--listen', `127.0.0.1:${port}`]);
    const senders = [sender(), sender(), sender(), sender()];
    for (let k = 0; k < KILLS; k++) {
      if (random() < 0.2) {
        const ms = Math.round(50 + random() * 1500);
        await Promise.race([sleep(ms), server.exited]);
        points.push(`${ms} ms after start`);
      } else {
        const before = acked;
        while (server.child.exitCode === null && !(await ready())) await sleep(20);
        while (server.child.exitCode === null && acked === before) await sleep(10);
        const ms = Math.round(random() * 800);
        await Promise.race([sleep(ms), server.exited]);
        points.push(`${ms} ms after a batch`);
      }
      server.child.kill('SIGKILL');
      const r = await server.exited;
      expect(r.signal, `serve exited by itself before kill ${k + 1}: ${r.stderr}`).toBe('SIGKILL');
      server = run(['serve', '--db', db, '--listen', `127.0.0.1:${port}`]);
    }
    sending = false;
    await Promise.all(senders);
    server.child.kill('SIGTERM');
    const end = await server.exited;
    expect(end.code).toBe(0);
    const events = sent.flat();
    const c = checkStore(db, events);
    process.stderr.write(
      `crash test (serve, seed ${SEED}): ${points.length} kills: ${points.join('; ')}; ${acked} batches acknowledged after ${refusals} refused or failed attempts; checked ${c.events} events, ${c.alerts} alerts\n`,
    );
  }, 600_000);
});
