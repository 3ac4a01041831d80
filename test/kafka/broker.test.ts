// The test broker itself: it starts, serves kafkajs, survives a restart with its data, and stops.
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Broker, describeWithKafka, startBroker } from './broker.js';

const { Kafka, logLevel } = kafkajs;

describeWithKafka('test broker (scripts/kafka/kafka.sh)', () => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await startBroker();
  }, 180_000);
  afterAll(async () => {
    await broker?.stop();
  }, 60_000);

  it('serves produce and fetch, and keeps its data across a restart on the same port', async () => {
    const kafka = new Kafka({ clientId: 'broker-test', brokers: broker.brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: 'smoke', numPartitions: 2 }], waitForLeaders: true });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: 'smoke',
      acks: -1,
      messages: [
        { key: 'a', value: 'one' },
        { key: 'b', value: 'two' },
      ],
    });
    await producer.disconnect();
    await admin.disconnect();

    await broker.restart();

    const admin2 = kafka.admin();
    await admin2.connect();
    const offsets = await admin2.fetchTopicOffsets('smoke');
    await admin2.disconnect();
    expect(offsets.reduce((n, p) => n + Number(p.high), 0)).toBe(2);
  }, 120_000);
});
