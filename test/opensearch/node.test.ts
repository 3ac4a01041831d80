// The test node itself: it starts from the project's script, indexes and searches, keeps its data across a clean
// restart and a SIGKILL on the same port, and stops.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWithOpenSearch, type OpenSearchNode, startOpenSearch } from './node.js';

async function call(node: OpenSearchNode, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const isNdjson = typeof body === 'string';
  const r = await fetch(node.url + path, {
    method,
    headers: { 'content-type': isNdjson ? 'application/x-ndjson' : 'application/json' },
    body: body === undefined ? undefined : isNdjson ? body : JSON.stringify(body),
  });
  const json = (await r.json()) as Record<string, unknown>;
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

describeWithOpenSearch('test node (scripts/opensearch/opensearch.sh)', () => {
  let node: OpenSearchNode;
  beforeAll(async () => {
    node = await startOpenSearch();
  }, 240_000);
  afterAll(async () => {
    await node?.stop();
  }, 60_000);

  it('runs the version the script names, on loopback, as one node', async () => {
    const info = await call(node, 'GET', '/');
    expect((info.version as { number: string }).number).toBe(node.version);
    expect(new URL(node.url).hostname).toBe('127.0.0.1');
    const health = await call(node, 'GET', '/_cluster/health');
    expect(health.number_of_nodes).toBe(1);
  });

  it('indexes in bulk, searches, and keeps its data across a clean restart and a SIGKILL', async () => {
    await call(node, 'PUT', '/smoke', { settings: { number_of_shards: 1, number_of_replicas: 0 }, mappings: { properties: { user: { type: 'keyword' } } } });
    const lines: string[] = [];
    for (let i = 0; i < 500; i++)
      lines.push(JSON.stringify({ index: { _index: 'smoke', _id: `e${i}` } }), JSON.stringify({ user: i % 5 === 0 ? 'alice' : 'bob' }));
    const bulk = await call(node, 'POST', '/_bulk?refresh=true', lines.join('\n') + '\n');
    expect(bulk.errors).toBe(false);
    const count = async (user: string) => ((await call(node, 'POST', '/smoke/_count', { query: { term: { user } } })) as { count: number }).count;
    expect(await count('alice')).toBe(100);

    await node.restart();
    await call(node, 'GET', '/_cluster/health/smoke?wait_for_status=green&timeout=60s');
    expect(await count('alice')).toBe(100);

    // A node killed without warning replays its translog: acknowledged (refreshed) writes survive.
    await node.restart({ hard: true });
    await call(node, 'GET', '/_cluster/health/smoke?wait_for_status=green&timeout=60s');
    expect(await count('bob')).toBe(400);
  }, 300_000);
});
