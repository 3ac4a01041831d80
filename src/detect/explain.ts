/**
 * `kaudit rules explain ID`: one rule as the engine runs it, so that an analyst can see why an event did or did not
 * alert and what to tighten: its match (with the outcome gate), condition, escalations, the routine traffic it is
 * quiet on (its shipped exceptions and the current values of the lists they use) and the config's own exceptions.
 */
import { stringify } from 'yaml';
import { applyListOverride, type DetectionConfig } from './config.js';
import type { NormalisedEvent, Stage } from '../events/types.js';
import { DetectionEngine } from './engine.js';
import { activeShippedExceptions, matchingShippedException } from './exceptions.js';
import { DetectionLists } from './lists.js';
import { compileMatch } from './match.js';
import type { MatchSpec, RuleSet, RuleSpec } from './rule.js';

export function explainRule(spec: RuleSpec, set: RuleSet, config: DetectionConfig): string {
  const tuning = config.rules?.[spec.id] ?? {};
  const listValue = (name: string): string[] => {
    const base = set.lists.get(name)?.items ?? [];
    const o = config.lists?.[name];
    return o ? applyListOverride(base, o) : [...base];
  };
  const active = activeShippedExceptions(spec.exceptions, tuning);
  const removed = (spec.exceptions ?? []).filter((x) => !active.includes(x)).map((x) => x.name);
  const used = new Set<string>();
  for (const x of active) for (const v of Object.values(x)) if (Array.isArray(v)) for (const p of v) if (p.startsWith('@')) used.add(p.slice(1));
  const global = (config.exceptions ?? []).filter(
    (x) =>
      !x.rules ||
      x.rules.some((r) => r === spec.id || (r.includes('*') && new RegExp(`^${r.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(spec.id))),
  );
  const doc: Record<string, unknown> = {
    id: spec.id,
    title: spec.title,
    severity: config.severity?.[spec.id] ?? tuning.severity ?? spec.severity,
    file: `${spec.file}:${spec.line}`,
    description: spec.description,
    ...(spec.match ? { match: spec.match } : {}),
    ...(spec.condition ? { condition: spec.condition } : {}),
    ...(spec.threshold ? { threshold: { ...spec.threshold, ...(tuning.threshold ?? {}) } } : {}),
    ...(spec.sequence ? { sequence: spec.sequence } : {}),
    ...(spec.escalate ? { escalate: spec.escalate } : {}),
    'quiet on (shipped exceptions; remove with detection.rules.<id>.removeExceptions)': active.length > 0 ? active : 'none',
    ...(removed.length > 0 ? { 'removed by the config': removed } : {}),
    ...(used.size > 0 ? { 'lists those exceptions use (detection.lists.<name> to change)': Object.fromEntries([...used].map((n) => [n, listValue(n)])) } : {}),
    ...(global.length + (tuning.exceptions?.length ?? 0) > 0 ? { 'config exceptions': [...global, ...(tuning.exceptions ?? [])] } : {}),
  };
  return stringify(doc, { lineWidth: 120 });
}

/**
 * Why one event did or did not raise a rule: each key of its match on its own, the outcome gate, the shipped
 * exception (or config exception) it falls under, the condition, and whether the rule alerts on it.
 */
export async function explainEvent(spec: RuleSpec, set: RuleSet, config: DetectionConfig, e: NormalisedEvent): Promise<string> {
  const tuning = config.rules?.[spec.id] ?? {};
  const base = new Map<string, readonly string[]>();
  for (const [n, l] of set.lists) base.set(n, l.items);
  const lists = DetectionLists.build(base, config.lists);
  const all: Stage[] = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'];
  const out: Record<string, unknown> = {
    rule: spec.id,
    event: `${e.auditID} (${e.stage}) ${e.verb} ${e.resource}${e.subresource ? '/' + e.subresource : ''} ${e.namespace ? e.namespace + '/' : ''}${e.name} by ${e.user}`,
  };
  const matches = spec.sequence ? spec.sequence.steps.map((s) => s.match ?? {}) : [spec.match ?? {}];
  const failing = matches.map((m) => {
    const keys = Object.keys(m) as (keyof MatchSpec)[];
    const fails = keys.filter((k) => k !== 'stages' && !compileMatch({ stages: all, outcome: 'any', [k]: m[k] } as MatchSpec, lists, 'match', false).check(e));
    if (!(m.stages ?? ['ResponseComplete']).includes(e.stage)) fails.unshift('stages');
    return fails;
  });
  out.match = failing.some((f) => f.length === 0) ? 'passes' : `does not pass: ${failing.map((f) => f.join(', ')).join(' | ')}`;
  const shipped = matchingShippedException(spec.exceptions, tuning, lists, e);
  if (shipped) out['shipped exception'] = `${shipped}: ${spec.exceptions!.find((x) => x.name === shipped)!.reason}`;
  const engine = new DetectionEngine({
    rules: [{ ...spec, enabled: true }],
    lists: set.lists,
    config: { ...config, enabled: undefined, disabled: undefined },
    onWarning: () => {},
  });
  if (spec.condition && !spec.sequence) {
    const bare = new DetectionEngine({
      rules: [{ ...spec, enabled: true, match: { stages: all, outcome: 'any' }, exceptions: [] }],
      lists: set.lists,
      config: { lists: config.lists },
      onWarning: () => {},
    });
    out.condition = (await bare.detect([e])).length > 0 ? 'true' : 'false';
  }
  const alerts = await engine.detect([e]);
  out.alert =
    alerts.length > 0
      ? `yes (${alerts[0]!.severity}): ${alerts[0]!.summary}`
      : spec.threshold || spec.sequence
        ? 'no (a threshold or sequence rule alerts on the event that completes it)'
        : 'no';
  return stringify(out, { lineWidth: 120 });
}
