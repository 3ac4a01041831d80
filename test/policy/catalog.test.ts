// The policy checks against the real detection catalog (detections/, through src/detect's loadRuleRequirements).
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readEventFiles } from '../../src/sources/file-read.js';
import { checkPolicy, conflictsWithCis } from '../../src/policy/checks.js';
import { generatePolicy, PROFILES } from '../../src/policy/generate.js';
import { parsePolicy } from '../../src/policy/load.js';
import { loadDetectionRequirements, parseRequirements, type RuleRequirement } from '../../src/policy/requirements.js';
import { simulatePolicy } from '../../src/policy/simulate.js';

const root = new URL('../../', import.meta.url).pathname;
let reqs: RuleRequirement[] | null = null;
let why = '';
try {
  reqs = await loadDetectionRequirements();
} catch (e) {
  why = (e as Error).message;
}

describe.skipIf(!reqs || reqs.length === 0)(`the real detection catalog${why ? ` (${why})` : ''}`, () => {
  const catalog = reqs ?? [];
  const conflicting = catalog.filter(conflictsWithCis).map((r) => r.rule);

  it('gives well-formed requirements', () => {
    expect(parseRequirements(JSON.parse(JSON.stringify(catalog)), 'catalog')).toEqual(catalog);
  });

  for (const profile of PROFILES) {
    it(`the ${profile} profile passes check; only minimal (and CIS conflicts) leave detections blind`, async () => {
      const g = await generatePolicy({ profile, requirements: catalog });
      const report = checkPolicy(parsePolicy(g.yaml, profile), { requirements: catalog });
      expect(report.findings.filter((f) => f.severity === 'error')).toEqual([]);
      const blind = [...new Set(report.findings.filter((f) => f.id === 'detection-blind-spot').map((f) => f.detection))];
      if (profile === 'minimal') expect(blind.length).toBeGreaterThan(0);
      else expect(blind.filter((b) => !conflicting.includes(b!))).toEqual([]);
    });
  }

  it('the shipped profiles and examples check the same with the catalog, apart from blind spots', () => {
    for (const dir of ['profiles', 'examples']) {
      for (const f of readdirSync(`${root}audit-policies/${dir}`).filter((x) => x.endsWith('.yaml'))) {
        const loaded = parsePolicy(readFileSync(`${root}audit-policies/${dir}/${f}`, 'utf8'), f);
        const without = checkPolicy(loaded).findings;
        const withCatalog = checkPolicy(loaded, { requirements: catalog }).findings.filter((x) => x.id !== 'detection-blind-spot');
        expect(withCatalog, f).toEqual(without);
      }
    }
  });

  it('simulating the recommended profile over the fixture log loses nothing but CIS conflicts', async () => {
    const g = await generatePolicy({ profile: 'recommended', requirements: catalog });
    const sim = await simulatePolicy(parsePolicy(g.yaml).policy!, readEventFiles([`${root}fixtures/policies/traffic/audit-requestresponse.jsonl`]), {
      requirements: catalog,
    });
    expect(sim.detections.filter((d) => d.lost > 0 && !conflicting.includes(d.rule)).map((d) => d.rule)).toEqual([]);
    // the fixture's person session is seen by some detection
    expect(sim.detections.some((d) => d.requests > 0)).toBe(true);
  });
});
