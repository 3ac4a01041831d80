// The error model (named errors with `retriable`) and the one retry helper that decides on it.
import { describe, expect, it } from 'vitest';
import { DetectionConfigError } from '../src/detect/config.js';
import { ConfigError, isRetriable, KauditError, OverloadedError } from '../src/errors.js';
import { retry, retryDelayMs } from '../src/retry.js';

describe('errors', () => {
  it('carry their class name and retriable flag', () => {
    const o = new OverloadedError();
    expect(o).toBeInstanceOf(KauditError);
    expect(o.name).toBe('OverloadedError');
    expect(o.message).toBe('ingest queue is full; retry later');
    expect(isRetriable(o)).toBe(true);
    expect(isRetriable(new ConfigError('x must be y'))).toBe(false);
    expect(new DetectionConfigError('detection.x').name).toBe('DetectionConfigError');
    expect(new DetectionConfigError('detection.x')).toBeInstanceOf(ConfigError);
    // Only kaudit's own errors are trusted to say so: an unknown error, or a look-alike object, is not retried.
    expect(isRetriable(new Error('disk full'))).toBe(false);
    expect(isRetriable({ retriable: true, code: 'OVERLOADED' })).toBe(false);
    expect(new KauditError('broker away', { retriable: true, cause: new Error('ECONNREFUSED') }).cause).toBeInstanceOf(Error);
  });
});

describe('retry', () => {
  const noWait = { initialMs: 1, maxMs: 1, sleep: async () => {} };

  it('retries a retriable error until the operation succeeds, waiting longer each time up to maxMs', async () => {
    const waits: number[] = [];
    let calls = 0;
    const r = await retry(
      async (attempt) => {
        calls++;
        if (attempt < 5) throw new OverloadedError();
        return 'stored';
      },
      { initialMs: 50, maxMs: 300, sleep: async (ms) => void waits.push(ms) },
    );
    expect(r).toBe('stored');
    expect(calls).toBe(6);
    expect(waits).toEqual([50, 100, 200, 300, 300]);
    expect(retryDelayMs(3, { initialMs: 500, maxMs: 30_000 })).toBe(4000);
  });

  it('throws an error that is not retriable at once', async () => {
    let calls = 0;
    const bad = new ConfigError('kafka.brokers is empty');
    await expect(
      retry(async () => {
        calls++;
        throw bad;
      }, noWait),
    ).rejects.toBe(bad);
    expect(calls).toBe(1);
    calls = 0;
    await expect(
      retry(async () => {
        calls++;
        throw new Error('SQLITE_CORRUPT');
      }, noWait),
    ).rejects.toThrow('SQLITE_CORRUPT');
    expect(calls).toBe(1);
  });

  it('gives up after `retries` and when stopped, with the last error', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw new OverloadedError(`full ${calls}`);
        },
        { ...noWait, retries: 3 },
      ),
    ).rejects.toThrow('full 4');
    expect(calls).toBe(4);
    let stopped = false;
    calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          if (calls === 2) stopped = true;
          throw new OverloadedError();
        },
        { ...noWait, stopped: () => stopped },
      ),
    ).rejects.toBeInstanceOf(OverloadedError);
    expect(calls).toBe(2);
  });

  it('takes a caller-chosen notion of retriable', async () => {
    let calls = 0;
    const r = await retry(
      async () => {
        if (++calls < 3) throw new Error('busy');
        return calls;
      },
      { ...noWait, retriable: (e) => (e as Error).message === 'busy' },
    );
    expect(r).toBe(3);
  });
});
