import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDetector } from '../../src/cli/common.js';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { counts, deadLetters, queryAlerts, queryEvents } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir } from '../helpers/events.js';

const sample = new URL('../../fixtures/sample/audit.log', import.meta.url);

/** Values of every JSON type, and the edge cases of each, put where a field of another type is expected. */
const ODD: unknown[] = [null, 0, -1.5, true, '', 'x', [], [1, 'a'], {}, { a: { b: 1 } }];

type Obj = Record<string, unknown>;

/** Paths to every member of `o` down to `depth` levels (bodies one level deeper: the rules look into them). */
function paths(o: unknown, depth: number, at: string[] = []): string[][] {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return [];
  const out: string[][] = [];
  for (const [k, v] of Object.entries(o)) {
    out.push([...at, k]);
    const body = at.length === 0 && (k === 'requestObject' || k === 'responseObject');
    if (at.length + 1 < depth || body) out.push(...paths(v, body ? depth + 1 : depth, [...at, k]));
  }
  return out;
}

function withValue(e: Obj, path: string[], value: unknown): Obj {
  const copy = structuredClone(e);
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k] as Obj;
  o[path.at(-1)!] = value;
  return copy;
}

describe('events with a field of the wrong type', () => {
  it('are stored or dead-lettered one by one, never taking their batch down (bundled rules, real store)', async () => {
    const dir = tempDir();
    const store = new SqliteStore(join(dir, 'k.db'));
    const detector = await loadDetector({});
    const pipeline = new Pipeline({ writer: store, detector });
    // The sample's events that raise an alert: the ones the rules look into most closely (bodies, names, URIs).
    const all = readFileSync(sample, 'utf8').split('\n').filter(Boolean);
    const alerting = new Set(
      (await detector.detect(all.map((l) => normalise(toAuditEvent(JSON.parse(l)), 'c1', { enabled: true, key: Buffer.alloc(32) }, l)))).map((a) => a.auditID),
    );
    const bases = all.map((l) => JSON.parse(l) as Obj).filter((e) => alerting.has(e.auditID as string));
    expect(bases.length).toBeGreaterThan(10);

    let n = 0;
    let submitted = 0;
    let bad = 0;
    for (const base of bases.slice(0, 24)) {
      // Fields the apiserver may leave out are put in too, so that they are also tried with odd values.
      const full: Obj = { impersonatedUser: { username: 'bob', groups: ['g'] }, ...base };
      const records = [];
      for (const path of paths(full, 2)) {
        for (const value of ODD) {
          const e = withValue(full, path, value);
          // Each its own request (an odd auditID aside), so no mutation is a duplicate of another.
          if (path.join('.') !== 'auditID') e.auditID = `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
          records.push({ text: JSON.stringify(e), where: `case ${n} ${path.join('.')}=${JSON.stringify(value)}` });
        }
      }
      // A good event rides in every batch: it must be stored whatever its neighbours are.
      records.push({ text: JSON.stringify({ ...base, auditID: `00000000-0000-4000-9000-${String(++n).padStart(12, '0')}` }), where: 'good' });
      const out = await pipeline.submit({ source: 'test', cluster: 'c1', records });
      expect(out.bad.find((b) => b.where === 'good')).toBeUndefined();
      expect(out.stored + out.duplicates + out.bad.length).toBe(records.length);
      submitted += records.length;
      bad += out.bad.length;
      for (const b of out.bad) {
        expect(b.reason).not.toMatch(/\n/);
        // Bodies are the event's own business: any shape is stored (and detection copes).
        expect(b.where).not.toMatch(/ (requestObject|responseObject)[.=]/);
      }
    }
    const c = counts(store);
    expect(c.events + c.deadLetters).toBe(submitted);
    expect(c.deadLetters).toBe(bad);
    expect(bad).toBeGreaterThan(0);
    store.close();
  }, 60_000);
});

describe('events nested deeper than the stack allows to serialise (a request body can be)', () => {
  it('are stored when their line is kept as it is, dead-lettered when it cannot be, and never take their batch down', async () => {
    const dir = tempDir();
    const store = new SqliteStore(join(dir, 'k.db'));
    // The bundled rules, and one whose details and summary take the body itself.
    const rules = join(dir, 'rules');
    mkdirSync(rules);
    const bundled = new URL('../../detections/', import.meta.url);
    for (const f of readdirSync(bundled)) if (f.endsWith('.yaml')) copyFileSync(new URL(f, bundled), join(rules, f));
    writeFileSync(
      join(rules, 'zz-body.yaml'),
      `rules:\n  - id: test-configmap-body\n    title: ConfigMap body\n    description: test\n    severity: low\n    tags: [test]\n    summary: "{user} wrote {details.body}"\n    match:\n      verbs: [create]\n      resources: [configmaps]\n    details:\n      body: requestObject.data\n    examples:\n      fire:\n        - verb: create\n          objectRef: {resource: configmaps, namespace: a, name: b}\n          requestObject: {data: {k: v}}\n      quiet:\n        - verb: delete\n          objectRef: {resource: configmaps, namespace: a, name: b}\n`,
    );
    const detector = await loadDetector({ rulesDir: rules });
    const pipeline = new Pipeline({ writer: store, detector });
    const base = JSON.parse(readFileSync(sample, 'utf8').split('\n')[0]!) as Obj;
    let n = 0;
    const id = () => `00000000-0000-4000-a000-${String(++n).padStart(12, '0')}`;
    const deepArray = '['.repeat(200_000) + ']'.repeat(200_000);
    const deepObject = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000);
    const withBody = (e: Obj, body: string) => JSON.stringify(e).slice(0, -1) + `,"requestObject":${body}}`;
    const cm = {
      ...base,
      verb: 'create',
      level: 'Request',
      user: { username: 'alice', groups: ['system:authenticated'] },
      objectRef: { resource: 'configmaps', namespace: 'a', name: 'b', apiVersion: 'v1' },
    };
    const secret = { ...cm, objectRef: { resource: 'secrets', namespace: 'a', name: 's', apiVersion: 'v1' } };
    const { verb: _v, ...noVerb } = base;
    const records = [
      { text: withBody({ ...base, auditID: id() }, deepArray), where: 'deep array body' },
      { text: withBody({ ...cm, auditID: id() }, `{"data":${deepObject}}`), where: 'deep configmap data (the rule takes it)' },
      // Redaction changes a Secret's text, so it must be serialised again: it cannot be.
      {
        text: withBody({ ...secret, auditID: id() }, `{"kind":"Secret","data":{"password":"aHVudGVyMg=="},"metadata":{"labels":${deepObject}}}`),
        where: 'deep secret',
      },
      // Bad input, too deep to keep even redacted.
      { text: withBody({ ...noVerb, auditID: id() }, deepArray), where: 'bad and deep' },
      // An EventList item has no line of its own: it is stored serialised again.
      { value: JSON.parse(withBody({ ...base, auditID: id() }, deepObject)), where: 'deep list item' },
      { text: JSON.stringify({ ...base, auditID: id() }), where: 'good' },
    ];
    const out = await pipeline.submit({ source: 'test', cluster: 'c1', records });
    expect(out.bad.map((b) => b.where).sort()).toEqual(['bad and deep', 'deep list item', 'deep secret']);
    expect(out.bad.find((b) => b.where === 'deep secret')!.reason).toMatch(/nested too deeply to store/);
    expect(out.stored).toBe(3);
    // The dead letters keep no text they could not redact.
    for (const d of deadLetters(store)) expect(d.size).toBeLessThan(200);
    expect(JSON.stringify(store.db.prepare('SELECT cast(data AS text) AS d FROM dead_letters').all())).not.toContain('aHVudGVyMg');
    // The rule fired, without the detail it could not keep.
    const alerts = queryAlerts(store, { rule: ['test-configmap-body'] }).items;
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.details?.body).toBeUndefined();
    // Asked for with their events, the deep ones say why they are left out, and the page serialises.
    const page = queryEvents(store, {}, { includeEvent: true, limit: 10 });
    expect(page.items).toHaveLength(3);
    expect(page.items.filter((r) => r.event === null && /nested more than 512 levels/.test(r.eventOmitted ?? ''))).toHaveLength(2);
    expect(() => JSON.stringify(page)).not.toThrow();
    store.close();
  }, 60_000);
});
