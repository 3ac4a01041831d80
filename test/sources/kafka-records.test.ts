/**
 * How the Kafka source frames a message into records: an EventList's items each become a record holding its own
 * bytes (so the store keeps them as sent, with nothing serialised again); anything else stays one record for the
 * decoder, which reads it or refuses it with its own reason. The broker-backed behaviour (commits, dead letters) is in
 * test/kafka/source.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { RawRecord } from '../../src/events/record.js';
import { decodeBatch } from '../../src/pipeline/decode.js';
import { messageRecords } from '../../src/sources/kafka.js';
import { ev } from '../helpers/events.js';

const redaction = { enabled: true, key: Buffer.alloc(32, 1) };

function decode(records: RawRecord[]) {
  return decodeBatch('kafka:t/0', 'c1', records, { redaction, pack: true, keep: 'all', warn: () => {} });
}

/** An item as a producer other than JSON.stringify might write it: spaces after colons and commas. */
function spaced(o: Record<string, unknown>): string {
  return JSON.stringify(o).replace(/":/g, '": ').replace(/,"/g, ', "');
}

describe('Kafka message framing', () => {
  it('splits an EventList into its items, each stored byte for byte as it was in the message', () => {
    const items = [spaced(ev({ verb: 'get' })), spaced(ev({ verb: 'list', userAgent: 'kubectl ünïcødé "q"' }))];
    const value = Buffer.from(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[${items.join(',')}]}`);
    const out: RawRecord[] = [];
    messageRecords(value, 'events/0@7', out);
    expect(out).toHaveLength(2);
    expect(out.map((r) => r.where)).toEqual(['events/0@7 item 0', 'events/0@7 item 1']);
    const d = decode(out);
    expect(d.deadLetters).toEqual([]);
    expect(d.count).toBe(2);
    // Decoded as one document, each event would be serialised again (no spaces): the message's own bytes are kept.
    expect(Buffer.from(d.records!.raw).toString('utf8')).toBe(items.join('\n'));
  });

  it("gives items without kind and apiVersion (as the apiserver writes them) the list's, as the whole message would", () => {
    const { kind: _k, apiVersion: _v, ...bare } = ev({ verb: 'watch' });
    const value = Buffer.from(JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [bare] }));
    const out: RawRecord[] = [];
    messageRecords(value, 'events/1@0', out);
    const framed = decode(out);
    const whole = decode([{ text: value, where: 'events/1@0' }]);
    expect(framed.count).toBe(1);
    expect(Buffer.from(framed.records!.raw).toString('utf8')).toBe(Buffer.from(whole.records!.raw).toString('utf8'));
    expect(framed.keep[0]!.event.kind).toBe('Event');
  });

  it('keeps one record for a single Event, an array, a list of another kind and a message that is not JSON', () => {
    const cases = [
      JSON.stringify(ev()),
      JSON.stringify([ev(), ev()]),
      JSON.stringify({ kind: 'PodList', apiVersion: 'v1', items: [{}] }),
      'this is not json {',
      '{"kind":"EventList","items":[{"auditID":',
    ];
    for (const c of cases) {
      const out: RawRecord[] = [];
      messageRecords(Buffer.from(c), 'events/2@3', out);
      expect(out, c).toHaveLength(1);
      expect(out[0]!.where).toBe('events/2@3');
      expect(Buffer.isBuffer(out[0]!.text) && out[0]!.text.toString()).toBe(c);
    }
    // The decoder's reasons, as for a message decoded whole before.
    const bad: RawRecord[] = [];
    messageRecords(Buffer.from('this is not json {'), 'events/2@4', bad);
    messageRecords(Buffer.from(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', items: [{}] })), 'events/2@5', bad);
    const d = decode(bad);
    expect(d.deadLetters.map((x) => x.reason)).toEqual([expect.stringMatching(/^not JSON/), expect.stringMatching(/not an audit EventList/)]);
  });

  it('an EventList with one bad item: the good item is stored, the bad one located inside its message', () => {
    const value = Buffer.from(JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [ev(), { kind: 'Event', verb: 'get' }] }));
    const out: RawRecord[] = [];
    messageRecords(value, 'events/3@9', out);
    const d = decode(out);
    expect(d.count).toBe(1);
    expect(d.deadLetters).toHaveLength(1);
    // The Kafka source finds the message of a dead letter by the part of `where` before the first space.
    expect(d.deadLetters[0]!.where.split(' ')[0]).toBe('events/3@9');
  });
});
