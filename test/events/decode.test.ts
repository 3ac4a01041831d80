import { describe, expect, it } from 'vitest';
import { decodeRecord, parseJson, toAuditEvent } from '../../src/events/decode.js';
import { normalise, execParams } from '../../src/events/normalise.js';
import { formatMicros, parseMicros, parseTimeArg } from '../../src/events/time.js';
import { ev } from '../helpers/events.js';

const redaction = { enabled: true, key: Buffer.alloc(32, 1) };

describe('decoding audit events', () => {
  it('accepts v1 and v1beta1 events, and old ones with kind but no apiVersion', () => {
    expect(toAuditEvent(ev()).verb).toBe('get');
    expect(toAuditEvent(ev({ apiVersion: 'audit.k8s.io/v1beta1' })).stage).toBe('ResponseComplete');
    const old = ev();
    delete old.apiVersion;
    expect(toAuditEvent(old).auditID).toBe(old.auditID);
  });

  it.each([
    [{ kind: 0 }, 'kind is 0, expected "Event"'],
    [[1, 2], 'expected a JSON object, got array'],
    [ev({ auditID: undefined }), 'lacks auditID'],
    [ev({ stage: 'Done' }), 'stage "Done" is not one of'],
    [ev({ verb: 7 }), 'field verb must be a string, got number'],
    [ev({ user: 'alice' }), 'field user must be an object, got string'],
    [ev({ requestReceivedTimestamp: 'yesterday' }), 'is not an RFC 3339 time'],
    [ev({ responseStatus: { code: '200' } }), 'responseStatus.code must be a number'],
    [ev({ apiVersion: 'v1' }), 'is not audit.k8s.io/v1 or v1beta1'],
    [ev({ kind: 'Pod' }), 'kind is "Pod"'],
    [ev({ sourceIPs: '1.2.3.4' }), 'sourceIPs must be an array of strings'],
    [ev({ impersonatedUser: { username: 5 } }), 'impersonatedUser.username must be a string, got number'],
    [ev({ impersonatedUser: 'bob' }), 'field impersonatedUser must be an object, got string'],
    [ev({ responseStatus: { code: 1.5 } }), 'responseStatus.code 1.5 is not an HTTP status code'],
    [ev({ responseStatus: { code: -5 } }), 'responseStatus.code -5 is not an HTTP status code'],
    [
      JSON.parse(
        '{"kind":"Event","auditID":"a","requestURI":"/","verb":"get","stage":"ResponseComplete","level":"Metadata","user":{},"requestReceivedTimestamp":"2026-01-01T00:00:00Z","responseStatus":{"code":1e400}}',
      ),
      'responseStatus.code Infinity is not',
    ],
    [ev({ requestReceivedTimestamp: '9999-12-31T23:59:59.999999Z' }), 'is outside 1970 to 2255'],
    [ev({ requestReceivedTimestamp: '0001-01-01T00:00:00Z' }), 'is outside 1970 to 2255'],
    [ev({ requestReceivedTimestamp: '1969-12-31T23:59:59.999999Z' }), 'is outside 1970 to 2255'],
  ])('rejects %j with a clear reason', (input, reason) => {
    expect(() => toAuditEvent(input)).toThrow(reason);
  });

  it('turns a JSON syntax error into one line', () => {
    expect(() => parseJson('{"kind": "Event",\n')).toThrow(/^not JSON \(/);
  });

  it("gives EventList items without kind and apiVersion the list's, as the apiserver sends them", () => {
    const item = ev();
    delete item.kind;
    delete item.apiVersion;
    const [one] = decodeRecord({ value: { kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [item] }, where: 'x' });
    expect(one).toMatchObject({ event: { kind: 'Event', apiVersion: 'audit.k8s.io/v1', auditID: item.auditID } });
    // Outside a list such an object is not recognisable as an event.
    expect(() => toAuditEvent({ ...item, kind: undefined, apiVersion: undefined })).toThrow(/neither kind/);
  });

  it('splits EventList documents and arrays into their items, each decoded alone', () => {
    const [a, b] = [ev(), ev()];
    const ids = (v: unknown) => decodeRecord({ value: v, where: 'x' }).map((d) => ('event' in d ? d.event.auditID : d.error));
    expect(ids({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: [a, 1, b] })).toEqual([a.auditID, expect.stringContaining('got number'), b.auditID]);
    expect(ids([a, { kind: 0 }, b])).toEqual([a.auditID, expect.stringContaining('kind is 0'), b.auditID]);
    expect(ids(a)).toEqual([a.auditID]);
    // Go writes an empty list's items as null.
    expect(ids({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items: null })).toEqual([]);
  });
});

describe('time', () => {
  it('keeps microseconds', () => {
    const us = parseMicros('2018-10-26T13:38:34.867116Z');
    expect(us % 1_000_000).toBe(867116);
    expect(formatMicros(us)).toBe('2018-10-26T13:38:34.867116Z');
  });

  it('reads years below 100 as those years (Date.UTC would make 0001 into 1901)', () => {
    expect(formatMicros(parseMicros('0001-02-03T04:05:06Z'))).toBe('0001-02-03T04:05:06.000000Z');
    expect(formatMicros(parseMicros('0099-12-31T23:59:59Z'))).toBe('0099-12-31T23:59:59.000000Z');
    expect(formatMicros(parseMicros('0050-06-01T00:00:00+02:00'))).toBe('0050-05-31T22:00:00.000000Z');
  });

  it('parses offsets, short and long fractions, and rejects impossible dates', () => {
    expect(parseMicros('2018-10-26T15:38:34.867116+02:00')).toBe(parseMicros('2018-10-26T13:38:34.867116Z'));
    expect(parseMicros('2018-10-26T13:38:34.8Z') % 1_000_000).toBe(800000);
    expect(parseMicros('2018-10-26T13:38:34.123456789Z') % 1_000_000).toBe(123456);
    expect(parseMicros('2018-10-26T13:38:34Z') % 1_000_000).toBe(0);
    expect(parseMicros('2018-13-26T13:38:34Z')).toBeNaN();
    expect(parseMicros('2018-10-26 13:38')).toBeNaN();
  });

  it('reads --since forms', () => {
    const now = Date.UTC(2026, 0, 2);
    expect(parseTimeArg('1h', now)).toBe((now - 3_600_000) * 1000);
    expect(parseTimeArg('2026-01-01', now)).toBe(Date.UTC(2026, 0, 1) * 1000);
    expect(parseTimeArg('1700000000', now)).toBe(1_700_000_000_000_000);
    expect(() => parseTimeArg('last tuesday', now)).toThrow(/use RFC 3339/);
  });
});

describe('normalising', () => {
  it('extracts the indexed fields', () => {
    const e = ev({ impersonatedUser: { username: 'system:admin' }, annotations: { 'authorization.k8s.io/decision': 'forbid' }, responseStatus: { code: 403 } });
    const n = normalise(toAuditEvent(e), 'prod', redaction);
    expect(n).toMatchObject({
      cluster: 'prod',
      user: 'alice@example.com',
      impersonatedUser: 'system:admin',
      sourceIP: '203.0.113.10',
      resource: 'pods',
      namespace: 'default',
      name: 'web-1',
      code: 403,
      decision: 'forbid',
      groups: ['system:authenticated'],
    });
  });

  it('decodes the exec command and container from the request URI', () => {
    const e = ev({
      verb: 'create',
      requestURI: '/api/v1/namespaces/default/pods/web-1/exec?command=sh&command=-c&command=cat%20%2Fetc%2Fshadow&container=app&stdin=true',
      objectRef: { resource: 'pods', subresource: 'exec', namespace: 'default', name: 'web-1' },
    });
    const n = normalise(toAuditEvent(e), 'c', redaction);
    expect(n.command).toBe('sh -c cat /etc/shadow');
    expect(n.container).toBe('app');
    expect(execParams('/api/v1/namespaces/x/pods/y/attach?container=c1').container).toBe('c1');
  });

  it('keeps the original text as raw when nothing was redacted', () => {
    const text = JSON.stringify(ev());
    const n = normalise(toAuditEvent(JSON.parse(text)), 'c', redaction, text);
    expect(n.raw).toBe(text);
  });
});
