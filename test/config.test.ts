import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { defaultConfig, loadConfig, parseListen } from '../src/config/config.js';
import { parseBytes, parseDuration } from '../src/config/values.js';
import { DetectionConfigError } from '../src/detect/config.js';
import { ConfigError } from '../src/errors.js';
import { tempDir } from './helpers/events.js';

describe('configuration', () => {
  it('has secure embedded defaults', () => {
    const c = loadConfig(undefined, {});
    expect(c.server.listen).toBe('127.0.0.1:8080');
    expect(c.redaction.enabled).toBe(true);
    expect(c.server.insecureAllowUnauthenticatedRemote).toBe(false);
    expect(c.maxLineBytes).toBe(1024 * 1024);
  });

  it('layers file < environment', () => {
    const f = join(tempDir(), 'k.yaml');
    writeFileSync(
      f,
      'cluster: prod\nstore:\n  path: /var/lib/kaudit/k.db\n  retention:\n    maxAge: 30d\nserver:\n  listen: 127.0.0.1:9000\ntail:\n  - path: /var/log/kubernetes/audit.log\n',
    );
    const c = loadConfig(f, { KAUDIT_LISTEN: '127.0.0.1:9999' });
    expect(c).toMatchObject({
      cluster: 'prod',
      store: { path: '/var/lib/kaudit/k.db', retention: { maxAge: 30 * 86_400_000, intervalSeconds: 60 } },
      server: { listen: '127.0.0.1:9999' },
    });
    expect(c.tail).toEqual([{ path: '/var/log/kubernetes/audit.log' }]);
  });

  it('names what is wrong', () => {
    const d = tempDir();
    writeFileSync(join(d, 'a.yaml'), 'clusterr: x\n');
    expect(() => loadConfig(join(d, 'a.yaml'), {})).toThrow(/unknown config key "clusterr"/);
    writeFileSync(join(d, 'b.yaml'), 'server: [1\n');
    expect(() => loadConfig(join(d, 'b.yaml'), {})).toThrow(/not valid YAML/);
    expect(() => loadConfig(undefined, { KAUDIT_LISTEN: 'nowhere' })).toThrow(/bad listen address/);
    expect(() => loadConfig(join(d, 'missing.yaml'), {})).toThrow(/cannot read config file .*ENOENT/);
  });

  it('takes an empty section as its defaults, and refuses a scalar or a list where a section belongs', () => {
    const d = tempDir();
    writeFileSync(join(d, 'empty.yaml'), 'store:\n  # path: /somewhere\nserver:\n');
    expect(loadConfig(join(d, 'empty.yaml'), {}).store).toEqual(defaultConfig().store);
    writeFileSync(join(d, 'scalar.yaml'), 'store: /var/lib/kaudit/k.db\n');
    expect(() => loadConfig(join(d, 'scalar.yaml'), {})).toThrow(/config key "store" must be a mapping of settings, got "\/var\/lib\/kaudit\/k.db"/);
    writeFileSync(join(d, 'list.yaml'), 'store:\n  retention: [30d]\n');
    expect(() => loadConfig(join(d, 'list.yaml'), {})).toThrow(/"store.retention" must be a mapping of settings, got a list/);
  });

  it('loads or names the problem for a value of any type at any key (never a TypeError)', () => {
    const d = tempDir();
    const odd: unknown[] = [null, 0, -1.5, true, '', 'x', [], [1, 'a'], {}, { a: { b: 1 } }, '10GB'];
    const keys = (o: unknown, at: string[] = []): string[][] =>
      typeof o === 'object' && o !== null && !Array.isArray(o) ? Object.entries(o).flatMap(([k, v]) => [[...at, k], ...keys(v, [...at, k])]) : [];
    let refused = 0;
    for (const path of keys(defaultConfig())) {
      for (const v of odd) {
        const doc: Record<string, unknown> = {};
        let o = doc;
        for (const k of path.slice(0, -1)) o = (o[k] = {}) as Record<string, unknown>;
        o[path.at(-1)!] = v;
        writeFileSync(join(d, 'c.yaml'), stringify(doc));
        try {
          loadConfig(join(d, 'c.yaml'), {});
        } catch (e) {
          expect(e, `${path.join('.')} = ${JSON.stringify(v)}`).toBeInstanceOf(ConfigError);
          refused++;
        }
      }
    }
    expect(refused).toBeGreaterThan(50);
  });

  it('parses sizes, durations and listen addresses', () => {
    expect(parseBytes('10GiB')).toBe(10 * 1024 ** 3);
    expect(parseBytes('512MB')).toBe(512e6);
    expect(parseDuration('30d')).toBe(30 * 86_400_000);
    expect(parseListen('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
    expect(() => parseDuration('soon')).toThrow(/bad duration/);
  });

  it('parses every section once into typed values: sizes and durations as numbers, detection and kafka checked', () => {
    const f = join(tempDir(), 'k.yaml');
    writeFileSync(
      f,
      stringify({
        store: { retention: { maxAge: '30d', maxSize: '2GiB' }, alertGroupWindow: '5m' },
        webhook: { maxBodyBytes: '2MiB' },
        maxLineBytes: '64KiB',
        detection: { disabled: ['configmap-created'], severity: { 'pod-exec': 'critical' }, state: { persist: false } },
        kafka: { brokers: ['k1:9092'], maxMessageBytes: '2MiB', consume: false },
      }),
    );
    const c = loadConfig(f, {});
    expect(c.store.retention).toEqual({ maxAge: 30 * 86_400_000, maxSize: 2 * 1024 ** 3, intervalSeconds: 60 });
    expect(c.store.alertGroupWindow).toBe(300_000);
    expect(c.webhook.maxBodyBytes).toBe(2 * 1024 ** 2);
    expect(c.maxLineBytes).toBe(64 * 1024);
    expect(c.detection).toEqual({ disabled: ['configmap-created'], severity: { 'pod-exec': 'critical' }, state: { persist: false } });
    expect(c.kafka).toMatchObject({ brokers: ['k1:9092'], maxMessageBytes: 2 * 1024 ** 2, consume: false, groupId: 'kaudit-detectors', compression: 'none' });
    expect(loadConfig(undefined, {}).kafka).toBeUndefined();
  });

  it('gives the kafka section the real environment at load (a password only in KAUDIT_KAFKA_PASSWORD is enough)', () => {
    const f = join(tempDir(), 'k.yaml');
    writeFileSync(f, 'kafka:\n  brokers: [k1:9093]\n  tls: true\n  sasl: { mechanism: scram-sha-512, username: kaudit }\n');
    const c = loadConfig(f, { KAUDIT_KAFKA_PASSWORD: 's3cret', KAUDIT_KAFKA_GROUP_ID: 'g2' });
    expect(c.kafka?.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'kaudit', password: 's3cret' });
    expect(c.kafka?.groupId).toBe('g2');
    expect(() => loadConfig(f, {})).toThrow(/kafka.sasl needs passwordFile or password/);
    // The brokers from the environment alone make a kafka section.
    expect(loadConfig(undefined, { KAUDIT_KAFKA_BROKERS: 'a:9092,b:9092' }).kafka?.brokers).toEqual(['a:9092', 'b:9092']);
  });

  it.each([
    ['store:\n  pathh: /x\n', /unknown config key "store.pathh" \(store has path, opensearch, retention, alertGroupWindow\)/],
    ['server:\n  tls: { cert: /c, keyy: /k }\n', /unknown config key "server.tls.keyy"/],
    ['tail:\n  - { path: /a, clustr: x }\n', /unknown config key "tail\[0\].clustr"/],
    ['maxLineBytes: lots\n', /maxLineBytes: bad size "lots"/],
    ['maxLineBytes: 10\n', /maxLineBytes must be at least 1024 bytes, got 10/],
    ['webhook: { maxBodyBytes: true }\n', /webhook.maxBodyBytes must be a size in bytes \(e.g. 1MiB\), got true/],
    ['ingest: { batchSize: 0 }\n', /ingest.batchSize must be an integer >= 1, got 0/],
    ['server: { maxResults: 2.5 }\n', /server.maxResults must be an integer >= 1, got 2.5/],
    ['redaction: { enabled: "no" }\n', /redaction.enabled must be true or false, got "no"/],
    ['cluster: [a]\n', /cluster must be a string, got a list/],
    ['store: { retention: { maxAge: 0s } }\n', /store.retention.maxAge must be longer than zero/],
    ['store: { alertGroupWindow: soon }\n', /store.alertGroupWindow: bad duration "soon"/],
    ['server: { listen: nowhere }\n', /server.listen: bad listen address "nowhere"/],
    ['kafka: { brokers: [k:1], compression: zstd }\n', /: kafka.compression must be none or gzip$/],
    ['detection: { severity: { pod-exec: urgent } }\n', /: detection.severity.pod-exec must be one of/],
  ])('refuses %j with a ConfigError naming the file and the key once', (yaml, msg) => {
    const f = join(tempDir(), 'bad.yaml');
    writeFileSync(f, yaml);
    let err: unknown;
    try {
      loadConfig(f, {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const m = (err as Error).message;
    expect(m).toMatch(msg);
    expect(m.startsWith(`${f}: `)).toBe(true);
    // The key is named once: no "kafka: kafka.compression".
    expect(m).not.toMatch(/\b(\w+): \1\./);
  });

  it('names the environment variable whose value is bad', () => {
    expect(() => loadConfig(undefined, { KAUDIT_MAX_LINE_BYTES: 'lots' })).toThrow(/^KAUDIT_MAX_LINE_BYTES: bad size "lots"/);
    expect(() => loadConfig(undefined, { KAUDIT_RETENTION_MAX_AGE: 'forever' })).toThrow(/^KAUDIT_RETENTION_MAX_AGE: bad duration "forever"/);
    expect(() => loadConfig(undefined, { KAUDIT_LISTEN: '0.0.0.0' })).toThrow(/^KAUDIT_LISTEN: bad listen address/);
    expect(loadConfig(undefined, { KAUDIT_MAX_LINE_BYTES: '2MiB' }).maxLineBytes).toBe(2 * 1024 ** 2);
  });

  it('reports a bad detection section as a ConfigError (its own class, for callers that care)', () => {
    const f = join(tempDir(), 'd.yaml');
    writeFileSync(f, 'detection: { rules: { pod-exec: { threshold: { count: 0 } } } }\n');
    const e = (() => {
      try {
        loadConfig(f, {});
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(DetectionConfigError);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).name).toBe('DetectionConfigError');
  });
});
