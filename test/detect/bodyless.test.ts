import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import jsonata from 'jsonata';
import { describe, expect, it } from 'vitest';
import { parseDetectionConfig } from '../../src/detect/config.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { readsOnlyBodies, RuleExpression } from '../../src/detect/expression.js';
import { createDetector, defaultRulesDir, loadRules } from '../../src/detect/index.js';
import { normalise } from '../../src/events/normalise.js';
import { readEventFiles } from '../../src/sources/file-read.js';
import type { NormalisedEvent } from '../../src/events/types.js';
import { engine, ev, redaction } from './helpers.js';

describe('conditions that read only the request and response bodies', () => {
  it('are recognised, and anything that may read more of the event is not', () => {
    const only = (src: string) => readsOnlyBodies(jsonata(src).ast());
    for (const src of [
      '$count($containers()[securityContext.privileged = true]) > 0',
      "$count($obj().rules.verbs[$ in ['create', '*']]) > 0",
      '$exists($obj().spec) and $count($obj().spec.tls) = 0',
      "$count($pathUnder($hostPaths(), 'sensitive-host-paths')) > 0",
      'requestObject.spec.hostPID = true or responseObject.spec.hostPID = true',
      '($x := $podSpecs(); $count($x[hostNetwork = true]) > 0)',
    ])
      expect(only(src), src).toBe(true);
    for (const src of [
      "verb = 'create' and $count($containers()) > 0",
      "$count($containers()) = 0 or user.username = 'x'",
      '$$.requestObject.spec',
      '$.requestObject',
      '$string() = "x"',
      '$now() > "2026"',
      '**.privileged = true',
      '$count($map($containers(), function($c) { verb })) > 0',
      '$isPerson() and $count($obj()) > 0',
      '$commandLine() = "sh"',
      'requestObject.%.verb',
      '$objectName() = "x"',
    ])
      expect(only(src), src).toBe(false);
  });

  it('have one truth for every event without bodies, found by evaluating them on nothing', async () => {
    const lists = (await createDetector()).lists;
    const truth = (src: string) => new RuleExpression(src, lists, { timeoutMs: 1000 }).bodylessTruth();
    expect(await truth('$count($containers()[securityContext.privileged = true]) > 0')).toBe(false);
    expect(await truth("$not($inList($obj().type, 'routine-secret-types'))")).toBe(true);
    expect(await truth("verb = 'create'")).toBeUndefined();
  });

  it('are not evaluated, nor make an event worth keeping, when the event carries no body; with a body they are', async () => {
    const d = engine(`
rules:
  - id: privileged
    title: Privileged container
    description: test
    severity: high
    summary: "{user} privileged"
    match: { verbs: [create, update, patch], resources: [pods] }
    condition: "$count($containers()[securityContext.privileged = true]) > 0"
`);
    const noBody = ev({ verb: 'patch', user: 'kubelet', objectRef: { resource: 'pods', namespace: 'web', name: 'p' } });
    const withBody = ev({
      verb: 'patch',
      objectRef: { resource: 'pods', namespace: 'web', name: 'q' },
      requestObject: { spec: { containers: [{ name: 'a', securityContext: { privileged: true } }] } },
    });
    // Before prepare(), every condition is evaluated.
    expect(d.wants(noBody)).toBe(true);
    await d.prepare();
    expect(d.wants(noBody)).toBe(false);
    expect(d.wants(withBody)).toBe(true);
    expect(await d.detect([noBody])).toEqual([]);
    expect(d.stats()[0]).toMatchObject({ checked: 1, conditionEvaluations: 0 });
    expect((await d.detect([withBody])).map((a) => a.rule)).toEqual(['privileged']);
    expect(d.stats()[0]).toMatchObject({ checked: 2, conditionEvaluations: 1 });
  });

  it('leave the alerts exactly those of an engine that evaluates every condition', async () => {
    const { eventStream } = (await import('../../benchmarks/lib/generate.mjs')) as {
      eventStream: (o: { seed: number; rate: number }) => () => Record<string, unknown>;
    };
    const next = eventStream({ seed: 11, rate: 20 });
    const events: NormalisedEvent[] = [];
    for (let i = 0; i < 6000; i++) {
      const raw = next();
      events.push(ev(raw));
      // The same request logged at Metadata level: no bodies.
      if (raw.requestObject !== undefined || raw.responseObject !== undefined) {
        const { requestObject: _q, responseObject: _r, ...meta } = raw;
        events.push(ev({ ...meta, auditID: `${String(raw.auditID)}-meta`, level: 'Metadata' }));
      }
    }
    const peer = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/peer/falco-k8s-audit/traces');
    if (existsSync(peer)) {
      for await (const r of readEventFiles(readdirSync(peer).map((f) => join(peer, f))))
        if ('event' in r) events.push(normalise(r.event, 'test', redaction, r.text));
    }
    const prepared = await createDetector();
    const set = loadRules(defaultRulesDir());
    const everything = new DetectionEngine({ rules: set.rules, lists: set.lists, config: parseDetectionConfig({}) });
    const a = await prepared.detect(events.filter((e) => prepared.wants(e)));
    const b = await everything.detect(events);
    expect(a.length).toBeGreaterThan(50);
    expect(a.map((x) => `${x.rule} ${x.auditID} ${x.stage}`)).toEqual(b.map((x) => `${x.rule} ${x.auditID} ${x.stage}`));
    const evaluations = (d: DetectionEngine) => d.stats().reduce((n, s) => n + s.conditionEvaluations, 0);
    expect(evaluations(prepared)).toBeLessThan(evaluations(everything) / 2);
  }, 60_000);
});
