import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { defaultConfig, loadConfig, parseListen } from '../src/config/config.js';
import { parseBytes, parseDuration } from '../src/config/values.js';
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
    writeFileSync(f, 'cluster: prod\nstore:\n  path: /var/lib/kaudit/k.db\n  retention:\n    maxAge: 30d\nserver:\n  listen: 127.0.0.1:9000\ntail:\n  - path: /var/log/kubernetes/audit.log\n');
    const c = loadConfig(f, { KAUDIT_LISTEN: '127.0.0.1:9999' });
    expect(c).toMatchObject({ cluster: 'prod', store: { path: '/var/lib/kaudit/k.db', retention: { maxAge: 30 * 86_400_000, intervalSeconds: 60 } }, server: { listen: '127.0.0.1:9999' } });
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
});
