import { parentPort, workerData } from 'node:worker_threads';
import { Retention, type RetentionOptions } from './retention.js';
import { Store, type StoreOptions } from './store.js';

/**
 * The store's single writer, on a thread of its own: compression and SQLite inserts run here, beside the main
 * thread's parsing and detection, so ingest uses both cores. Messages are handled strictly in order.
 */
interface Init {
  path: string;
  store: StoreOptions;
  retention?: RetentionOptions & { intervalMs: number };
}

const init = workerData as Init;
const store = new Store(init.path, init.store);
const retention = init.retention ? new Retention(store, init.retention) : undefined;
if (retention && init.retention) retention.start(init.retention.intervalMs);

parentPort!.on('message', (m: { id: number; op: string; args: unknown[] }) => {
  let reply: { id: number; ok?: unknown; error?: string };
  try {
    switch (m.op) {
      case 'insert':
        reply = { id: m.id, ok: store.insert(m.args[0] as never, m.args[1] as string) };
        break;
      case 'finish':
        reply = { id: m.id, ok: store.finish(m.args[0] as number, m.args[1] as never) };
        break;
      case 'discard':
        store.discard(m.args[0] as number);
        reply = { id: m.id, ok: true };
        break;
      case 'pending':
        reply = { id: m.id, ok: store.pending() };
        break;
      case 'close':
        retention?.stop();
        store.close();
        reply = { id: m.id, ok: true };
        break;
      default:
        reply = { id: m.id, error: `unknown op ${m.op}` };
    }
  } catch (e) {
    reply = { id: m.id, error: (e as Error).message };
  }
  parentPort!.postMessage(reply);
});
parentPort!.postMessage({ id: 0, ok: { redactionKey: store.redactionKey } });
