/**
 * Admission rows in the OpenSearch store, as test/store/admission.test.ts checks them in SQLite: a document per row,
 * stored once however often its batch is written, gone with a discarded batch, filled in when a batch is sent again
 * after its rows were lost, and deleted by retention with their events' day.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseJson, toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import type { NormalisedEvent } from '../../src/events/types.js';
import { OpenSearchStore } from '../../src/store/opensearch/store.js';
import { toRecords } from '../../src/store/records.js';
import { describeWithOpenSearch, startOpenSearch, type OpenSearchNode } from '../opensearch/node.js';

const FIXTURE = new URL('../../fixtures/admission/migration.jsonl', import.meta.url).pathname;
const redaction = { enabled: true, key: Buffer.alloc(32, 7) };

function fixtureEvents(): NormalisedEvent[] {
  return readFileSync(FIXTURE, 'utf8')
    .trim()
    .split('\n')
    .map((l) => normalise(toAuditEvent(parseJson(l)), 'prod', redaction, l));
}

let node: OpenSearchNode;

describeWithOpenSearch('admission rows in the OpenSearch store', () => {
  beforeAll(async () => {
    node = await startOpenSearch();
  }, 300_000);
  afterAll(async () => {
    await node?.stop();
  });

  it("stores a row per violation once, drops a discarded batch's rows, fills in lost rows, and retention drops them with their day", async () => {
    const s = await OpenSearchStore.open({ url: node.url, indexPrefix: 'adm', replicas: 0, shards: 1 });
    const rows = async () => {
      await s.refresh();
      return (await s.conn.request<{ count: number }>('GET', '/adm-admission-*/_count', undefined, { query: { allow_no_indices: 'true' } })).body.count;
    };
    const commit = async (events: NormalisedEvent[]) => {
      const r = await s.insert(toRecords(events));
      await s.finish(r.batch, { alerts: [], deadLetters: [] });
    };
    try {
      const events = fixtureEvents();
      // A discarded batch takes its rows with its events.
      const first = await s.insert(toRecords(events.slice(0, 20)));
      expect(await rows()).toBeGreaterThan(0);
      await s.discard(first.batch);
      expect(await rows()).toBe(0);
      expect((await s.counts()).events).toBe(0);
      // The same count as SQLite's table (admission.test.ts), however often the batch is written.
      await commit(events);
      expect(await rows()).toBe(103);
      await commit(events);
      expect(await rows()).toBe(103);
      const shopDebug = (await s.psaViolations({ namespace: 'shop', level: 'baseline' })).items.map(
        (r) => `${r.ownerKind}/${r.ownerName} ${r.check} ${r.requests}`,
      );
      expect(shopDebug).toEqual(['DaemonSet/log-agent hostPathVolumes 4', 'Pod/debug privileged 2']);
      // Rows lost after their events were stored (a batch that failed between the two writes) come back when the
      // batch is sent again: its events are duplicates then, their rows are written all the same.
      const hits = (
        await s.conn.request<{ hits: { hits: { _index: string; _id: string }[] } }>('POST', '/adm-admission-*/_search', {
          size: 1000,
          query: { term: { ownerName: 'log-agent' } },
          _source: false,
        })
      ).body.hits.hits;
      expect(hits.length).toBe(6 * 4);
      const ndjson = hits.map((h) => JSON.stringify({ delete: { _index: h._index, _id: h._id } })).join('\n') + '\n';
      await s.conn.request('POST', '/_bulk', undefined, { ndjson, query: { refresh: 'true' } });
      expect(await rows()).toBeLessThan(103);
      expect((await s.psaViolations({ namespace: 'shop', level: 'baseline' })).items.length).toBe(1);
      await commit(events);
      expect(await rows()).toBe(103);
      expect(
        (await s.psaViolations({ namespace: 'shop', level: 'baseline' })).items.map((r) => `${r.ownerKind}/${r.ownerName} ${r.check} ${r.requests}`),
      ).toEqual(shopDebug);
      // The scenario spans 2026-11-02 to 11-05 (one admission index a day, beside the events'); three days back from
      // 11-09 keeps none of it.
      const gone = await s.applyRetention({ maxAgeMs: 3 * 86_400_000 }, Date.UTC(2026, 10, 9));
      expect(gone.filter((i) => i.startsWith('adm-admission-')).length).toBeGreaterThan(1);
      expect(gone.filter((i) => i.startsWith('adm-events-')).length).toBe(gone.filter((i) => i.startsWith('adm-admission-')).length);
      expect(await rows()).toBe(0);
      expect((await s.psaViolations({})).items).toEqual([]);
      expect((await s.counts()).events).toBe(0);
    } finally {
      await s.close();
    }
  });
});
