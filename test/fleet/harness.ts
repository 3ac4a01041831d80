/**
 * What every fleet test runs on: one real Kafka broker and one real OpenSearch node for the file, `kaudit serve`
 * processes started on them (killed at the end), their logs printed when a test fails, and an apiserver-style webhook
 * sender.
 */
import type { Kafka } from 'kafkajs';
import { afterAll, beforeAll } from 'vitest';
import { type Broker, startBroker } from '../kafka/broker.js';
import { quietKafka } from '../kafka/harness.js';
import { startServeProcess, type ServeProcess } from '../kafka/serve-process.js';
import { startOpenSearch, type OpenSearchNode } from '../opensearch/node.js';

export type Json = Record<string, unknown>;

export interface Fleet {
  readonly broker: Broker;
  readonly os: OpenSearchNode;
  /** A quiet client on the broker, for the tests' own admin, producers and readers. */
  readonly kafka: Kafka;
  /** Starts `kaudit serve` in `dir` with `config` (cluster `default` unless it says); killed after the file's tests. */
  start(dir: string, name: string, config: Json): Promise<ServeProcess>;
  /** Prints the end of every node's log (why a test failed) and throws `e` on: a test's catch. */
  failed(e: unknown): never;
}

/** Registers the file's beforeAll/afterAll: the broker and the node started together, everything stopped at the end. */
export function fleetServices(): Fleet {
  let broker: Broker | undefined;
  let os: OpenSearchNode | undefined;
  let kafka: Kafka | undefined;
  const nodes: ServeProcess[] = [];
  beforeAll(async () => {
    [broker, os] = await Promise.all([startBroker(), startOpenSearch()]);
    kafka = quietKafka(broker.brokers);
  }, 300_000);
  afterAll(async () => {
    for (const n of nodes) await n.kill();
    await Promise.all([broker?.stop(), os?.stop()]);
  }, 120_000);
  return {
    get broker() {
      return broker!;
    },
    get os() {
      return os!;
    },
    get kafka() {
      return kafka!;
    },
    async start(dir, name, config) {
      const p = await startServeProcess(dir, name, { cluster: 'default', ...config });
      nodes.push(p);
      return p;
    },
    failed(e) {
      for (const n of nodes) process.stderr.write(`--- ${n.name} log (end):\n${n.log().slice(-4000)}\n`);
      throw e;
    },
  };
}

/**
 * Posts one webhook batch as kube-apiserver's webhook client does: sent again after a 5xx or 429 (after Retry-After,
 * at most `maxWaitMs`) until answered 200; any other answer throws. `onAnswer` sees every answer.
 */
export async function postUntilStored(
  url: string,
  cluster: string,
  items: Json[],
  o: { maxWaitMs?: number; onAnswer?: (a: { status: number; retryAfter: string | null; error?: string }) => void } = {},
): Promise<void> {
  for (;;) {
    const r = await fetch(`${url}/api/v1/audit/webhook/${cluster}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items }),
    });
    const body = (await r.json()) as { error?: string };
    o.onAnswer?.({ status: r.status, retryAfter: r.headers.get('retry-after'), error: body.error });
    if (r.status === 200) return;
    if (r.status < 500 && r.status !== 429) throw new Error(`webhook answered ${r.status}: ${body.error}`);
    await new Promise((res) => setTimeout(res, Math.min(1000 * Number(r.headers.get('retry-after') ?? 1), o.maxWaitMs ?? 500)));
  }
}
