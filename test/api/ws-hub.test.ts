import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/detect/alert.js';
import { AlertBus } from '../../src/pipeline/alert-bus.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { AlertHub, CLOSE_TOO_SLOW } from '../../src/sinks/ws-hub.js';
import { alertsAfter } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { cleanup, execDetector, makeEvents, sleep, tempDir } from './helpers.js';

/** Just enough of a ws WebSocket: what the hub sends, how it closes, and a settable bufferedAmount. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  sent: number[] = [];
  closedWith: { code: number; reason: string } | undefined;
  /** The peer stops reading after this many alerts: its buffer then holds `stalledBytes`. */
  stallAfter = Infinity;
  stalledBytes = 0;
  send(text: string) {
    this.sent.push(JSON.parse(text).id);
    if (this.sent.length >= this.stallAfter) this.bufferedAmount = this.stalledBytes;
  }
  close(code: number, reason: string) {
    this.closedWith ??= { code, reason };
    this.readyState = 2;
  }
  terminate() {
    this.readyState = 3;
  }
  ping() {}
}

let dir: string;
let store: SqliteStore;
let stored: (Alert & { id: number })[];

beforeAll(async () => {
  dir = tempDir();
  store = new SqliteStore(join(dir, 'kaudit.db'));
  const p = new Pipeline({ writer: store, detector: execDetector() });
  await p.submit({
    source: 'test',
    cluster: 'c',
    records: makeEvents(20, { execEvery: 2 }).map((v, i) => ({ value: { kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...v }, where: `#${i}` })),
  });
  stored = alertsAfter(store, { afterId: 0 }, 100);
});
afterAll(() => {
  store.close();
  cleanup(dir);
});

describe('AlertHub', () => {
  it('has ten stored alerts to work with', () => {
    expect(stored.map((a) => a.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('replays, then sends what arrived during the replay, without duplicates or gaps', async () => {
    const bus = new AlertBus();
    const hub = new AlertHub(bus, store, undefined, { replayPageSize: 3 });
    const ws = new FakeSocket();
    hub.add(ws as never, {}, 2);
    // During the replay: 4 and 7 again (committed before the subscription, published after), and a new 11.
    bus.publish([stored[3]!, stored[6]!, { ...stored[9]!, id: 11 }]);
    await sleep(20);
    expect(ws.sent).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11]);
    bus.publish([
      { ...stored[9]!, id: 11 },
      { ...stored[9]!, id: 12 },
    ]);
    expect(ws.sent.at(-1)).toBe(12);
    expect(ws.sent.filter((x) => x === 11)).toHaveLength(1);
    hub.close();
  });

  it('closes a client whose live queue overflows while its replay waits for the socket to drain', async () => {
    const bus = new AlertBus();
    const hub = new AlertHub(bus, store, undefined, { replayPageSize: 1, maxQueuedAlerts: 5, maxBufferedBytes: 1000, drainTimeoutMs: 5000 });
    const ws = new FakeSocket();
    // The peer stops reading after the first alert: the replay waits.
    ws.stallAfter = 1;
    ws.stalledBytes = 900;
    hub.add(ws as never, {}, 0);
    await sleep(10); // the store answers the replay's first page asynchronously
    expect(ws.sent).toEqual([1]);
    for (let i = 0; i < 6; i++) bus.publish([{ ...stored[0]!, id: 100 + i }]);
    expect(ws.closedWith).toEqual({ code: CLOSE_TOO_SLOW, reason: 'client too slow, resume with after=1' });
    hub.close();
  });

  it('queues a live burst while the socket is full, sends it when it drains, closes on overflow or a stall', async () => {
    const bus = new AlertBus();
    const hub = new AlertHub(bus, store, undefined, { maxBufferedBytes: 10_000, maxQueuedAlerts: 3, drainTimeoutMs: 80 });
    const live = new FakeSocket();
    hub.add(live as never, {});
    bus.publish([{ ...stored[0]!, id: 50 }]);
    await sleep(10); // queued until the store says where "now" is, then sent
    live.bufferedAmount = 9_900;
    bus.publish([
      { ...stored[0]!, id: 51 },
      { ...stored[0]!, id: 52 },
    ]);
    expect(live.sent).toEqual([50]);
    live.bufferedAmount = 0;
    await sleep(40);
    expect(live.sent).toEqual([50, 51, 52]);
    live.bufferedAmount = 9_900;
    bus.publish([53, 54, 55, 56].map((id) => ({ ...stored[0]!, id })));
    expect(live.sent).toEqual([50, 51, 52]);
    expect(live.closedWith).toEqual({ code: CLOSE_TOO_SLOW, reason: 'client too slow, resume with after=52' });

    // A socket that does not drain at all: closed after drainTimeoutMs, resume point = newest stored alert.
    const stuck = new FakeSocket();
    hub.add(stuck as never, {});
    await sleep(10);
    stuck.bufferedAmount = 9_900;
    bus.publish([{ ...stored[0]!, id: 60 }]);
    await sleep(200);
    expect(stuck.sent).toEqual([]);
    expect(stuck.closedWith).toEqual({ code: CLOSE_TOO_SLOW, reason: `client too slow, resume with after=${stored.at(-1)!.id}` });
    hub.close();
  });

  it("replays at the socket's pace and closes a replay that stalls", async () => {
    const bus = new AlertBus();
    const hub = new AlertHub(bus, store, undefined, { maxBufferedBytes: 10_000, replayPageSize: 2, drainTimeoutMs: 50 });
    const slow = new FakeSocket();
    hub.add(slow as never, {}, 0);
    slow.bufferedAmount = 9_900;
    setTimeout(() => (slow.bufferedAmount = 0), 30); // drains in time
    await sleep(100);
    expect(slow.sent).toEqual(stored.map((a) => a.id));
    expect(slow.closedWith).toBeUndefined();

    const stalled = new FakeSocket();
    stalled.stallAfter = 2;
    stalled.stalledBytes = 9_900;
    hub.add(stalled as never, {}, 0);
    await sleep(150);
    expect(stalled.sent).toEqual([1, 2]);
    expect(stalled.closedWith).toEqual({ code: CLOSE_TOO_SLOW, reason: 'client too slow, resume with after=2' });
    hub.close();
  });
});
