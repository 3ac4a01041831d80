// The `kafka:` config section: defaults, validation messages, environment overrides, kafkajs client options.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeKafkaConfig, kafkaClientConfig, parseKafkaConfig } from '../../src/config/kafka.js';

const dir = mkdtempSync(join(tmpdir(), 'kaudit-kafka-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kafka config', () => {
  it('is absent when neither the section nor KAUDIT_KAFKA_BROKERS is given', () => {
    expect(parseKafkaConfig(undefined, {})).toBeUndefined();
  });

  it('fills defaults around the brokers', () => {
    const c = parseKafkaConfig({ brokers: ['k1:9092', 'k2:9092'] }, {})!;
    expect(c).toMatchObject({
      brokers: ['k1:9092', 'k2:9092'],
      clientId: 'kaudit',
      groupId: 'kaudit-detectors',
      topics: { events: ['kaudit-events'], alerts: 'kaudit-alerts', deadLetter: 'kaudit-dead-letters' },
      consume: true,
      ingestOnly: false,
      maxMessageBytes: 1_000_000,
    });
    expect(c.tls).toBeUndefined();
    expect(c.sasl).toBeUndefined();
  });

  it('takes sizes with units and topic overrides', () => {
    const c = parseKafkaConfig({ brokers: 'k1:9092, k2:9092', maxMessageBytes: '2MiB', topics: { events: ['a', 'b'], alerts: null } }, {})!;
    expect(c.brokers).toEqual(['k1:9092', 'k2:9092']);
    expect(c.maxMessageBytes).toBe(2 * 1024 * 1024);
    expect(c.topics).toEqual({ events: ['a', 'b'], alerts: '', deadLetter: 'kaudit-dead-letters', state: 'kaudit-detection-state' });
    expect(c.stateMaxBytes).toBe(900_000);
    const off = parseKafkaConfig({ brokers: ['k:1'], stateMaxBytes: '64KiB', topics: { state: null } }, {})!;
    expect(off.topics.state).toBe('');
    expect(off.stateMaxBytes).toBe(64 * 1024);
  });

  it('lets the environment set brokers, group and SASL credentials', () => {
    const c = parseKafkaConfig(
      { sasl: { mechanism: 'SCRAM-SHA-512', username: 'file-user' }, tls: true },
      {
        KAUDIT_KAFKA_BROKERS: 'env1:9093,env2:9093',
        KAUDIT_KAFKA_GROUP_ID: 'g2',
        KAUDIT_KAFKA_USERNAME: 'env-user',
        KAUDIT_KAFKA_PASSWORD: 's3cret',
      },
    )!;
    expect(c.brokers).toEqual(['env1:9093', 'env2:9093']);
    expect(c.groupId).toBe('g2');
    expect(c.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'env-user', password: 's3cret' });
    expect(describeKafkaConfig(c)).not.toContain('s3cret');
    expect(describeKafkaConfig(c)).toContain('SASL SCRAM-SHA-512 as env-user');
  });

  it.each([
    [{ brokers: [] }, /kafka.brokers is empty/],
    [{ brokers: ['nohost'] }, /bad address "nohost"/],
    [{ brokers: ['k:1'], bogus: 1 }, /unknown config key "kafka.bogus"/],
    [{ brokers: ['k:1'], topics: { event: ['x'] } }, /unknown config key "kafka.topics.event"/],
    [{ brokers: ['k:1'], sasl: { mechanism: 'gssapi', username: 'u', password: 'p' } }, /mechanism must be one of scram-sha-256, scram-sha-512, plain/],
    [{ brokers: ['k:1'], sasl: { mechanism: 'scram-sha-256', username: 'u' } }, /needs passwordFile or password/],
    [{ brokers: ['k:1'], sasl: { mechanism: 'plain', username: 'u', password: 'p' } }, /plain sends the password in clear: it needs kafka.tls/],
    [{ brokers: ['k:1'], tls: { cert: '/c.pem' } }, /needs both cert and key/],
    [{ brokers: ['k:1'], batchRecords: 0 }, /batchRecords must be an integer >= 1/],
    [{ brokers: ['k:1'], heartbeatIntervalMs: 40_000 }, /heartbeatIntervalMs must be below/],
    [{ brokers: ['k:1'], compression: 'zstd' }, /compression must be none or gzip/],
    ['k:1', /kafka must be a mapping/],
  ])('rejects %j', (raw, msg) => {
    expect(() => parseKafkaConfig(raw, {})).toThrow(msg);
  });

  it('reads TLS files and the password file for kafkajs', () => {
    const ca = join(dir, 'ca.pem');
    const pw = join(dir, 'pw');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(pw, 'from-file\n');
    const c = parseKafkaConfig(
      { brokers: ['k:9093'], tls: { ca }, sasl: { mechanism: 'scram-sha-256', username: 'u', passwordFile: pw, password: 'ignored' } },
      {},
    )!;
    const k = kafkaClientConfig(c);
    expect(k.ssl).toMatchObject({ ca: [expect.stringContaining('BEGIN CERTIFICATE')], rejectUnauthorized: true });
    expect(k.sasl).toEqual({ mechanism: 'scram-sha-256', username: 'u', password: 'from-file' });
    expect(() => kafkaClientConfig({ ...c, tls: { ca: join(dir, 'missing.pem') } })).toThrow(/cannot read kafka.tls.ca .*missing.pem: ENOENT/);
  });
});
