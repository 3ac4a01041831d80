import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Decoder } from '../../src/events/decode.js';
import { LAZY_BODY_MIN, withoutBodies } from '../../src/events/lazy-bodies.js';
import { EVENT_FIELD_ORDER } from '../../src/events/types.js';
import { decodeBatch, wholeEvents } from '../../src/pipeline/decode.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { ev, tempDir } from '../helpers/events.js';

function goLine(e: Record<string, unknown>): string {
  const o: Record<string, unknown> = {};
  for (const k of EVENT_FIELD_ORDER) if (e[k] !== undefined) o[k] = e[k];
  return JSON.stringify(o);
}

const pods = (n: number, extra: Record<string, unknown> = {}) => ({
  kind: 'PodList',
  apiVersion: 'v1',
  items: Array.from({ length: n }, (_, i) => ({
    metadata: { name: `web-${i}`, namespace: 'prod' },
    spec: { nodeName: `node-${i}`, containers: [{ name: 'web', image: 'nginx' }] },
    ...extra,
  })),
});
const bigList = (over: Record<string, unknown> = {}) =>
  ev({
    level: 'RequestResponse',
    verb: 'list',
    requestURI: '/api/v1/namespaces/prod/pods',
    objectRef: { resource: 'pods', namespace: 'prod', apiVersion: 'v1' },
    responseObject: pods(60),
    ...over,
  });
const privilegedPod = (n: number) =>
  ev({
    level: 'RequestResponse',
    verb: 'create',
    requestURI: '/api/v1/namespaces/prod/pods',
    objectRef: { resource: 'pods', namespace: 'prod', name: 'evil', apiVersion: 'v1' },
    requestObject: {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: { name: 'evil', annotations: { pad: 'x'.repeat(n) } },
      spec: { containers: [{ name: 'c', image: 'alpine', securityContext: { privileged: true } }] },
    },
    responseObject: { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'evil' } },
  });

describe('an event line without its bodies', () => {
  it('cuts exactly the bodies of a large line the apiserver wrote, leaving a placeholder for each', () => {
    const e = privilegedPod(LAZY_BODY_MIN);
    const text = goLine(e);
    const head = JSON.parse(withoutBodies(text)!) as Record<string, unknown>;
    const full = JSON.parse(text) as Record<string, unknown>;
    expect(head.requestObject).toEqual({});
    expect(head.responseObject).toEqual({});
    for (const k of Object.keys(full)) if (k !== 'requestObject' && k !== 'responseObject') expect(head[k]).toEqual(full[k]);
    // Only the response body: only its placeholder.
    const list = JSON.parse(withoutBodies(goLine(bigList()))!) as Record<string, unknown>;
    expect(list.responseObject).toEqual({});
    expect('requestObject' in list).toBe(false);
  });

  it('leaves whole what must be parsed whole: short lines, other writers, bodies that may be redacted, odd escapes', () => {
    expect(withoutBodies(goLine(privilegedPod(10)))).toBeUndefined();
    // Keys in another order (a forwarder that sorted them): the cut could take other fields with it.
    expect(withoutBodies(JSON.stringify(privilegedPod(LAZY_BODY_MIN)))).toBeUndefined();
    expect(withoutBodies(goLine(bigList({ responseObject: { kind: 'SecretList', items: [] }, requestURI: 'x'.repeat(LAZY_BODY_MIN) })))).toBeUndefined();
    expect(withoutBodies(goLine(bigList({ responseObject: { ...pods(60), note: 'Secret' } })))).toBeUndefined();
    // "Secret" with a letter escaped is still a Secret once parsed.
    const escaped = goLine(bigList()).replace('"kind":"PodList"', '"kind":"S\\u0065cret"');
    expect(withoutBodies(escaped)).toBeUndefined();
    // The escapes Go's encoder writes for <, > and & are no reason to parse whole.
    expect(withoutBodies(goLine(bigList({ responseObject: pods(60, { note: '<a & b>' }) })).replaceAll('<', '\\u003c'))).toBeDefined();
  });

  it('keeps the top-level fields whole when a nested object holds the same keys', () => {
    // user.extra is a map the authenticator fills: keys named like the Event's own must not move the cut.
    const e = bigList({ user: { username: 'mallory', groups: ['g'], extra: { a: ['1'], requestObject: ['x'], requestReceivedTimestamp: ['y'] } } });
    const text = goLine(e);
    const d = new Decoder().decode({ text, where: 'l1', line: true }, true)[0]!;
    expect('event' in d).toBe(true);
    const got = (d as { event: Record<string, unknown> }).event;
    const full = JSON.parse(text) as Record<string, unknown>;
    for (const k of ['auditID', 'verb', 'objectRef', 'responseStatus', 'requestReceivedTimestamp', 'stageTimestamp', 'annotations'])
      expect(got[k]).toEqual(full[k]);
    expect((got.user as { username: string }).username).toBe('mallory');
  });
});

describe('decoding a batch with lazy bodies', () => {
  it('stores every line byte for byte, gives detection the whole event, and redacts Secrets as before', () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    try {
      const redaction = { enabled: true, key: store.redactionKey };
      const secret = ev({
        level: 'RequestResponse',
        verb: 'list',
        requestURI: '/api/v1/namespaces/prod/secrets',
        objectRef: { resource: 'secrets', namespace: 'prod', apiVersion: 'v1' },
        responseObject: {
          kind: 'SecretList',
          apiVersion: 'v1',
          items: Array.from({ length: 60 }, (_, i) => ({ metadata: { name: `s${i}` }, data: { password: 'aHVudGVyMg==' } })),
        },
      });
      const events = [bigList(), privilegedPod(LAZY_BODY_MIN), secret, ev()];
      const texts = events.map(goLine);
      const records = texts.map((text, i) => ({ text, where: `l${i + 1}`, line: true }));
      // Detection wants only the pod create: the list is stored from its head alone.
      const d = decodeBatch('test', 'c', records, { redaction, pack: true, keep: (n) => n.verb === 'create', warn: () => {} });
      expect(d.count).toBe(4);
      expect(d.keep).toHaveLength(1);
      // Kept without its bodies until detection takes it, then parsed whole.
      expect(d.keep[0]!.event!.requestObject).toEqual({});
      expect(d.keepWhole).toEqual([texts[1]]);
      const warned: string[] = [];
      wholeEvents(d.keep, d.keepWhole!, redaction, (m) => warned.push(m));
      expect(warned).toEqual([]);
      expect(d.keep[0]!.event!.requestObject).toEqual(JSON.parse(texts[1]!).requestObject);
      expect(d.keep[0]!.auditID).toBe(events[1]!.auditID);
      const { flags } = store.insert(d.records!);
      expect(flags).toEqual([true, true, true, true]);
      const rows = store.db.prepare('SELECT blob, blob_idx, level, verb FROM events ORDER BY blob_idx').all() as { blob: number; blob_idx: number }[];
      const raw = rows.map((r) => store.rawEvent(r.blob, r.blob_idx)!);
      expect(raw[0]).toBe(texts[0]);
      expect(raw[1]).toBe(texts[1]);
      expect(raw[3]).toBe(texts[3]);
      // The Secret list was parsed whole and redacted before storage.
      expect(raw[2]).not.toContain('aHVudGVyMg==');
      expect(JSON.parse(raw[2]!).auditID).toBe(secret.auditID);
      // Every event's indexed fields are its own.
      expect(rows.map((r) => (r as unknown as { level: number }).level)).toEqual([3, 3, 3, 1]);
    } finally {
      store.close();
    }
  });
});

describe('a kept line whose bodies do not parse', () => {
  it('is stored from its other fields, detected without its bodies, and reported', () => {
    const text = goLine(privilegedPod(LAZY_BODY_MIN));
    // Corrupt the request body: the line no longer parses whole, its head still does.
    const broken = text.replace('"securityContext":{', '"securityContext":{{');
    expect(() => JSON.parse(broken)).toThrow();
    const redaction = { enabled: true, key: Buffer.alloc(32) };
    const d = decodeBatch('test', 'c', [{ text: broken, where: 'l1', line: true }], { redaction, pack: true, keep: 'all', warn: () => {} });
    expect(d.count).toBe(1);
    expect(d.deadLetters).toEqual([]);
    const warned: string[] = [];
    wholeEvents(d.keep, d.keepWhole!, redaction, (m) => warned.push(m));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/body is not JSON.*detected without its bodies/);
    expect(d.keep[0]!.event!.requestObject).toEqual({});
    expect(d.keep[0]!.name).toBe('evil');
  });
});
