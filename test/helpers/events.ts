import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';

let counter = 0;

/** A v1 audit event with sensible defaults; `over` replaces fields. */
export function ev(over: Record<string, unknown> = {}): Record<string, unknown> {
  counter++;
  const id = `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`;
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: id,
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/default/pods/web-1',
    verb: 'get',
    user: { username: 'alice@example.com', groups: ['system:authenticated'] },
    sourceIPs: ['203.0.113.10'],
    userAgent: 'kubectl/v1.30.2',
    objectRef: { resource: 'pods', namespace: 'default', name: 'web-1', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 200 },
    requestReceivedTimestamp: new Date(Date.UTC(2026, 10, 1, 12, 0, 0) + counter * 1000)
      .toISOString()
      .replace('Z', '123Z')
      .replace(/\.(\d{3})123Z$/, '.$1456Z'),
    stageTimestamp: '2026-11-01T12:00:00.200000Z',
    annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' },
    ...over,
  };
}

export function lines(events: Record<string, unknown>[]): string {
  return events.map((e) => JSON.stringify(e)).join('\n') + '\n';
}

/**
 * A fresh temp dir, removed when the test that made it (or the beforeEach hook before it) finishes. An `afterEach`
 * registered from inside a test never ran, so every run left its dirs in /tmp. One made outside a test (a describe
 * block, a beforeAll hook) is not removed.
 */
export function tempDir(prefix = 'kaudit-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  try {
    onTestFinished(() => rmSync(d, { recursive: true, force: true }));
  } catch {
    // Not inside a test: nothing to hang the removal on.
  }
  return d;
}

export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
