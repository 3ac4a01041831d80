/**
 * AKS audit logs through Azure Event Hubs' Kafka endpoint, played by the real Kafka broker the suite runs with a
 * SASL_SSL listener taking SASL PLAIN as Event Hubs does (user `$ConnectionString`, the connection string as the
 * password): the existing Kafka source, configured as the README says, reads diagnostic-setting documents
 * (`{"records": [...]}`, several records a message) with the AKS envelope into a real SQLite store.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kafka } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createKafkaClient, parseKafkaConfig } from '../../src/config/kafka.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { KafkaSource } from '../../src/sources/kafka.js';
import { execSessions } from '../../src/store/queries.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { tempDir, waitFor } from '../helpers/events.js';
import { type Broker, describeWithKafka, startBroker } from '../kafka/broker.js';

const FIX = new URL('../../fixtures/cloud/', import.meta.url).pathname;

describeWithKafka('AKS over Event Hubs (Kafka protocol, SASL PLAIN over TLS)', () => {
  let broker: Broker;
  const dir = tempDir('kaudit-aks-');
  beforeAll(async () => {
    broker = await startBroker({ secure: true });
  }, 300_000);
  afterAll(async () => {
    await broker?.stop();
  });

  it('reads diagnostic-record documents with the aks format; a bad record is dead-lettered alone', async () => {
    const s = broker.secure!;
    const hub = 'insights-logs-kube-audit';
    const raw = {
      brokers: s.saslSslBrokers,
      tls: { ca: s.caFile },
      sasl: { mechanism: 'plain', username: s.plainUsername, password: s.plainPassword },
      groupId: '$Default',
      topics: { events: [hub], alerts: null, deadLetter: null },
      format: 'aks',
      sessionTimeoutMs: 6000,
      heartbeatIntervalMs: 500,
    };
    const config = parseKafkaConfig(raw, {})!;
    expect(config.format).toBe('aks');
    // A wrong connection string is refused by the broker.
    const wrong = await createKafkaClient(parseKafkaConfig({ ...raw, sasl: { ...raw.sasl, password: 'Endpoint=sb://x/;SharedAccessKey=nope' } }, {})!, {
      retry: { retries: 0 },
    });
    const wp = wrong.producer();
    await expect(wp.connect()).rejects.toThrow(/SASL PLAIN authentication failed|Authentication failed/i);
    const kafka: Kafka = await createKafkaClient(config);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: hub, numPartitions: 2 }], waitForLeaders: true });
    await admin.disconnect();
    // Event Hubs batches a diagnostic setting's records into documents: 23 records in documents of 5.
    const records = (JSON.parse(readFileSync(join(FIX, 'aks/eventhub-records.json'), 'utf8')) as { records: unknown[] }).records;
    const docs: string[] = [];
    for (let i = 0; i < records.length; i += 5) docs.push(JSON.stringify({ records: records.slice(i, i + 5) }));
    const bad = JSON.parse(docs[1]!) as { records: { properties: { log: string } }[] };
    const broken = JSON.parse(docs[1]!) as { records: { properties: { log: string } }[] };
    broken.records = [{ ...bad.records[0]!, properties: { ...bad.records[0]!.properties, log: 'E1102 10:00:00.000 audit.go:84] not json' } }];
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: hub, messages: [...docs.map((value) => ({ value })), { value: JSON.stringify(broken) }] });
    await producer.disconnect();

    const store = new SqliteStore(join(dir, 'k.db'));
    const pipeline = new Pipeline({ writer: store });
    const source = new KafkaSource({ config, sink: pipeline, cluster: 'fallback', kafka });
    await source.start();
    try {
      await waitFor(() => source.stats.messages === docs.length + 1, 'every message consumed', 60_000);
    } finally {
      await source.stop();
    }
    await pipeline.idle();
    const clusters = store.db.prepare('SELECT DISTINCT d.value FROM events e JOIN dict d ON d.id = e.cluster').pluck().all();
    expect(clusters).toEqual(['aks-prod']);
    expect(store.db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(23);
    const dl = store.db.prepare('SELECT position, reason FROM dead_letters').all() as { position: string; reason: string }[];
    expect(dl).toEqual([
      {
        position: expect.stringMatching(/^insights-logs-kube-audit\/\d@\d+ records\[0\] properties\.log$/),
        reason: expect.stringMatching(/^aks: event text is not JSON/),
      },
    ]);
    expect(source.stats.deadLettered).toBe(1);
    const exec = execSessions(store, {}).items;
    expect(exec).toEqual([
      expect.objectContaining({
        user: 'alice@example.com',
        namespace: 'shop',
        name: 'cart-7d9f',
        command: 'sh -c cat /etc/shadow',
        sourceIP: '203.0.113.10',
        cluster: 'aks-prod',
      }),
    ]);
    store.close();
  }, 240_000);
});
