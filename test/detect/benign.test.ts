import { describe, expect, it } from 'vitest';
import { generateBenign } from '../../fixtures/benign/generate.mjs';
import { severityRank, type Alert } from '../../src/detect/alert.js';
import { createDetector } from '../../src/detect/index.js';
import { normalise } from '../../src/events/normalise.js';
import type { AuditEvent, NormalisedEvent } from '../../src/events/types.js';
import { redaction } from './helpers.js';

// A healthy cluster's control plane doing its job (fixtures/benign/generate.mjs): the whole enabled catalog must stay
// at info on it. The figure printed is the README's "alerts per million benign events".
async function run(events: number, config: Record<string, unknown> = {}): Promise<{ alerts: Alert[]; events: number }> {
  const engine = await createDetector({ config });
  const alerts: Alert[] = [];
  let batch: NormalisedEvent[] = [];
  const pending: NormalisedEvent[][] = [];
  const made = generateBenign({ events }, (evs: AuditEvent[]) => {
    for (const e of evs) batch.push(normalise(e, 'benign', redaction));
    if (batch.length >= 512) (pending.push(batch), (batch = []));
  }) as number;
  pending.push(batch);
  for (const b of pending) alerts.push(...(await engine.detect(b)));
  return { alerts, events: made };
}

function aboveInfo(alerts: Alert[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of alerts)
    if (severityRank(a.severity) > severityRank('info')) out[`${a.rule} ${a.severity} ${a.user}`] = (out[`${a.rule} ${a.severity} ${a.user}`] ?? 0) + 1;
  return out;
}

describe('benign control-plane traffic', () => {
  it('raises no alert above info on 200k events of a healthy cluster', { timeout: 180_000 }, async () => {
    const { alerts, events } = await run(200_000);
    const loud = aboveInfo(alerts);
    const perMillion = (Object.values(loud).reduce((s, n) => s + n, 0) / events) * 1e6;
    console.log(`benign corpus: ${events} events, ${alerts.length} alerts (info included), ${perMillion.toFixed(1)} above info per million`);
    expect(loud).toEqual({});
  });

  it('is loud without the shipped exceptions (the corpus holds what they are for)', { timeout: 60_000 }, async () => {
    const rules: Record<string, unknown> = {};
    for (const id of ['pod-privileged', 'pod-sensitive-hostpath', 'pod-host-network', 'pod-in-system-namespace', 'role-pod-exec', 'secret-list'])
      rules[id] = { removeExceptions: ['*'] };
    const { alerts } = await run(20_000, { rules });
    const fired = new Set(alerts.filter((a) => severityRank(a.severity) > severityRank('info')).map((a) => a.rule));
    expect([...fired].sort()).toEqual([
      'pod-host-network',
      'pod-in-system-namespace',
      'pod-privileged',
      'pod-sensitive-hostpath',
      'role-pod-exec',
      'secret-list',
    ]);
  });

  it('removing one exception by name brings back only its traffic', { timeout: 60_000 }, async () => {
    const { alerts } = await run(20_000, {
      rules: { 'pod-privileged': { removeExceptions: ['mirror-pods'] }, 'pod-sensitive-hostpath': { removeExceptions: ['node-agents'] } },
    });
    const users = new Set(
      alerts.filter((a) => severityRank(a.severity) > severityRank('info')).map((a) => `${a.rule} ${a.user.startsWith('system:node:') ? 'node' : a.user}`),
    );
    expect([...users].sort()).toEqual(['pod-sensitive-hostpath system:serviceaccount:kube-system:daemon-set-controller']);
  });
});
