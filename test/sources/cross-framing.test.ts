/**
 * One ingest front: the same audit events, framed every way a source meets them (log lines, gzip, EventList documents
 * one-line and pretty-printed with items as the apiserver sends them, arrays, a webhook body, a Kafka message), must
 * give the same stored rows and the same dead letters. Real parts throughout: files, SQLite stores, the HTTP API on
 * 127.0.0.1, a Kafka broker.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { importFiles } from '../../src/sources/file-import.js';
import { KafkaSource } from '../../src/sources/kafka.js';
import { deadLetters, queryEvents } from '../../src/store/queries.js';
import { SqliteStore as Store } from '../../src/store/sqlite-store.js';
import { cleanup, request, startServer, type Server } from '../api/helpers.js';
import { ev, lines, tempDir } from '../helpers/events.js';
import { type Broker, describeWithKafka, startBroker } from '../kafka/broker.js';
import { quietKafka, testKafkaConfig } from '../kafka/harness.js';

const CLUSTER = 'c1';

/** Events of several kinds: a plain read, non-ASCII text, a Secret body (redacted before storage), an early stage. */
function makeEvents(): Record<string, unknown>[] {
  return [
    ev(),
    ev({
      userAgent: 'kubectl/v1.30.2 (ünïcødé ✓ "quoted" \\ back)',
      verb: 'list',
      objectRef: { resource: 'pods', namespace: 'kube-system', apiVersion: 'v1' },
    }),
    ev({
      level: 'Request',
      verb: 'create',
      requestURI: '/api/v1/namespaces/prod/secrets',
      objectRef: { resource: 'secrets', namespace: 'prod', name: 'db', apiVersion: 'v1' },
      requestObject: { kind: 'Secret', apiVersion: 'v1', metadata: { name: 'db' }, data: { password: 'aHVudGVyMg==' } },
    }),
    ev({
      stage: 'RequestReceived',
      verb: 'create',
      requestURI: '/api/v1/namespaces/prod/pods/api-0/exec?command=sh&container=app',
      objectRef: { resource: 'pods', subresource: 'exec', namespace: 'prod', name: 'api-0' },
    }),
  ];
}

/** As the apiserver's webhook backend and EventList exports write items: without kind and apiVersion. */
function bare(e: Record<string, unknown>): Record<string, unknown> {
  const { kind: _k, apiVersion: _v, ...rest } = e;
  return rest;
}

function eventList(items: Record<string, unknown>[], apiVersion = 'audit.k8s.io/v1'): Record<string, unknown> {
  return { kind: 'EventList', apiVersion, metadata: {}, items };
}

/** A store's events as comparable rows: indexed fields and the stored raw JSON, in a stable order. */
function storedRows(store: Store): unknown[] {
  const page = queryEvents(store, {}, { limit: 1000 });
  const rawOf = store.db.prepare('SELECT blob, blob_idx FROM events WHERE id = ?');
  return page.items
    .map(({ id, ...row }) => {
      const { blob, blob_idx } = rawOf.get(id) as { blob: number; blob_idx: number };
      const raw = store.rawEvent(blob, blob_idx)!;
      expect(raw).not.toContain('aHVudGVyMg==');
      // Redaction markers are keyed per store: compare them without their hash.
      return { ...row, raw: raw.replace(/hmac-sha256:[0-9a-f]{12}/g, 'hmac-sha256:*') };
    })
    .sort((a, b) => (a.auditID + a.stage < b.auditID + b.stage ? -1 : 1));
}

function deadReasons(store: Store): string[] {
  return deadLetters(store, 1000)
    .map((d) => d.reason)
    .sort();
}

async function importInto(dir: string, name: string, body: string | Buffer): Promise<Store> {
  const path = join(dir, name);
  writeFileSync(path, body);
  const store = new Store(join(dir, `${name}.db`));
  const pipeline = new Pipeline({ writer: store });
  await importFiles([path], { sink: pipeline, cluster: CLUSTER });
  await pipeline.idle();
  return store;
}

describe('every framing of the same events stores the same rows', () => {
  const events = makeEvents();
  // One bad item in every framing: the same dead letter everywhere.
  const broken = ev({ verb: undefined });
  const all = [...events, broken];
  let dir: string;
  let reference: unknown[];
  let server: Server;

  beforeAll(async () => {
    dir = tempDir('kaudit-frames-');
    const store = await importInto(dir, 'reference.log', lines(all));
    reference = storedRows(store);
    expect(reference).toHaveLength(events.length);
    expect(deadReasons(store)).toEqual(['audit event lacks verb']);
    store.close();
    server = await startServer({ detector: { detect: async () => [] } });
  });
  afterAll(async () => {
    await server?.close();
    if (server) cleanup(server.dir);
  });

  const list = eventList(all.map(bare));
  const files: [string, string | Buffer][] = [
    ['ndjson.log.gz', gzipSync(lines(all))],
    ['list-one-line.json', JSON.stringify(list)],
    ['list-pretty.json', JSON.stringify(list, null, 2)],
    ['list-pretty.json.gz', gzipSync(JSON.stringify(list, null, 2))],
    ['list-with-kinds.json', JSON.stringify(eventList(all), null, 2)],
    ['array-one-line.json', JSON.stringify(all)],
    ['array-pretty.json', JSON.stringify(all, null, 2)],
  ];
  for (const [name, body] of files) {
    it(`file ${name}`, async () => {
      const store = await importInto(dir, name, body);
      expect(storedRows(store)).toEqual(reference);
      expect(deadReasons(store)).toEqual(['audit event lacks verb']);
      store.close();
    });
  }

  const bodies = [
    ['one-line EventList', JSON.stringify(list)],
    ['pretty-printed EventList', JSON.stringify(list, null, 2)],
    ['pretty-printed array', JSON.stringify(all, null, 2)],
  ] as const;
  for (const [i, [name, body]] of bodies.entries()) {
    it(`webhook body: ${name}`, async () => {
      const cluster = `webhook-${i}`;
      const r = await request(`${server.url}/api/v1/audit/webhook/${cluster}`, body);
      expect(r.status, r.text).toBe(200);
      expect(r.body).toMatchObject({ stored: events.length, bad: 1, badRecords: [{ reason: 'audit event lacks verb' }] });
      const rows = storedRows(server.store).filter((x) => (x as { cluster: string }).cluster === cluster);
      expect(rows.map((x) => ({ ...(x as object), cluster: CLUSTER }))).toEqual(reference);
    });
  }
});

describe('the accepted audit versions are the same on every path', () => {
  const alpha = ev({ apiVersion: 'audit.k8s.io/v1alpha1' });
  const beta = ev({ apiVersion: 'audit.k8s.io/v1beta1' });
  const reason = 'is not audit.k8s.io/v1 or v1beta1';
  let server: Server;
  beforeAll(async () => {
    server = await startServer({ detector: { detect: async () => [] } });
  });
  afterAll(async () => {
    await server?.close();
    if (server) cleanup(server.dir);
  });

  it('files: a v1alpha1 event or EventList is a dead letter saying so; v1beta1 is stored, items taking the list version', async () => {
    const dir = tempDir('kaudit-versions-');
    const bodies: [string, string][] = [
      ['lines.log', lines([alpha, beta])],
      ['list-pretty.json', JSON.stringify(eventList([bare(ev())], 'audit.k8s.io/v1alpha1'), null, 2)],
      ['list-one-line.json', JSON.stringify(eventList([bare(ev())], 'audit.k8s.io/v1alpha1'))],
    ];
    for (const [name, body] of bodies) {
      const store = await importInto(dir, name, body);
      const dead = deadReasons(store);
      expect(dead, name).toHaveLength(1);
      expect(dead[0], name).toContain(reason);
      expect(dead[0], name).toContain('"audit.k8s.io/v1alpha1"');
      store.close();
    }
    const item = bare(ev());
    const store = await importInto(dir, 'beta.json', JSON.stringify(eventList([item], 'audit.k8s.io/v1beta1'), null, 2));
    expect(storedRows(store)).toEqual([
      expect.objectContaining({ auditID: item.auditID, raw: JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1beta1', ...item }) }),
    ]);
    store.close();
  });

  it('webhook: a v1alpha1 EventList is refused whole with the same reason, a v1alpha1 Event is a bad record', async () => {
    const r = await request(`${server.url}/api/v1/audit/webhook/v`, JSON.stringify(eventList([bare(ev())], 'audit.k8s.io/v1alpha1')));
    expect(r.status).toBe(400);
    expect(r.body.error).toContain(reason);
    const one = await request(`${server.url}/api/v1/audit/webhook/v`, JSON.stringify([alpha, beta]));
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ stored: 1, bad: 1, badRecords: [{ reason: expect.stringContaining(reason) }] });
  });
});

describe('a file with several pretty-printed documents one after another', () => {
  it('is one dead letter saying where the first document ends (concatenated documents are not read)', async () => {
    const dir = tempDir('kaudit-multi-');
    const [a, b] = [ev(), ev()];
    const store = await importInto(dir, 'two.json', JSON.stringify(a, null, 2) + '\n' + JSON.stringify(b, null, 2));
    const dead = deadReasons(store);
    expect(dead).toEqual([
      expect.stringMatching(/^not a valid JSON document \(malformed JSON at byte \d+: unexpected data after the end of the JSON document\)$/),
    ]);
    expect(storedRows(store)).toEqual([]);
    store.close();
  });
});

describeWithKafka('Kafka messages decode like every other framing (real broker)', () => {
  let broker: Broker;
  let dir: string;
  beforeAll(async () => {
    broker = await startBroker();
    dir = tempDir('kaudit-frames-kafka-');
  }, 180_000);
  afterAll(async () => {
    await broker?.stop();
  }, 60_000);

  it('stores the same rows from an EventList message and NDJSON-equivalent single-event messages, and dead-letters v1alpha1', async () => {
    const events = makeEvents();
    const broken = ev({ verb: undefined });
    const all = [...events, broken];
    const refStore = await importInto(dir, 'reference.log', lines(all));
    const reference = storedRows(refStore);
    refStore.close();

    const topic = `frames-${Date.now()}`;
    const kafka = quietKafka(broker.brokers);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    const alphaList = eventList([bare(ev())], 'audit.k8s.io/v1alpha1');
    await producer.send({
      topic,
      messages: [
        { value: JSON.stringify(eventList(all.map(bare))) },
        { value: JSON.stringify(eventList(all.map(bare)), null, 2) },
        ...all.map((e) => ({ value: JSON.stringify(e) })),
        { value: JSON.stringify(alphaList) },
      ],
    });
    await producer.disconnect();

    const store = new Store(join(dir, 'kafka.db'));
    const pipeline = new Pipeline({ writer: store });
    const config = testKafkaConfig(broker.brokers, {
      groupId: `g-${topic}`,
      topics: { events: [topic], alerts: `${topic}-alerts`, deadLetter: '', state: '' },
    });
    const source = new KafkaSource({ config, sink: pipeline, cluster: CLUSTER, kafka: quietKafka(broker.brokers, 'source') });
    await source.start();
    try {
      const end = Date.now() + 60_000;
      while (source.stats.messages < 2 + all.length + 1 || source.stats.commits === 0) {
        if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(source.stats)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await pipeline.idle();
    } finally {
      await source.stop();
    }
    // Three copies of every event: duplicates by (cluster, auditID, stage), stored once.
    expect(storedRows(store)).toEqual(reference);
    const dead = deadReasons(store);
    expect(dead.filter((d) => d === 'audit event lacks verb')).toHaveLength(3);
    expect(dead.filter((d) => d.includes('is not audit.k8s.io/v1 or v1beta1'))).toHaveLength(1);
    store.close();
  }, 120_000);
});

describe('a forced format', () => {
  it('is passed from an import to the decoder: an unknown one refuses the batch with the known names, native stores', async () => {
    const dir = tempDir('kaudit-format-');
    const path = join(dir, 'a.log');
    writeFileSync(path, lines([ev(), ev()]));
    const store = new Store(join(dir, 'a.db'));
    const pipeline = new Pipeline({ writer: store });
    await expect(importFiles([path], { sink: pipeline, cluster: CLUSTER, format: 'nope' })).rejects.toThrow(
      `import:${path}: unknown format "nope": expected one of auto, native, eks, gke, aks, forwarder`,
    );
    await expect(importFiles([path], { sink: pipeline, cluster: CLUSTER, format: 'native' })).resolves.toMatchObject({ events: 2, bad: 0 });
    await pipeline.idle();
    store.close();
  });
});
