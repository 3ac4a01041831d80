/**
 * `kaudit rules explain ID`: one rule as the engine runs it, so that an analyst can see why an event did or did not
 * alert and what to tighten: its match (with the outcome gate), condition, escalations, the routine traffic it is
 * quiet on (its shipped exceptions and the current values of the lists they use) and the config's own exceptions.
 */
import { stringify } from 'yaml';
import { applyListOverride, type DetectionConfig } from './config.js';
import { activeShippedExceptions } from './exceptions.js';
import type { RuleSet, RuleSpec } from './rule.js';

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
  const global = (config.exceptions ?? []).filter((x) => !x.rules || x.rules.some((r) => r === spec.id || (r.includes('*') && new RegExp(`^${r.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(spec.id))));
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
