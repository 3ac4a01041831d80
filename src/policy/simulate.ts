/**
 * `kaudit policy simulate`: replays a log captured at a high level through a proposed policy. For each event it asks
 * what the proposed policy would have written (nothing, or the event cut down to the new level) and adds up events
 * and bytes per deciding rule; for each detection, which of its requests would still be visible.
 *
 * The estimate can only remove: an event captured at Metadata cannot grow a body, and a stage the capture omitted
 * cannot come back. Such events are counted as `underCaptured` so the reader knows the figures are a lower bound.
 */
import type { AuditEvent, Level } from '../events/types.js';
import { attributesFromEvent, evaluatePolicy } from './evaluate.js';
import { requirementCounts, type RuleRequirement } from './requirements.js';
import type { Policy, PolicyRule } from './types.js';
import { levelAtLeast, levelRank } from './types.js';

export type SimulationItem = AuditEvent | { event: AuditEvent; text?: string; where?: string } | { error: string; where: string };

export interface RuleVolume {
  /** Deciding rule, null for requests no rule matched. */
  rule: number | null;
  level: Level;
  /** Events of requests this rule decided, in the input. */
  inputEvents: number;
  inputBytes: number;
  /** What the proposed policy keeps of them. */
  keptEvents: number;
  keptBytes: number;
}

export interface DetectionVisibility {
  rule: string;
  title: string;
  /** Requests in the input that the detection looks at. */
  requests: number;
  /** Of those, visible (right level and stage) in the input as captured. */
  visibleInInput: number;
  /** ... and under the proposed policy. */
  visibleAfter: number;
  /** Requests visible in the input that the proposed policy would hide. */
  lost: number;
}

export interface SimulationReport {
  input: { events: number; bytes: number; badRecords: number };
  kept: { events: number; bytes: number };
  rules: RuleVolume[];
  /** Events the proposed policy would write at a higher level than the capture holds. */
  underCaptured: number;
  detections: DetectionVisibility[];
  /** First few bad records, for the message. */
  errors: string[];
}

function lineBytes(s: string): number {
  return Buffer.byteLength(s, 'utf8') + 1;
}

function stripManagedFields(o: unknown): unknown {
  if (!o || typeof o !== 'object') return o;
  const obj = o as Record<string, unknown>;
  const meta = obj.metadata as Record<string, unknown> | undefined;
  let out = obj;
  if (meta && typeof meta === 'object' && 'managedFields' in meta) {
    const { managedFields: _drop, ...rest } = meta;
    void _drop;
    out = { ...obj, metadata: rest };
  }
  if (Array.isArray(obj.items)) out = { ...out, items: obj.items.map(stripManagedFields) };
  return out;
}

/** The event as the proposed policy would write it. */
export function reshapeEvent(e: AuditEvent, level: Level, omitManagedFields: boolean): AuditEvent {
  const out: AuditEvent = { ...e, level };
  if (levelRank(level) < levelRank('Request')) delete out.requestObject;
  if (levelRank(level) < levelRank('RequestResponse')) delete out.responseObject;
  if (omitManagedFields) {
    if (out.requestObject !== undefined) out.requestObject = stripManagedFields(out.requestObject);
    if (out.responseObject !== undefined) out.responseObject = stripManagedFields(out.responseObject);
  }
  return out;
}

/** Accepts bare events and the items of readEventFiles (`{event, text, where}` or `{error, where}`). */
export function unwrapItem(item: SimulationItem): { event?: AuditEvent; text?: string; error?: string; where?: string } {
  if ('error' in item && typeof item.error === 'string') return { error: item.error, where: typeof item.where === 'string' ? item.where : undefined };
  if ('event' in item && item.event && typeof item.event === 'object' && 'auditID' in (item.event as object)) {
    const w = item as { event: AuditEvent; text?: string; where?: string };
    return { event: w.event, text: w.text, where: w.where };
  }
  return { event: item as AuditEvent };
}

export async function simulatePolicy(
  policy: Policy,
  events: AsyncIterable<SimulationItem> | Iterable<SimulationItem>,
  opts: { requirements?: RuleRequirement[] } = {},
): Promise<SimulationReport> {
  const reqs = opts.requirements ?? [];
  const report: SimulationReport = {
    input: { events: 0, bytes: 0, badRecords: 0 },
    kept: { events: 0, bytes: 0 },
    rules: [],
    underCaptured: 0,
    detections: [],
    errors: [],
  };
  const byRule = new Map<number | null, RuleVolume>();
  const seen = reqs.map(() => new Set<string>());
  const visIn = reqs.map(() => new Set<string>());
  const visAfter = reqs.map(() => new Set<string>());

  for await (const item of events as AsyncIterable<SimulationItem>) {
    const u = unwrapItem(item);
    if (u.error !== undefined || !u.event) {
      report.input.badRecords++;
      if (report.errors.length < 5) report.errors.push(`${u.where ?? '?'}: ${u.error ?? 'not an event'}`);
      continue;
    }
    const e = u.event;
    const inBytes = u.text !== undefined ? lineBytes(u.text) : lineBytes(JSON.stringify(e));
    report.input.events++;
    report.input.bytes += inBytes;
    const a = attributesFromEvent(e);
    const d = evaluatePolicy(policy, a);
    let v = byRule.get(d.rule);
    if (!v) {
      v = { rule: d.rule, level: d.level, inputEvents: 0, inputBytes: 0, keptEvents: 0, keptBytes: 0 };
      byRule.set(d.rule, v);
    }
    v.inputEvents++;
    v.inputBytes += inBytes;
    const kept = d.level !== 'None' && !d.omitStages.includes(e.stage);
    if (kept) {
      if (levelRank(d.level) > levelRank(e.level)) report.underCaptured++;
      const effective: Level = levelRank(d.level) > levelRank(e.level) ? e.level : d.level;
      const unchanged = effective === e.level && !d.omitManagedFields;
      const outBytes = unchanged ? inBytes : lineBytes(JSON.stringify(reshapeEvent(e, effective, d.omitManagedFields)));
      v.keptEvents++;
      v.keptBytes += outBytes;
      report.kept.events++;
      report.kept.bytes += outBytes;
    }
    const id = e.auditID ?? '';
    reqs.forEach((req, i) => {
      if (!requirementCounts(req, a)) return;
      seen[i]!.add(id);
      if (!req.stages.includes(e.stage)) return;
      if (levelAtLeast(e.level, req.level)) visIn[i]!.add(id);
      if (kept && levelAtLeast(d.level, req.level) && levelAtLeast(e.level, req.level)) visAfter[i]!.add(id);
    });
  }
  report.rules = [...byRule.values()].sort((x, y) => (x.rule ?? Infinity) - (y.rule ?? Infinity));
  report.detections = reqs.map((req, i) => {
    let lost = 0;
    for (const id of visIn[i]!) if (!visAfter[i]!.has(id)) lost++;
    return { rule: req.rule, title: req.title, requests: seen[i]!.size, visibleInInput: visIn[i]!.size, visibleAfter: visAfter[i]!.size, lost };
  });
  return report;
}

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function pct(part: number, whole: number): string {
  return whole === 0 ? '0%' : `${((100 * part) / whole).toFixed(1)}%`;
}

/** A one-line summary of a rule, for tables: `None: users system:kube-proxy; watch; endpoints`. */
export function describeRule(r: PolicyRule): string {
  const parts: string[] = [];
  if (r.users.length) parts.push(`users ${r.users.join(',')}`);
  if (r.userGroups.length) parts.push(`groups ${r.userGroups.join(',')}`);
  if (r.verbs.length) parts.push(r.verbs.join(','));
  if (r.namespaces.length) parts.push(`ns ${r.namespaces.map((n) => (n === '' ? '""' : n)).join(',')}`);
  if (r.resources.length) {
    parts.push(
      r.resources
        .map((gr) => {
          const group = gr.group === '' ? 'core' : gr.group;
          if (gr.resources.length === 0) return `${group}/*`;
          return gr.resources.map((x) => (gr.group === '' ? x : `${x}.${gr.group}`)).join(',');
        })
        .join(','),
    );
  }
  if (r.nonResourceURLs.length) parts.push(r.nonResourceURLs.join(','));
  const text = parts.length ? parts.join('; ') : 'everything else';
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

export function formatSimulation(r: SimulationReport, policySource: string, policy?: Policy): string {
  const out: string[] = [];
  out.push(`Replaying ${r.input.events} events (${human(r.input.bytes)}) through ${policySource}`);
  out.push(`kept: ${r.kept.events} events (${pct(r.kept.events, r.input.events)}), ${human(r.kept.bytes)} (${pct(r.kept.bytes, r.input.bytes)} of the input)`);
  if (r.input.badRecords > 0) out.push(`skipped ${r.input.badRecords} bad record(s), e.g. ${r.errors[0]}`);
  if (r.underCaptured > 0) out.push(`note: ${r.underCaptured} event(s) would be written at a higher level than the capture holds; their size is a lower bound`);
  out.push('');
  out.push(
    `${'rule'.padEnd(8)}${'level'.padEnd(17)}${'events in'.padStart(10)}${'kept'.padStart(10)}${'bytes in'.padStart(12)}${'kept'.padStart(12)}  matches`,
  );
  for (const v of r.rules) {
    const what = v.rule === null ? 'no rule (default None)' : policy?.rules[v.rule] ? describeRule(policy.rules[v.rule]!) : '';
    out.push(
      `${(v.rule === null ? '(none)' : String(v.rule)).padEnd(8)}${v.level.padEnd(17)}${String(v.inputEvents).padStart(10)}${String(v.keptEvents).padStart(10)}${human(v.inputBytes).padStart(12)}${human(v.keptBytes).padStart(12)}  ${what}`.trimEnd(),
    );
  }
  if (r.detections.length > 0) {
    out.push('');
    const blind = r.detections.filter((d) => d.lost > 0);
    out.push(
      blind.length === 0
        ? 'detections: none would go blind on this traffic'
        : `detections that would go blind on this traffic: ${blind.map((d) => d.rule).join(', ')}`,
    );
    for (const d of r.detections) {
      if (d.requests === 0) continue;
      out.push(
        `  ${d.lost > 0 ? 'BLIND' : 'ok   '} ${d.rule}: ${d.requests} request(s) seen, ${d.visibleInInput} visible as captured, ${d.visibleAfter} after${d.lost > 0 ? ` (${d.lost} lost)` : ''}`,
      );
    }
    const unseen = r.detections.filter((d) => d.requests === 0).length;
    if (unseen > 0) out.push(`  (${unseen} detection(s) had no matching request in this log)`);
  }
  return out.join('\n') + '\n';
}
