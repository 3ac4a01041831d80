/**
 * `kaudit rules lint`: everything that can be checked without events. Ids, shapes and duplicates (rule.ts), then per
 * rule: the match compiles, JSONata parses, expressions read only audit-event fields and call only known functions,
 * list names exist, summary placeholders are known, and the rule carries examples and MITRE tags.
 */
import type { DetectionConfig } from './config.js';
import { DetectionEngine } from './engine.js';
import { EVENT_FIELDS, ExpressionError, HELPERS, RuleExpression } from './expression.js';
import { DetectionLists } from './lists.js';
import { KNOWN_VERBS } from './match.js';
import { RuleLoadError, type MatchSpec, type RuleIssue, type RuleSet, type RuleSpec } from './rule.js';
import { unknownPlaceholders } from './summary.js';

const MITRE = /^T\d{4}(?:\.\d{3})?$/;

function matchesOf(spec: RuleSpec): { m: MatchSpec | undefined; where: string }[] {
  const out: { m: MatchSpec | undefined; where: string }[] = [];
  if (spec.sequence) spec.sequence.steps.forEach((s, i) => out.push({ m: s.match, where: `sequence.steps[${i}].match` }));
  else out.push({ m: spec.match, where: 'match' });
  for (const [i, e] of (spec.escalate ?? []).entries()) out.push({ m: e.when, where: `escalate[${i}].when` });
  return out;
}

function expressionsOf(spec: RuleSpec): { src: string; where: string }[] {
  const out: { src: string; where: string }[] = [];
  if (spec.condition) out.push({ src: spec.condition, where: 'condition' });
  for (const [i, s] of (spec.sequence?.steps ?? []).entries()) if (s.condition) out.push({ src: s.condition, where: `sequence.steps[${i}].condition` });
  for (const [k, src] of Object.entries(spec.details ?? {})) out.push({ src, where: `details.${k}` });
  return out;
}

export function lintRuleSet(set: RuleSet, config: DetectionConfig = {}): RuleIssue[] {
  const issues: RuleIssue[] = [...set.issues];
  const base = new Map<string, readonly string[]>();
  for (const [n, l] of set.lists) base.set(n, l.items);
  const lists = DetectionLists.build(base, config.lists);
  const usedLists = new Set<string>();
  for (const spec of set.rules) {
    const at = (message: string, level: 'error' | 'warning' = 'error') => issues.push({ level, file: spec.file, line: spec.line, rule: spec.id, message });
    // Compile alone, with every list it requires filled, so that an allowlist rule is checked too.
    const filled: Record<string, string[]> = {};
    for (const l of spec.requires ?? []) {
      usedLists.add(l);
      if (!lists.has(l)) at(`requires unknown list "${l}"`);
      else if (lists.get(l).length === 0) filled[l] = ['lint-placeholder'];
    }
    try {
      new DetectionEngine({
        rules: [{ ...spec, enabled: true }],
        lists: set.lists,
        config: { ...(config.lists ? { lists: config.lists } : {}) },
        listValues: filled,
        onWarning: () => {},
      });
    } catch (e) {
      if (e instanceof RuleLoadError) issues.push(...e.issues);
      else at((e as Error).message);
      continue;
    }
    for (const { m, where } of matchesOf(spec)) {
      for (const v of m?.verbs ?? []) if (v !== '*' && !KNOWN_VERBS.has(v)) at(`${where}.verbs: "${v}" is not a Kubernetes verb`, 'warning');
      for (const f of ['users', 'groups', 'namespaces', 'names', 'userAgents', 'paths'] as const) {
        for (const p of [...(m?.[f]?.include ?? []), ...(m?.[f]?.exclude ?? [])]) if (p.startsWith('@')) usedLists.add(p.slice(1));
      }
      if (m?.outcome === 'succeeded' && (m.stages ?? ['ResponseComplete']).every((st) => st === 'RequestReceived'))
        at(
          `${where}: only the RequestReceived stage, which carries no response code, with outcome succeeded (the default): the rule never fires; set outcome: any`,
        );
      if (spec.sequence === undefined && m === undefined && where === 'match')
        at('no match: the rule is handed every event; name verbs and resources so the index can skip events', 'warning');
    }
    for (const x of spec.exceptions ?? []) {
      for (const f of ['users', 'groups', 'namespaces', 'names', 'images', 'owners', 'verbs'] as const) {
        for (const p of x[f] ?? []) if (p.startsWith('@')) usedLists.add(p.slice(1));
      }
    }
    for (const { src, where } of expressionsOf(spec)) {
      let x: RuleExpression;
      try {
        x = new RuleExpression(src, lists, { timeoutMs: 50 });
      } catch (e) {
        if (!(e instanceof ExpressionError)) throw e;
        continue; // reported by the compile above
      }
      for (const f of x.analysis.rootFields)
        if (!EVENT_FIELDS.has(f)) at(`${where}: "${f}" is not a field of an audit event (${[...EVENT_FIELDS].join(', ')})`);
      for (const fn of x.analysis.unknownFunctions) at(`${where}: unknown function $${fn}() (helpers: ${Object.keys(HELPERS).join(', ')})`);
      for (const v of x.analysis.freeVariables) at(`${where}: unknown variable $${v}`, 'warning');
      for (const l of x.analysis.lists) usedLists.add(l);
      if (x.notCovered !== undefined)
        at(
          `${where}: evaluated by JSONata's own evaluator, several times slower than kaudit's synchronous one, which does not cover ${x.notCovered}`,
          'warning',
        );
    }
    if (spec.summary) {
      const bad = unknownPlaceholders(spec.summary, Object.keys(spec.details ?? {}));
      if (bad.length > 0) at(`summary: unknown placeholder ${bad.map((b) => `{${b}}`).join(', ')}`);
    } else at('no summary template: alerts will read "{user} {verbPast} {target}"', 'warning');
    if (!spec.description) at('no description', 'warning');
    if (!spec.tags.some((t) => MITRE.test(t))) at('no MITRE ATT&CK technique id among the tags', 'warning');
    if (spec.examples.fire.length === 0) at('no fire example: add events that must raise the rule');
    if (spec.examples.quiet.length === 0) at('no quiet example: add a near miss that must not raise the rule', 'warning');
    for (const e of spec.escalate ?? []) if (e.severity === spec.severity) at(`escalate to ${e.severity} is the rule's own severity`, 'warning');
  }
  for (const [name, l] of set.lists) {
    if (!usedLists.has(name) && !['system-users', 'system-groups'].includes(name)) {
      issues.push({ level: 'warning', file: l.file, line: l.line, message: `list ${name} is not used by any rule` });
    }
  }
  return issues;
}
