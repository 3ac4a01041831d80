import { parentPort, workerData } from 'node:worker_threads';
import { probeWrite } from './probe.js';
import { Retention } from './retention.js';
import type { BatchTail } from './batch.js';
import type { EventRecords } from './records.js';
import { SqliteStore } from './sqlite-store.js';
import type { RetentionOptions, StoreOptions } from './store.js';

/**
 * The store's single writer, on a thread of its own: compression and SQLite inserts run here, beside the main
 * thread's parsing and detection, so ingest uses both cores. Messages are handled strictly in order.
 *
 * Group commit: inserts, finishes and discards write into one open transaction. A finish is acknowledged only after
 * its commit. A group holding a finish someone waits for (BatchTail.more unset: a webhook's reply, a Kafka batch)
 * commits as soon as no message is queued, so a busy writer still groups what queued up meanwhile. A group of a file
 * import's batches (more) commits when it holds GROUP_BYTES of log or MAX_GROUP_EVENTS events, when the main thread
 * says it is about to wait for an acknowledgement ('flush': its pipeline has gone idle or has as many finishes
 * outstanding as it allows), or GROUP_WAIT_MS after it opened, whichever comes first. Each commit rewrites every index
 * page the group touched (the newest auditID bucket's leaves, a leaf per active user), so its size, not the batches'
 * pace, decides the bytes written per byte of log: committing whenever the writer's queue was momentarily empty made
 * that 1.95-2.03 on a quiet machine, whose writer keeps up and so committed every 1 MiB batch alone.
 */
interface Init {
  path: string;
  store: StoreOptions;
  retention?: RetentionOptions & { intervalMs: number };
}

interface Reply {
  id: number;
  ok?: unknown;
  error?: string;
  /** The failure's SQLite result code or errno (SQLITE_FULL, ...): the main thread classifies by it (write-error.ts). */
  code?: string;
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | undefined)?.code;
  return typeof c === 'string' ? c : undefined;
}

/**
 * Events past which the open group commits at once: fewer than a file import keeps in flight (10 batches of up to
 * 1,000), so that the import never waits for a commit that waits for more of its batches.
 */
const MAX_GROUP_EVENTS = 4_000;
/** Bytes of log (the batches' raw JSON) past which the open group commits at once. */
const GROUP_BYTES = 4 << 20;
/**
 * The longest an open group waits for more: a bound for callers that never say 'flush'. The pipeline says it before
 * every wait, so no acknowledgement it waits for is held by this.
 */
const GROUP_WAIT_MS = 1000;

let store!: SqliteStore;
let retention: Retention | undefined;

/** Opens the store and says so (message 0, with the redaction key); a failure is the thread's error. */
function open(init: Init): void {
  store = new SqliteStore(init.path, init.store);
  store.grouped = true;
  retention = init.retention ? new Retention(store, init.retention) : undefined;
  if (retention && init.retention) retention.start(init.retention.intervalMs);
  parentPort!.postMessage({ id: 0, ok: { redactionKey: store.redactionKey } });
}

/** Finish replies waiting for the group's commit. */
let held: Reply[] = [];
/** Raw bytes inserted in the open group. */
let groupBytes = 0;
/** The timer that commits the open group GROUP_WAIT_MS after it opened. */
let deadline: NodeJS.Timeout | undefined;
/** A finish in the open group is waited for (not BatchTail.more): commit once no message is queued. */
let waited = false;
let settling = false;

/** Commits the open group and sends the replies that waited for it (errors for all when the commit fails). */
function settle(): void {
  if (deadline) clearTimeout(deadline);
  deadline = undefined;
  groupBytes = 0;
  waited = false;
  settling = false;
  const replies = held;
  held = [];
  try {
    store.commitGroup();
  } catch (e) {
    for (const r of replies) parentPort!.postMessage({ id: r.id, error: `commit failed: ${(e as Error).message}`, code: codeOf(e) });
    return;
  }
  for (const r of replies) parentPort!.postMessage(r);
}

/** The group was rolled back (an operation in it failed): the finishes waiting on it failed with it. */
function failHeld(cause: string, code: string | undefined): void {
  for (const r of held) parentPort!.postMessage({ id: r.id, error: `rolled back with a failed operation (${cause})`, code });
  held = [];
}

parentPort!.on('message', (m: { id: number; op: string; args: unknown[] }) => {
  // A thread started ahead of its store (writer.ts, startWriterEarly) is told which store to open.
  if (m.op === 'open') return open(m.args[0] as Init);
  const grouped = m.op === 'insert' || m.op === 'finish' || m.op === 'discard';
  // Any other message commits the group first (so no finish waits on a commit its message made); 'flush' does only that.
  if (!grouped) settle();
  if (m.op === 'flush') return;
  let reply: Reply;
  const aborts = store.groupAborts;
  try {
    switch (m.op) {
      case 'insert':
        reply = { id: m.id, ok: store.insert(m.args[0] as never) };
        break;
      case 'finish':
        if (!(m.args[1] as BatchTail).more) waited = true;
        reply = { id: m.id, ok: store.finish(m.args[0] as number, m.args[1] as BatchTail) };
        break;
      case 'discard':
        store.discard(m.args[0] as number);
        reply = { id: m.id, ok: true };
        break;
      case 'pending':
        reply = { id: m.id, ok: store.pending() };
        break;
      // Committed at once (the group was settled above, so no finish waits on this commit).
      case 'saveState':
        store.saveState(m.args[0] as string, m.args[1] as string);
        store.commitGroup();
        reply = { id: m.id, ok: true };
        break;
      case 'takeState':
        try {
          reply = { id: m.id, ok: store.takeState(m.args[0] as string) };
        } finally {
          store.commitGroup();
        }
        break;
      // A batch-sized write committed at once and removed (see probe.ts); the group was settled above.
      case 'probe':
        probeWrite(store.db, m.args[0] as number);
        reply = { id: m.id, ok: true };
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
    reply = { id: m.id, error: (e as Error).message, code: codeOf(e) };
    // Only a failure that rolled the group back takes the finishes waiting on it down (one that names no open batch,
    // say, changes nothing they wrote).
    if (store.groupAborts !== aborts) failHeld((e as Error).message, codeOf(e));
  }
  if (m.op === 'finish' && reply.error === undefined) held.push(reply);
  else if (m.op === 'insert') {
    // The batch's raw buffer goes back to be filled again: it is compressed into the blob and no longer read here.
    const raw = (m.args[0] as EventRecords).raw;
    groupBytes += raw.byteLength;
    const spare = raw.buffer as ArrayBuffer;
    parentPort!.postMessage({ ...reply, spare }, [spare]);
  } else parentPort!.postMessage(reply);
  if (!grouped) return;
  if (store.uncommittedEvents >= MAX_GROUP_EVENTS || groupBytes >= GROUP_BYTES) settle();
  else if (waited) {
    if (!settling) {
      settling = true;
      // Runs after the messages already waiting have been handled: a busy writer still groups what queued up.
      setImmediate(settle);
    }
  } else if (!deadline && store.db.inTransaction) deadline = setTimeout(settle, GROUP_WAIT_MS);
});
if (workerData) open(workerData as Init);
