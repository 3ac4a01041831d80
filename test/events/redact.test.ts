import { describe, expect, it } from 'vitest';
import { toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import { deadLetterData, isRedactionMarker, LAST_APPLIED } from '../../src/events/redact.js';
import { ev } from '../helpers/events.js';

const on = { enabled: true, key: Buffer.alloc(32, 7) };
const secretRef = { resource: 'secrets', namespace: 'default', name: 'db', apiVersion: 'v1' };

function secretCreate(data: Record<string, string>, stringData?: Record<string, string>) {
  const obj = {
    kind: 'Secret',
    apiVersion: 'v1',
    metadata: { name: 'db', namespace: 'default', annotations: { [LAST_APPLIED]: JSON.stringify({ data }) } },
    data,
    stringData,
  };
  return ev({ verb: 'create', level: 'RequestResponse', objectRef: secretRef, requestObject: obj, responseObject: structuredClone(obj) });
}

describe('secret redaction', () => {
  it('replaces data and stringData values in request and response, keeping keys and a hash', () => {
    const n = normalise(toAuditEvent(secretCreate({ password: 'aHVudGVyMg==' }, { token: 'plain' })), 'c', on);
    const req = n.event.requestObject;
    expect(Object.keys(req.data)).toEqual(['password']);
    expect(isRedactionMarker(req.data.password)).toBe(true);
    expect(isRedactionMarker(req.stringData.token)).toBe(true);
    expect(isRedactionMarker(n.event.responseObject.data.password)).toBe(true);
    expect(isRedactionMarker(req.metadata.annotations[LAST_APPLIED])).toBe(true);
    expect(n.raw).not.toContain('aHVudGVyMg==');
    expect(n.raw).not.toContain('plain"');
  });

  it('gives the same value the same marker and a changed value another', () => {
    const a = normalise(toAuditEvent(secretCreate({ k: 'v1' })), 'c', on).event.requestObject.data.k;
    const b = normalise(toAuditEvent(secretCreate({ k: 'v1' })), 'c', on).event.requestObject.data.k;
    const c = normalise(toAuditEvent(secretCreate({ k: 'v2' })), 'c', on).event.requestObject.data.k;
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });

  it('redacts SecretList responses, merge patches and JSON patches', () => {
    const list = ev({
      verb: 'list',
      level: 'RequestResponse',
      objectRef: { resource: 'secrets', namespace: 'default' },
      responseObject: { kind: 'SecretList', items: [{ metadata: { name: 'a' }, data: { x: 'c2VjcmV0' } }] },
    });
    expect(normalise(toAuditEvent(list), 'c', on).raw).not.toContain('c2VjcmV0');
    const merge = ev({ verb: 'patch', level: 'Request', objectRef: secretRef, requestObject: { data: { x: 'bmV3' } } });
    expect(normalise(toAuditEvent(merge), 'c', on).raw).not.toContain('bmV3');
    const json = ev({
      verb: 'patch',
      level: 'Request',
      objectRef: secretRef,
      requestObject: [
        { op: 'replace', path: '/data/x', value: 'anNvbg==' },
        { op: 'add', path: '/metadata/labels/a', value: 'keep-me' },
      ],
    });
    const raw = normalise(toAuditEvent(json), 'c', on).raw;
    expect(raw).not.toContain('anNvbg==');
    expect(raw).toContain('keep-me');
  });

  it('catches a Secret body under another resource', () => {
    const e = ev({
      verb: 'create',
      level: 'Request',
      objectRef: { resource: 'things', apiGroup: 'example.com' },
      requestObject: { kind: 'Secret', data: { k: 'aGlkZGVu' } },
    });
    expect(normalise(toAuditEvent(e), 'c', on).raw).not.toContain('aGlkZGVu');
  });

  it('leaves other objects alone, and everything when disabled', () => {
    const cm = ev({
      verb: 'create',
      level: 'Request',
      objectRef: { resource: 'configmaps', namespace: 'default', name: 'x' },
      requestObject: { kind: 'ConfigMap', data: { k: 'visible' } },
    });
    expect(normalise(toAuditEvent(cm), 'c', on).raw).toContain('visible');
    expect(normalise(toAuditEvent(secretCreate({ k: 'c2VjcmV0' })), 'c', { ...on, enabled: false }).raw).toContain('c2VjcmV0');
  });

  it('redacts what a dead letter keeps of bad input, and keeps only the start of text that is not JSON', () => {
    const bad = { ...secretCreate({ password: 'aHVudGVyMg==' }), stage: 'Done' };
    const list = JSON.stringify({ kind: 'EventList', items: [bad, { kind: 0 }] });
    const kept = deadLetterData(list, undefined, on)!;
    expect(kept).not.toContain('aHVudGVyMg==');
    expect(kept).toContain('password');
    expect(deadLetterData(undefined, { kind: 'Secret', data: { k: 'c2VjcmV0' } }, on)).not.toContain('c2VjcmV0');
    const cut = JSON.stringify({ ...bad, userAgent: 'x'.repeat(2000) }).slice(0, -20);
    const keptCut = deadLetterData(cut, undefined, on)!;
    expect(keptCut.length).toBeLessThan(1200);
    expect(keptCut).toMatch(/not JSON: the rest is not kept/);
  });
});
