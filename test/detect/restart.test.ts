import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { startServe, type Running } from '../../src/cli/serve.js';
import { loadConfig } from '../../src/config/config.js';
import { createDetector } from '../../src/detect/index.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { counts, queryAlerts } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { WriterThread } from '../../src/store/writer.js';
import { ev as raw, lines, tempDir, waitFor } from '../helpers/events.js';
import { ev } from './helpers.js';

// Open windows (thresholds, sequences) and the requests a rule has already handled survive a restart of
// `kaudit serve`: saved in the store at a stop, taken back at the next start.

const denied = (user: string, at: string) => ({ verb: 'list', code: 403, user, objectRef: { resource: 'pods', namespace: 'web' }, at });
const rbac = (user: string, at: string) => ({
  verb: 'create',
  user,
  at,
  objectRef: { resource: 'rolebindings', apiGroup: 'rbac.authorization.k8s.io', namespace: 'web', name: 'rb' },
});
const pod = (user: string, at: string) => ({ verb: 'create', user, at, objectRef: { resource: 'pods', namespace: 'web', name: 'p1' } });
const exec = (stage: string, at: string) => ({
  verb: 'create',
  stage,
  auditID: 'exec-1',
  code: 101,
  at,
  objectRef: { resource: 'pods', subresource: 'exec', namespace: 'default', name: 'web-1' },
  query: 'command=bash&container=web',
});

describe('detection state across a restart (engine)', { timeout: 30_000 }, () => {
  it('a loaded engine goes on where the saved one stopped; a fresh one starts empty', async () => {
    const before = await createDetector();
    const first = await before.detect([
      ...Array.from({ length: 9 }, (_, i) => ev(denied('eve', `+${i}s`))),
      ev(rbac('bob', '+10s')),
      ev(exec('ResponseStarted', '+11s')),
    ]);
    expect(first.map((a) => a.rule)).toContain('pod-exec');
    expect(first.map((a) => a.rule)).not.toContain('forbidden-burst');
    const saved = JSON.parse(JSON.stringify(before.saveState())) as unknown;

    const next = [ev(denied('eve', '+20s')), ev(pod('bob', '+30s')), ev(exec('ResponseComplete', '+40s'))];
    const after = await createDetector();
    const r = after.loadState(saved);
    expect(r.skipped).toBe(0);
    expect(r.keys).toBeGreaterThanOrEqual(3);
    const rules = (await after.detect(next.map((e) => structuredClone(e)))).map((a) => a.rule);
    expect(rules).toContain('forbidden-burst'); // the 10th denial, nine of them before the restart
    expect(rules).toContain('workload-after-rbac-change'); // the sequence's first step before the restart
    expect(rules).not.toContain('pod-exec'); // the same exec request, already alerted on before the restart

    const fresh = (await (await createDetector()).detect(next.map((e) => structuredClone(e)))).map((a) => a.rule);
    expect(fresh).not.toContain('forbidden-burst');
    expect(fresh).not.toContain('workload-after-rbac-change');
    expect(fresh).toContain('pod-exec');
  });

  it('a rule changed in between starts afresh; the others keep their state; junk is skipped', async () => {
    const before = await createDetector();
    await before.detect([...Array.from({ length: 9 }, (_, i) => ev(denied('eve', `+${i}s`))), ev(rbac('bob', '+10s'))]);
    const saved = JSON.parse(JSON.stringify(before.saveState())) as unknown;
    const tuned = await createDetector({ config: { rules: { 'forbidden-burst': { threshold: { count: 11 } } } } });
    const r = tuned.loadState(saved);
    expect(r.skipped).toBeGreaterThanOrEqual(1);
    const rules = (await tuned.detect([ev(denied('eve', '+20s')), ev(denied('eve', '+21s')), ev(pod('bob', '+30s'))])).map((a) => a.rule);
    expect(rules).not.toContain('forbidden-burst'); // 2 of 11 counted: the 9 before were of the old rule
    expect(rules).toContain('workload-after-rbac-change');

    for (const junk of [
      null,
      'x',
      [],
      {},
      { format: 'kaudit-detection-state', version: 99 },
      { format: 'kaudit-detection-state', version: 1, cores: 'x', matchers: [[1, 2], null] },
    ]) {
      const d = await createDetector();
      expect(() => d.loadState(junk)).not.toThrow();
      expect(d.loadState(junk).keys).toBe(0);
    }
  });
});

describe('when the state may be saved', () => {
  it('not once a batch has failed: its events may have been counted without being stored', async () => {
    const dir = tempDir();
    const store = new SqliteStore(join(dir, 'k.db'));
    const detector = await createDetector();
    let fail = false;
    const pipeline = new Pipeline({
      writer: store,
      detector: {
        wants: (e) => detector.wants(e),
        detect: async (evs) => {
          const out = await detector.detect(evs); // state counted, then the batch fails
          if (fail) throw new Error('detector failed');
          return out;
        },
      },
    });
    const batch = (s: number) => ({
      source: 'test',
      cluster: 'c',
      records: [
        {
          text: JSON.stringify(
            raw({
              verb: 'list',
              responseStatus: { metadata: {}, code: 403 },
              annotations: { 'authorization.k8s.io/decision': 'forbid' },
              requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString(),
            }),
          ),
          where: `x:${s}`,
        },
      ],
    });
    await pipeline.submit(batch(1));
    expect(pipeline.consistent).toBe(true);
    fail = true;
    await expect(pipeline.submit(batch(2))).rejects.toThrow(/detector failed/);
    expect(pipeline.consistent).toBe(false);
    store.close();
  });
});

describe('the saved state in the store (writer thread)', () => {
  const rows = (path: string) => {
    const db = new Database(path, { readonly: true });
    const n = db.prepare("SELECT count(*) FROM meta WHERE key = 'state:detection'").pluck().get() as number;
    db.close();
    return n;
  };

  it('is taken once, and the taking is committed before any other write', async () => {
    const path = join(tempDir(), 'k.db');
    let w = await WriterThread.open(path);
    await w.saveState('detection', '{"x":1}');
    expect(rows(path)).toBe(1); // committed at once, seen by another connection
    await w.close();
    w = await WriterThread.open(path);
    expect(await w.takeState('detection')).toBe('{"x":1}');
    expect(rows(path)).toBe(0); // nothing else written since: the delete is committed on its own
    expect(await w.takeState('detection')).toBeUndefined();
    await w.close();
  });

  it('a damaged row is reported and removed, not left to fail every start', async () => {
    const path = join(tempDir(), 'k.db');
    let w = await WriterThread.open(path);
    await w.close();
    const db = new Database(path);
    db.prepare("INSERT INTO meta (key, value) VALUES ('state:detection', ?)").run(Buffer.from('not brotli at all'));
    db.close();
    w = await WriterThread.open(path);
    await expect(w.takeState('detection')).rejects.toThrow();
    expect(rows(path)).toBe(0);
    expect(await w.takeState('detection')).toBeUndefined();
    await w.close();
  });
});

describe('detection state across a restart of kaudit serve (real tail, store and writer thread)', { timeout: 60_000 }, () => {
  let running: Running | undefined;
  afterEach(async () => {
    await running?.stop();
    running = undefined;
  });

  const at = (s: number) => new Date(Date.UTC(2026, 10, 2, 9, 0, s)).toISOString();
  const denial = (s: number) =>
    raw({
      verb: 'list',
      user: { username: 'eve', groups: ['system:authenticated'] },
      responseStatus: { metadata: {}, code: 403 },
      annotations: { 'authorization.k8s.io/decision': 'forbid', 'authorization.k8s.io/reason': '' },
      requestReceivedTimestamp: at(s),
    });

  async function serve(dir: string, log: string, persist?: boolean): Promise<Running> {
    const cfg = loadConfig(undefined, {});
    cfg.store.path = join(dir, 'k.db');
    cfg.server.listen = '127.0.0.1:0';
    cfg.tail.push({ path: log });
    if (persist !== undefined) cfg.detection = { state: { persist } };
    running = await startServe(cfg);
    return running;
  }

  // The serve under test has the embedded (SQLite) store; its synchronous queries read it directly.
  const stored = (r: Running) => counts(r.store as SqliteStore).events;
  const bursts = (r: Running) => queryAlerts(r.store as SqliteStore, { rule: ['forbidden-burst'] }).items.length;

  async function nineThenOne(persist?: boolean): Promise<{ alerts: number; stateLeft: boolean; stateBytes: number }> {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    writeFileSync(log, lines(Array.from({ length: 9 }, (_, i) => denial(i))));
    let r = await serve(dir, log, persist);
    await waitFor(() => stored(r) === 9, 'nine events stored');
    await r.pipeline.idle();
    expect(bursts(r)).toBe(0);
    // eve's open window (one threshold key) shows on /metrics.
    expect(r.metrics.render()).toMatch(/^kaudit_detection_state_entries [1-9]\d*$/m);
    // No rule has fired yet: no request-id set holds memory.
    expect(r.metrics.render()).toMatch(/^kaudit_detection_state_bytes 0$/m);
    await r.stop();
    running = undefined;

    r = await serve(dir, log, persist);
    // Taken at the start: a stop without a save (a crash) must not leave an older state to be loaded again.
    const db = new Database(join(dir, 'k.db'), { readonly: true });
    const stateLeft = db.prepare("SELECT count(*) FROM meta WHERE key LIKE 'state:%'").pluck().get() as number;
    db.close();
    appendFileSync(log, lines([denial(20)]));
    await waitFor(() => stored(r) === 10, 'the tenth event stored');
    await r.pipeline.idle();
    const stateBytes = Number(/^kaudit_detection_state_bytes (\d+)$/m.exec(r.metrics.render())?.[1]);
    return { alerts: bursts(r), stateLeft: stateLeft > 0, stateBytes };
  }

  it('a burst that straddles the restart raises its alert', async () => {
    const r = await nineThenOne();
    expect(r.stateLeft).toBe(false);
    expect(r.alerts).toBe(1);
    // kaudit serve reserves a set's whole bound when its rule first fires: forbidden-burst's 10,000 ids at 42 bytes.
    expect(r.stateBytes).toBe(420_000);
  });

  it('with detection.state.persist false, windows start empty after a restart', async () => {
    const r = await nineThenOne(false);
    expect(r.alerts).toBe(0);
  });
});
