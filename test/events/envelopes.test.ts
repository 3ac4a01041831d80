import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Decoder, decodeRecord } from '../../src/events/decode.js';
import { ENVELOPES } from '../../src/events/envelopes/index.js';
import type { Envelope } from '../../src/events/envelopes/types.js';
import { decodeBatch } from '../../src/pipeline/decode.js';
import { ev } from '../helpers/events.js';

/** A stand-in for a managed-cluster envelope: `{ logGroup: "/clusters/<name>", logEvents: [{ message: "<event JSON>" }] }`. */
const wrapped: Envelope = {
  name: 'wrapped',
  matches: (v) => typeof v === 'object' && v !== null && Array.isArray((v as { logEvents?: unknown }).logEvents),
  unwrap(v) {
    const o = v as { logGroup: string; logEvents: { message: string }[] };
    if (o.logGroup === 'boom') throw new Error('no such log group\nsecond line');
    const cluster = o.logGroup.split('/').at(-1);
    return o.logEvents.map((e, i) => {
      try {
        return { value: JSON.parse(e.message), cluster, where: `logEvents[${i}]` };
      } catch {
        return { error: 'message is not JSON', where: `logEvents[${i}]` };
      }
    });
  },
};

const decoder = new Decoder({ envelopes: [wrapped, ...ENVELOPES] });
const record = (value: unknown) => ({ value, where: 'test' });

describe('the decoder and its envelopes', () => {
  it('picks an envelope by shape, gives each event the cluster its envelope names, and locates item errors', () => {
    const [a, b] = [ev(), ev({ verb: undefined })];
    const out = decoder.decode(
      record({ logGroup: '/clusters/prod-eu', logEvents: [{ message: JSON.stringify(a) }, { message: '{' }, { message: JSON.stringify(b) }] }),
    );
    expect(out).toEqual([
      { event: a, text: undefined, cluster: 'prod-eu', envelope: 'wrapped', where: 'logEvents[0]' },
      { error: 'wrapped: message is not JSON', envelope: 'wrapped', where: 'logEvents[1]' },
      { error: 'wrapped: audit event lacks verb', envelope: 'wrapped', where: 'logEvents[2]' },
    ]);
    // Native records still decode, their text kept; arrays are split before envelopes are asked.
    const line = JSON.stringify(a);
    expect(decoder.decode({ text: line, where: 'l', line: true })).toEqual([{ event: a, text: line }]);
    expect(decoder.decode(record([{ logGroup: '/c/x', logEvents: [{ message: line }] }, a]))).toEqual([
      { event: a, text: undefined, cluster: 'x', envelope: 'wrapped', where: 'logEvents[0]' },
      { event: a, text: undefined },
    ]);
  });

  it('turns an envelope that throws, and a record no envelope knows, into one-line dead-letter reasons', () => {
    expect(decoder.decode(record({ logGroup: 'boom', logEvents: [] }))).toEqual([
      { error: 'cannot unwrap this wrapped record: no such log group', envelope: 'wrapped' },
    ]);
    expect(decoder.decode(record({ foo: 1 }))).toEqual([
      { error: 'not an audit event: neither kind "Event" nor an audit.k8s.io apiVersion; nor a record of any envelope (wrapped, eks, gke, aks, forwarder)' },
    ]);
    expect(decodeRecord(record({ foo: 1 }))).toEqual([
      { error: 'not an audit event: neither kind "Event" nor an audit.k8s.io apiVersion; nor a record of any envelope (eks, gke, aks, forwarder)' },
    ]);
    expect(new Decoder({ envelopes: ENVELOPES.filter((e) => e.name === 'native') }).decode(record({ foo: 1 }))).toEqual([
      { error: 'not an audit event: neither kind "Event" nor an audit.k8s.io apiVersion' },
    ]);
    expect(decodeRecord(record('x'))).toEqual([{ error: 'not an audit event: expected a JSON object, got string' }]);
    expect(decodeRecord(record([[ev()]]))).toEqual([{ error: 'element 0: not an audit record: an array inside an array' }]);
  });

  it('reads one envelope only when a format is forced, and refuses an unknown format at once', () => {
    const forced = new Decoder({ envelopes: [wrapped, ...ENVELOPES], format: 'wrapped' });
    expect(forced.decode(record(ev()))).toEqual([
      {
        error: expect.stringMatching(/^wrapped: not a record of this format \(the source reads format wrapped only\): an object with keys kind, /),
        envelope: 'wrapped',
      },
    ]);
    expect(new Decoder({ format: 'native' }).decode(record(ev()))).toHaveLength(1);
    expect(new Decoder({ format: 'auto' }).decode(record(ev()))).toHaveLength(1);
    expect(() => new Decoder({ format: 'ekss' })).toThrow('unknown format "ekss": expected one of auto, native, eks, gke, aks, forwarder');
  });

  it('EventList items take the list kind and apiVersion where they lack them, and a list of another version is refused', () => {
    const { kind: _k, apiVersion: _v, ...bare } = ev();
    const own = ev({ apiVersion: 'audit.k8s.io/v1' });
    const [x, y] = decodeRecord(record({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1beta1', items: [bare, own] })) as { event: Record<string, unknown> }[];
    expect(Object.keys(x!.event).slice(0, 2)).toEqual(['kind', 'apiVersion']);
    expect(x!.event).toEqual({ kind: 'Event', apiVersion: 'audit.k8s.io/v1beta1', ...bare });
    expect(y!.event.apiVersion).toBe('audit.k8s.io/v1');
    for (const [list, reason] of [
      [
        { kind: 'EventList', apiVersion: 'audit.k8s.io/v1alpha1', items: [bare] },
        'not an audit EventList: apiVersion "audit.k8s.io/v1alpha1" is not audit.k8s.io/v1 or v1beta1',
      ],
      [{ kind: 'PodList', items: [bare] }, 'kind "PodList", expected "EventList"'],
      [{ kind: 'EventList', items: 5 }, 'its items is not an array'],
    ] as const) {
      expect(decodeRecord(record(list))).toEqual([{ error: expect.stringContaining(reason) }]);
    }
  });

  it("a streamed item's stored text gets the list's fields spliced in front, the same as the event's own order", () => {
    const { kind: _k, apiVersion: _v, ...bare } = ev();
    const text = JSON.stringify(bare);
    const [d] = decodeRecord({ text: Buffer.from(text), line: true, list: { apiVersion: 'audit.k8s.io/v1' }, where: 'item 0' }) as {
      event: unknown;
      text: string;
    }[];
    expect(d!.text).toBe(JSON.stringify(d!.event));
    expect(JSON.parse(d!.text)).toEqual({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...bare });
    // A pretty-printed item is not a line: stored serialised again.
    expect(decodeRecord({ text: JSON.stringify(bare, null, 1), list: { apiVersion: 'audit.k8s.io/v1' }, where: 'item 0' })).toEqual([
      { event: d!.event, text: undefined },
    ]);
    expect(decodeRecord({ text, list: { apiVersion: 'audit.k8s.io/v1', error: 'bad list' }, where: 'item 0' })).toEqual([{ error: 'bad list' }]);
  });

  it("the pipeline's decode step stores an event under the cluster its envelope names, else the source's", () => {
    const [a, b] = [ev(), ev()];
    const d = decodeBatch('test', 'default-cluster', [record({ logGroup: '/clusters/prod-eu', logEvents: [{ message: JSON.stringify(a) }] }), record(b)], {
      redaction: { enabled: true, key: Buffer.alloc(32) },
      pack: true,
      keep: 'all',
      warn: () => {},
      decoder,
    });
    expect(d.keep.map((n) => [n.auditID, n.cluster])).toEqual([
      [a.auditID, 'prod-eu'],
      [b.auditID, 'default-cluster'],
    ]);
    expect(d.records).toBeDefined();
    // A source that fixed its cluster (a bound credential, a cluster in the path, a Kafka header) keeps every event in it.
    const fixed = decodeBatch('test', 'bound', [record({ logGroup: '/clusters/prod-eu', logEvents: [{ message: JSON.stringify(a) }] })], {
      redaction: { enabled: true, key: Buffer.alloc(32) },
      pack: false,
      keep: 'all',
      warn: () => {},
      decoder,
      clusterFixed: true,
    });
    expect(fixed.keep.map((n) => n.cluster)).toEqual(['bound']);
  });

  it("kaudit's cloud envelopes in the one decoder: a gzipped record, an event's JSON text kept byte for byte, a fixed cluster kept", () => {
    const a = ev();
    const text = JSON.stringify(a);
    const aks = {
      records: [
        {
          category: 'kube-audit',
          resourceId: '/SUBSCRIPTIONS/X/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-1',
          properties: { log: text },
          time: 't',
        },
      ],
    };
    expect(decodeRecord({ text: gzipSync(JSON.stringify(aks)), where: 'k' })).toEqual([
      { event: a, text, cluster: 'aks-1', envelope: 'aks', where: 'records[0] properties.log' },
    ]);
    const opts = { redaction: { enabled: false, key: Buffer.alloc(32) }, pack: false, keep: 'all' as const, warn: () => {} };
    expect(decodeBatch('t', 'mine', [record(aks)], opts).keep.map((n) => n.cluster)).toEqual(['aks-1']);
    expect(decodeBatch('t', 'mine', [record(aks)], { ...opts, clusterFixed: true }).keep.map((n) => n.cluster)).toEqual(['mine']);
    // A forced cloud format refuses an EventList item a source split out, as any record of another shape.
    expect(decodeRecord({ text, list: { apiVersion: 'audit.k8s.io/v1' }, where: 'item 0' }, 'aks')).toEqual([
      { error: expect.stringMatching(/^aks: not a record of this format/), envelope: 'aks' },
    ]);
  });
});
