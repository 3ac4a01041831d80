import { describe, expect, it } from 'vitest';
import { runRuleExample } from '../../src/detect/examples.js';
import { defaultRulesDir, loadRules } from '../../src/detect/index.js';
import type { ExampleCase, MatchSpec, RuleSpec } from '../../src/detect/rule.js';
import { engine, ev } from './helpers.js';

// A request that failed or was denied did not create, bind, change or read anything: every rule gated on success
// must be quiet on each of its own fire examples once the requests in it fail (denied, invalid, conflicting,
// erroring), and every rule made for failures quiet once they succeed.
const set = loadRules(defaultRulesDir());

function matches(spec: RuleSpec): MatchSpec[] {
  return spec.sequence ? spec.sequence.steps.map((s) => s.match ?? {}) : [spec.match ?? {}];
}

function withCode(c: ExampleCase, code: number): ExampleCase {
  return {
    ...c,
    count: 0,
    events: c.events.map((e) => {
      const { responseStatus: _r, annotations: _a, ...rest } = e;
      return { ...rest, code, ...(e.stage === 'RequestReceived' ? { stage: 'ResponseComplete' } : {}) };
    }),
  };
}

async function quietWith(spec: RuleSpec, code: number): Promise<void> {
  const variant: RuleSpec = { ...spec, examples: { fire: [], quiet: spec.examples.fire.map((c) => withCode(c, code)) } };
  for (let i = 0; i < variant.examples.quiet.length; i++) {
    const r = await runRuleExample(set, variant, 'quiet', i);
    expect(r.error).toBeUndefined();
    expect(r.got, `${spec.id} fire[${i}] with code ${code}: ${JSON.stringify(r.alerts.map((a) => a.summary))}`).toBe(0);
  }
}

describe('outcome gate', () => {
  const gated = set.rules.filter(
    (s) =>
      matches(s).every((m) => m.outcome === 'succeeded' || (m.codes ?? []).every((c) => String(c) === '101' || String(c).startsWith('2'))) &&
      matches(s).some((m) => m.outcome === 'succeeded' || m.codes),
  );
  it('covers most of the catalog', () => expect(gated.length).toBeGreaterThan(50));
  for (const spec of gated) {
    it(`${spec.id}: quiet when its requests were denied (403), invalid (422), conflicting (409) or failed (500)`, async () => {
      for (const code of [403, 422, 409, 500]) await quietWith(spec, code);
    });
  }

  const forFailures = set.rules.filter((s) => matches(s).every((m) => m.decision === 'forbid' || m.outcome === 'failed'));
  it('has rules made for failures', () =>
    expect(forFailures.map((s) => s.id)).toEqual(expect.arrayContaining(['forbidden-burst', 'secret-access-denied-burst'])));
  for (const spec of forFailures) {
    it(`${spec.id}: quiet when its requests succeeded`, async () => {
      await quietWith(spec, 200);
    });
  }

  it('the default is succeeded; decision forbid, codes and an explicit outcome are kept', () => {
    const byId = new Map(set.rules.map((s) => [s.id, s]));
    expect(byId.get('pod-privileged')!.match!.outcome).toBe('succeeded');
    expect(byId.get('forbidden-burst')!.match!.outcome).toBeUndefined();
    expect(byId.get('pod-exec')!.match!.outcome).toBeUndefined();
    expect(byId.get('discovery-burst')!.match!.outcome).toBe('any');
  });
});

describe('stages: one alert per request, on the stage with the evidence', () => {
  const rule = `
rules:
  - id: priv
    title: p
    severity: high
    match: {verbs: [create], resources: [pods]}
    condition: "$count($containers()[securityContext.privileged = true]) > 0"
`;
  const pod = { kind: 'Pod', spec: { containers: [{ name: 'c', image: 'x', securityContext: { privileged: true } }] } };
  it('a create logged at RequestReceived (body, no outcome yet) raises nothing; its ResponseComplete raises one', async () => {
    const e = engine(rule);
    const rr = ev({ verb: 'create', stage: 'RequestReceived', auditID: 'a1', objectRef: { resource: 'pods', namespace: 'web' }, requestObject: pod });
    expect(await e.detect([rr])).toHaveLength(0);
    const rc = () => ev({ verb: 'create', auditID: 'a1', objectRef: { resource: 'pods', namespace: 'web' }, requestObject: pod });
    expect(await e.detect([rc(), rc()])).toHaveLength(1);
  });
  it('the same create failing at ResponseComplete raises nothing at either stage', async () => {
    const e = engine(rule);
    const rr = ev({ verb: 'create', stage: 'RequestReceived', auditID: 'a2', objectRef: { resource: 'pods', namespace: 'web' }, requestObject: pod });
    const rc = ev({ verb: 'create', code: 422, auditID: 'a2', objectRef: { resource: 'pods', namespace: 'web' }, requestObject: pod });
    expect(await e.detect([rr, rc])).toHaveLength(0);
  });
});
