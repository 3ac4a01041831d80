import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseJson, toAuditEvent } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';
import type { NormalisedEvent } from '../../src/events/types.js';
import { Retention } from '../../src/store/retention.js';
import { toRecords } from '../../src/store/records.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir } from '../helpers/events.js';

const FIXTURE = new URL('../../fixtures/admission/migration.jsonl', import.meta.url).pathname;
const redaction = { enabled: true, key: Buffer.alloc(32, 7) };

function fixtureEvents(): NormalisedEvent[] {
  return readFileSync(FIXTURE, 'utf8')
    .trim()
    .split('\n')
    .map((l) => normalise(toAuditEvent(parseJson(l)), 'prod', redaction, l));
}

const rows = (s: SqliteStore) => s.db.prepare('SELECT count(*) FROM admission').pluck().get() as number;

describe('admission rows in the SQLite store', () => {
  it('stores a row per violation, once per request: a resent batch adds none', async () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    const events = fixtureEvents();
    store.commitAll(events, { alerts: [], deadLetters: [] });
    const n = rows(store);
    // A row per violated check of each request: web 4 checks x 11 requests (3 applies, its ReplicaSet, 6 pods, the
    // scale-up) + its policy failure, log-agent 6 x 4, nightly-report 2 x 7, debug 5 x 2, migrate 1 x 2, the refused
    // pod 4, and 4 exemptions (3 namespace, 1 user).
    expect(n).toBe(4 * 11 + 1 + 6 * 4 + 2 * 7 + 5 * 2 + 1 * 2 + 4 + 4);
    store.commitAll(events, { alerts: [], deadLetters: [] });
    expect(rows(store)).toBe(n);
    const shopDebug = (await store.psaViolations({ namespace: 'shop', level: 'baseline' })).items.map(
      (r) => `${r.ownerKind}/${r.ownerName} ${r.check} ${r.requests}`,
    );
    expect(shopDebug).toEqual(['DaemonSet/log-agent hostPathVolumes 4', 'Pod/debug privileged 2']);
    store.close();
  });

  it("drops a discarded batch's rows, and retention drops them with their events", async () => {
    const store = new SqliteStore(join(tempDir(), 'k.db'));
    const events = fixtureEvents();
    const { batch } = store.insert(toRecords(events.slice(0, 20)));
    expect(rows(store)).toBeGreaterThan(0);
    store.discard(batch);
    expect(rows(store)).toBe(0);
    store.commitAll(events, { alerts: [], deadLetters: [] });
    expect(rows(store)).toBe(103);
    // The scenario spans 2026-11-02 to 11-05; three days back from 11-09 keeps none of it.
    const r = new Retention(store, { maxAgeMs: 3 * 86_400_000 });
    await r.runOnce(Date.UTC(2026, 10, 9));
    expect(rows(store)).toBe(0);
    expect((await store.psaViolations({})).items).toEqual([]);
    store.close();
  });

  it('migrates a store written before the admission table, and a reader of an unmigrated store answers empty', async () => {
    const path = join(tempDir(), 'k.db');
    const old = new SqliteStore(path);
    old.db.exec('DROP TABLE admission; DROP TABLE audit_id_index; DROP TABLE audit_id_runs');
    old.db.pragma('user_version = 3');
    old.close();
    const reader = new SqliteStore(path, { readonly: true });
    expect(await reader.psaViolations({ namespace: 'shop' })).toEqual({ items: [] });
    reader.close();
    const store = new SqliteStore(path);
    expect(store.db.pragma('user_version', { simple: true })).toBe(6);
    store.commitAll(fixtureEvents(), { alerts: [], deadLetters: [] });
    expect(rows(store)).toBe(103);
    store.close();
  });
});
