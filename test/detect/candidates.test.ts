import { describe, expect, it } from 'vitest';
import { CandidateIndex } from '../../src/detect/candidates.js';
import type { IndexPlan } from '../../src/detect/match.js';
import { STAGES } from '../../src/events/types.js';

/**
 * The candidate index, filled on first lookup, must answer exactly the rules whose plan admits the event, whatever
 * order the combinations are first met in and however often they are asked again.
 */
describe('candidate index', () => {
  const plan = (p: Partial<IndexPlan>): { plan: IndexPlan; name: string } => ({
    name: JSON.stringify(p),
    plan: { stages: ['ResponseComplete'], verbs: null, resources: null, resourceRequests: true, nonResource: false, ...p },
  });
  const items = [
    plan({}),
    plan({ verbs: ['create'], resources: [{ group: '', resource: 'pods', subresource: 'exec' }] }),
    plan({ resources: [{ group: '', resource: 'pods', subresource: '*' }] }),
    plan({ resources: [{ group: '', resource: 'secrets' }], verbs: ['get', 'list'] }),
    plan({ stages: ['ResponseStarted', 'ResponseComplete'], resources: [{ group: '', resource: 'pods', subresource: 'log' }] }),
    plan({ resourceRequests: false, nonResource: true, verbs: ['get'] }),
    plan({ nonResource: true, stages: ['RequestReceived'] }),
    plan({
      resources: [
        { group: '', resource: 'pods' },
        { group: '', resource: 'deployments', subresource: 'scale' },
      ],
      verbs: ['patch', 'update'],
    }),
  ];
  // What each plan means, restated: the stage, the verb, then resource requests or not.
  const admits = (p: IndexPlan, stage: string, res: string, sub: string, verb: string) =>
    p.stages.includes(stage as never) &&
    (p.verbs === null || p.verbs.includes(verb)) &&
    (res === ''
      ? p.nonResource
      : p.resourceRequests &&
        (p.resources === null ||
          p.resources.some((r) => r.resource === res && (r.subresource === undefined ? sub === '' : r.subresource === '*' || r.subresource === sub))));

  it('answers every combination, named or not, as the plans say, in any order and again', () => {
    const combos: [string, string, string, string][] = [];
    for (const stage of [...STAGES, 'Bogus'])
      for (const res of ['', 'pods', 'secrets', 'deployments', 'configmaps'])
        for (const sub of ['', 'exec', 'log', 'scale', 'status'])
          for (const verb of ['get', 'list', 'create', 'patch', 'update', 'delete', 'watch']) combos.push([stage, res, sub, verb]);
    // A fixed shuffle: the first lookup of each table happens at varied points.
    let seed = 7;
    const order = combos.map((c) => ({ c, k: (seed = (seed * 48271) % 2147483647) })).sort((a, b) => a.k - b.k);
    const index = new CandidateIndex(items);
    for (const pass of [1, 2]) {
      for (const { c } of order) {
        const [stage, res, sub, verb] = c;
        const want = items.filter((it) => admits(it.plan, stage, res, res === '' ? '' : sub, verb)).map((it) => it.name);
        const got = index.lookup(stage, res, res === '' ? '' : sub, verb).map((it) => it.name);
        expect({ c, pass, got }).toEqual({ c, pass, got: want });
      }
    }
    expect(index.tables).toBeGreaterThan(1);
  });
});
