/**
 * What each enabled rule needs the audit log to contain (requests, level, stages), for the audit-policy checks.
 */
import type { RuleRequirement } from '../policy/requirements.js';
import type { DetectionEngine } from './engine.js';
import type { DetectionLists } from './lists.js';
import { parseResource } from './match.js';
import type { MatchSpec, RuleSpec } from './rule.js';

function literalNamespaces(m: MatchSpec, lists: DetectionLists): string[] | undefined {
  const inc = m.namespaces?.include;
  if (!inc || inc.length === 0) return undefined;
  const out: string[] = [];
  for (const p of inc) {
    const vals = p.startsWith('@') ? (lists.has(p.slice(1)) ? lists.get(p.slice(1)) : []) : [p];
    for (const v of vals) {
      if (/[*?]/.test(v) || v.startsWith('/')) return undefined; // a pattern: any namespace may match
      out.push(v);
    }
  }
  return out;
}

function requirementOf(spec: RuleSpec, m: MatchSpec | undefined, level: RuleRequirement['level'], lists: DetectionLists, title: string): RuleRequirement {
  const match = m ?? {};
  const verbs = match.verbs && !match.verbs.includes('*') ? [...match.verbs] : [];
  const resources = (match.resources ?? []).map((r) => {
    const ref = parseResource(r);
    return { group: ref.group, resource: ref.resource, ...(ref.subresource !== undefined ? { subresource: ref.subresource } : {}) };
  });
  const ns = literalNamespaces(match, lists);
  return {
    rule: spec.id,
    title,
    verbs,
    resources,
    ...(ns ? { namespaces: ns } : {}),
    ...(match.nonResourceURLs ? { nonResourceURLs: [...match.nonResourceURLs] } : {}),
    level,
    stages: [...(match.stages ?? ['ResponseComplete'])],
  };
}

/** One requirement per running rule (one per step for sequences). */
export function engineRequirements(engine: DetectionEngine, specs: readonly RuleSpec[]): RuleRequirement[] {
  const byId = new Map(specs.map((s) => [s.id, s]));
  const out: RuleRequirement[] = [];
  for (const info of engine.rules) {
    const spec = byId.get(info.id);
    if (!spec) continue;
    if (spec.sequence) {
      for (const st of spec.sequence.steps) out.push(requirementOf(spec, st.match, info.level, engine.lists, `${info.title} (${st.name})`));
    } else out.push(requirementOf(spec, spec.match, info.level, engine.lists, info.title));
  }
  return out;
}
