import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertEventFields, type Alert, type Detector } from '../../src/detect/alert.js';
import type { NormalisedEvent } from '../../src/events/types.js';
import { Metrics } from '../../src/metrics.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { counts, deadLetters, execSessions, queryAlerts, queryEvents, secretReads, rbacChanges, top, userActivity, getEvent } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { toRecords } from '../../src/store/records.js';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { WriterThread } from '../../src/store/writer.js';
import { ev, tempDir } from '../helpers/events.js';

/** A detector that flags exec requests: enough to see alerts flow; the real engine has its own tests. */
class ExecDetector implements Detector {
  seen = 0;
  detect(events: readonly NormalisedEvent[]): Alert[] {
    this.seen += events.length;
    return events
      .filter((e) => e.subresource === 'exec')
      .map((e) => ({
        rule: 'pod-exec',
        title: 'exec',
        severity: 'high',
        tags: ['T1609'],
        summary: `${e.user} exec ${e.name}`,
        ...alertEventFields(e),
        objectRef: { resource: e.resource, namespace: e.namespace, name: e.name },
        groupKey: `pod-exec|${e.cluster}|${e.user}|${e.namespace}/${e.name}`,
      }));
  }
}

const text = (o: unknown) => JSON.stringify(o);

describe.each(['same thread', 'writer thread'])('pipeline and store (%s)', (mode) => {
  async function setup() {
    const dir = tempDir();
    const path = join(dir, 'k.db');
    const writer = mode === 'same thread' ? new SqliteStore(path) : await WriterThread.open(path);
    const reader = mode === 'same thread' ? (writer as SqliteStore) : new SqliteStore(path, { readonly: true });
    const metrics = new Metrics();
    const detector = new ExecDetector();
    const pipeline = new Pipeline({ writer, detector, metrics });
    return {
      path,
      writer,
      reader,
      metrics,
      detector,
      pipeline,
      close: async () => (writer instanceof WriterThread ? (await writer.close(), reader.close()) : reader.close()),
    };
  }

  it('stores events once per (cluster, auditID, stage), and detects only new ones', async () => {
    const s = await setup();
    const exec = ev({
      verb: 'create',
      objectRef: { resource: 'pods', subresource: 'exec', namespace: 'default', name: 'web-1' },
      requestURI: '/api/v1/namespaces/default/pods/web-1/exec?command=sh&container=app',
    });
    const batch = [ev(), exec, ev({ stage: 'ResponseStarted', auditID: exec.auditID, requestReceivedTimestamp: exec.requestReceivedTimestamp }), ev()].map(
      (e, i) => ({ text: text(e), where: `l${i}` }),
    );
    const r1 = await s.pipeline.submit({ source: 'test', cluster: 'c1', records: batch });
    expect(r1).toMatchObject({ stored: 4, duplicates: 0, bad: [] });
    expect(r1.alerts).toHaveLength(1);
    expect(r1.alerts[0]!.id).toBeGreaterThan(0);
    const r2 = await s.pipeline.submit({ source: 'test', cluster: 'c1', records: batch });
    expect(r2).toMatchObject({ stored: 0, duplicates: 4, alerts: [] });
    expect(s.detector.seen).toBe(4);
    // Another cluster is another event.
    const r3 = await s.pipeline.submit({ source: 'test', cluster: 'c2', records: batch.slice(0, 1) });
    expect(r3.stored).toBe(1);
    expect(counts(s.reader)).toMatchObject({ events: 5, alerts: 1 });
    expect(s.metrics.render()).toMatch(/kaudit_events_duplicate_total\{source="test"\} 4/);
    await s.close();
  });

  it('links each alert to the event that raised it, also in a batch where some events were duplicates', async () => {
    const s = await setup();
    const exec = (name: string) =>
      ev({
        verb: 'create',
        objectRef: { resource: 'pods', subresource: 'exec', namespace: 'default', name },
        requestURI: `/api/v1/namespaces/default/pods/${name}/exec?command=sh`,
      });
    const plain = ev();
    const first = [plain, exec('a')];
    await s.pipeline.submit({ source: 'test', cluster: 'c1', records: first.map((e, i) => ({ text: text(e), where: `a${i}` })) });
    // The duplicate first moves every new event one place from its index among the new ones.
    const second = [plain, ev(), exec('b'), ev(), ev(), exec('c')];
    const r = await s.pipeline.submit({ source: 'test', cluster: 'c1', records: second.map((e, i) => ({ text: text(e), where: `b${i}` })) });
    expect(r).toMatchObject({ stored: 5, duplicates: 1 });
    const alerts = queryAlerts(s.reader, {}).items;
    expect(alerts).toHaveLength(3);
    for (const a of alerts) {
      expect(a.eventId).toEqual(expect.any(Number));
      const e = getEvent(s.reader, a.eventId!);
      expect(e?.auditID).toBe(a.auditID);
    }
    expect(new Set(alerts.map((a) => getEvent(s.reader, a.eventId!)!.name))).toEqual(new Set(['a', 'b', 'c']));
    await s.close();
  });

  it('dead-letters bad records with their reason and keeps the good ones of the same batch', async () => {
    const s = await setup();
    const records = [
      { text: text(ev()), where: 'f:1' },
      { text: 'nope', where: 'f:2' },
      { text: text({ kind: 0 }), where: 'f:3' },
      { text: text({ kind: 'EventList', items: [ev(), { kind: 'Event' }] }), where: 'f:4' },
    ];
    const r = await s.pipeline.submit({ source: 'file:x', cluster: 'c', records });
    expect(r.stored).toBe(2);
    expect(r.bad.map((b) => b.where)).toEqual(['f:2', 'f:3', 'f:4']);
    const dl = deadLetters(s.reader);
    expect(dl.map((d) => d.reason)).toEqual([expect.stringContaining('lacks'), expect.stringContaining('kind is 0'), expect.stringContaining('not JSON')]);
    expect(s.metrics.render()).toMatch(/kaudit_bad_input_total\{source="file"\} 3/);
    await s.close();
  });

  it('answers the analyst questions, one row per request', async () => {
    const s = await setup();
    const t = (sec: number) => `2026-11-01T10:${String(Math.floor(sec / 60)).padStart(2, '0')}:${String(sec % 60).padStart(2, '0')}.000001Z`;
    const execURI = '/api/v1/namespaces/prod/pods/api-0/exec?command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=api';
    const x = ev({
      verb: 'create',
      stage: 'ResponseStarted',
      requestURI: execURI,
      objectRef: { resource: 'pods', subresource: 'exec', namespace: 'prod', name: 'api-0' },
      responseStatus: { code: 101 },
      requestReceivedTimestamp: t(1),
      user: { username: 'mallory', groups: ['system:authenticated'] },
    });
    const events = [
      x,
      { ...x, stage: 'ResponseComplete' },
      ev({ verb: 'get', objectRef: { resource: 'secrets', namespace: 'prod', name: 'db' }, requestReceivedTimestamp: t(2), user: { username: 'mallory' } }),
      ev({ verb: 'list', objectRef: { resource: 'secrets' }, requestReceivedTimestamp: t(3) }),
      ev({ verb: 'create', objectRef: { resource: 'secrets', namespace: 'prod', name: 'new' }, requestReceivedTimestamp: t(4) }),
      ev({
        verb: 'create',
        objectRef: { resource: 'clusterrolebindings', apiGroup: 'rbac.authorization.k8s.io', name: 'pwn' },
        requestReceivedTimestamp: t(5),
        user: { username: 'mallory' },
      }),
      ev({ verb: 'get', objectRef: { resource: 'clusterrolebindings', apiGroup: 'rbac.authorization.k8s.io', name: 'pwn' }, requestReceivedTimestamp: t(6) }),
      ev({ requestReceivedTimestamp: t(70) }),
    ];
    await s.pipeline.submit({ source: 't', cluster: 'c', records: events.map((e, i) => ({ text: text(e), where: String(i) })) });
    const execs = execSessions(s.reader, {});
    expect(execs.items).toHaveLength(1);
    expect(execs.items[0]).toMatchObject({
      user: 'mallory',
      namespace: 'prod',
      name: 'api-0',
      container: 'api',
      command: 'cat /var/run/secrets/kubernetes.io/serviceaccount/token',
      stage: 'ResponseComplete',
      time: t(1),
    });
    expect(secretReads(s.reader, {}).items.map((r) => r.verb)).toEqual(['list', 'get']);
    expect(secretReads(s.reader, { user: 'mallory' }).items).toHaveLength(1);
    expect(rbacChanges(s.reader, {}).items.map((r) => r.name)).toEqual(['pwn']);
    expect(userActivity(s.reader, { user: 'mallory' }).items.map((r) => r.resource)).toEqual(['clusterrolebindings', 'secrets', 'pods']);
    expect(userActivity(s.reader, { user: 'mall*' }).items).toHaveLength(3);
    expect(top(s.reader, 'user', {})).toEqual([
      { value: 'alice@example.com', count: 4 },
      { value: 'mallory', count: 3 },
    ]);
    const since = Date.UTC(2026, 10, 1, 10, 0, 3) * 1000;
    expect(top(s.reader, 'user', { since, until: since + 3_000_000 })).toEqual([
      { value: 'alice@example.com', count: 2 },
      { value: 'mallory', count: 1 },
    ]);
    const one = getEvent(s.reader, execs.items[0]!.id)!;
    expect((one.event as { requestURI: string }).requestURI).toBe(execURI);
    await s.close();
  });

  it('pages with a cursor that stays stable while events arrive', async () => {
    const s = await setup();
    const mk = (n: number, base: number) =>
      Array.from({ length: n }, (_, i) => ({ text: text(ev({ requestReceivedTimestamp: new Date(base + i * 1000).toISOString() })), where: String(i) }));
    await s.pipeline.submit({ source: 't', cluster: 'c', records: mk(25, Date.UTC(2026, 0, 1)) });
    const p1 = queryEvents(s.reader, {}, { limit: 10 });
    await s.pipeline.submit({ source: 't', cluster: 'c', records: mk(5, Date.UTC(2026, 0, 2)) });
    const p2 = queryEvents(s.reader, {}, { limit: 10, cursor: p1.next });
    const p3 = queryEvents(s.reader, {}, { limit: 10, cursor: p2.next });
    const ids = [...p1.items, ...p2.items, ...p3.items].map((r) => r.id);
    expect(new Set(ids).size).toBe(25);
    expect(p3.next).toBeUndefined();
    await s.close();
  });

  it('groups repeated alerts of one rule, identity and object into one row with a count', async () => {
    const s = await setup();
    const mk = (i: number) =>
      ev({
        verb: 'create',
        requestURI: '/api/v1/namespaces/d/pods/p/exec?command=id',
        objectRef: { resource: 'pods', subresource: 'exec', namespace: 'd', name: 'p' },
        requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
      });
    const r = await s.pipeline.submit({ source: 't', cluster: 'c', records: [0, 1, 2].map((i) => ({ text: text(mk(i)), where: '' })) });
    expect(r.alerts).toHaveLength(1);
    const rows = queryAlerts(s.reader, { rule: ['pod-exec'] });
    expect(rows.items).toHaveLength(1);
    expect(rows.items[0]!.count).toBe(3);
    await s.close();
  });
});

describe('a stop between storing a batch and detecting it', () => {
  const execEvent = (i: number) =>
    text(
      ev({
        verb: 'create',
        requestURI: '/api/v1/namespaces/d/pods/p/exec?command=id',
        objectRef: { resource: 'pods', subresource: 'exec', namespace: 'd', name: `p${i}` },
        requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
      }),
    );
  const plain = () => text(ev({ requestReceivedTimestamp: new Date(Date.UTC(2026, 0, 1, 1)).toISOString() }));

  /** Stores a batch the way the pipeline's first half does, and never finishes it. */
  function insertOnly(store: SqliteStore, lines: string[]): void {
    const events = lines.map((l) => normalise(toAuditEvent(JSON.parse(l)), 'c', { enabled: true, key: store.redactionKey }, l));
    store.insert(toRecords(events));
  }
  const pendingMarks = (path: string) => {
    const r = new SqliteStore(path, { readonly: true });
    try {
      return r.db.prepare('SELECT count(*) FROM pending').pluck().get() as number;
    } finally {
      r.close();
    }
  };

  it('detects the stored batch once at the next start; the resent copies are duplicates', async () => {
    const path = join(tempDir(), 'k.db');
    const lines = [execEvent(1), plain(), execEvent(2)];
    const first = new SqliteStore(path);
    insertOnly(first, lines);
    first.close();
    expect(pendingMarks(path)).toBe(1);

    const writer = await WriterThread.open(path);
    const detector = new ExecDetector();
    const pipeline = new Pipeline({ writer, detector });
    await pipeline.idle();
    expect(detector.seen).toBe(3);
    expect(pendingMarks(path)).toBe(0);
    const again = await pipeline.submit({ source: 't', cluster: 'c', records: lines.map((t, i) => ({ text: t, where: String(i) })) });
    expect(again).toMatchObject({ stored: 0, duplicates: 3, alerts: [] });
    expect(detector.seen).toBe(3);
    await writer.close();
    const reader = new SqliteStore(path, { readonly: true });
    const alerts = queryAlerts(reader, {}).items;
    expect(alerts.map((a) => a.count).reduce((x, y) => x + y, 0)).toBe(2);
    // The alerts point at their stored events.
    expect(alerts.every((a) => typeof a.eventId === 'number')).toBe(true);
    reader.close();
  });

  it('leaves a running writer process its batch, and takes it over once that process has exited', async () => {
    const path = join(tempDir(), 'k.db');
    const writer = await WriterThread.open(path);
    const detector = new ExecDetector();
    const pipeline = new Pipeline({ writer, detector });
    await pipeline.idle();
    const lines = [execEvent(10), plain()];
    // Another kaudit process on the same store stores the batch, then waits (alive) before detecting it.
    const script = `
      import { SqliteStore } from ${JSON.stringify(new URL('../../dist/store/sqlite-store.js', import.meta.url).href)};
      import { toRecords } from ${JSON.stringify(new URL('../../dist/store/records.js', import.meta.url).href)};
      import { normalise } from ${JSON.stringify(new URL('../../dist/events/normalise.js', import.meta.url).href)};
      import { toAuditEvent } from ${JSON.stringify(new URL('../../dist/events/decode.js', import.meta.url).href)};
      const lines = ${JSON.stringify(lines)};
      const store = new SqliteStore(${JSON.stringify(path)});
      const events = lines.map((l) => normalise(toAuditEvent(JSON.parse(l)), 'c', { enabled: true, key: store.redactionKey }, l));
      store.insert(toRecords(events));
      process.stdout.write('stored\\n');
      process.stdin.resume();`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d) => String(d).includes('stored') && resolve());
      child.on('exit', (c) => reject(new Error(`child exited ${c}`)));
    });
    const records = lines.map((t, i) => ({ text: t, where: String(i) }));
    // Its owner is alive: the batch is its to finish.
    expect(await pipeline.submit({ source: 't', cluster: 'c', records })).toMatchObject({ stored: 0, duplicates: 2 });
    expect(detector.seen).toBe(0);
    expect(pendingMarks(path)).toBe(1);
    // It stops before detecting: the resent copies hand the batch to this pipeline, which detects it once.
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect(await pipeline.submit({ source: 't', cluster: 'c', records })).toMatchObject({ stored: 0, duplicates: 2 });
    expect(detector.seen).toBe(2);
    expect(pendingMarks(path)).toBe(0);
    await pipeline.submit({ source: 't', cluster: 'c', records });
    expect(detector.seen).toBe(2);
    await writer.close();
    const reader = new SqliteStore(path, { readonly: true });
    expect(queryAlerts(reader, {}).items).toHaveLength(1);
    reader.close();
  });

  it('undoes a batch whose detection failed: nothing of it stays, and it can be sent again', async () => {
    const path = join(tempDir(), 'k.db');
    const store = new SqliteStore(path);
    let fail = true;
    const detector: Detector = {
      detect: (events) => {
        if (fail) throw new Error('boom');
        return new ExecDetector().detect(events);
      },
    };
    const pipeline = new Pipeline({ writer: store, detector });
    const records = [execEvent(20), plain()].map((t, i) => ({ text: t, where: String(i) }));
    await expect(pipeline.submit({ source: 't', cluster: 'c', records })).rejects.toThrow('boom');
    expect(counts(store).events).toBe(0);
    expect(store.db.prepare('SELECT count(*) FROM pending').pluck().get()).toBe(0);
    expect(store.db.prepare('SELECT count(*) FROM blobs').pluck().get()).toBe(0);
    expect(top(store, 'user', {})).toEqual([]);
    fail = false;
    const r = await pipeline.submit({ source: 't', cluster: 'c', records });
    expect(r).toMatchObject({ stored: 2, duplicates: 0 });
    expect(r.alerts).toHaveLength(1);
    store.close();
  });
});
