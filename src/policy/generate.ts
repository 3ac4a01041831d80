/**
 * `kaudit policy generate`: audit policies built from profiles, then checked against the detection requirements and
 * patched until no enabled detection is blind (except where CIS 3.2.2 forbids what a detection wants).
 *
 * Rule order matters (the first match wins), so every profile is laid out the same way:
 *   1. secrets, configmaps, token requests and token reviews at Metadata: nothing later can raise them;
 *   2. rules a detection needs that the profile would otherwise not give it;
 *   3. high-volume, low-value traffic at None;
 *   4. the profile's levels for reads and for everything else.
 * Generated policies use only fields and values kube-apiserver 1.24+ accepts (no `group: "*"`, which needs 1.36);
 * omitManagedFields needs 1.23+.
 */
import type { Stage } from '../events/types.js';
import { CATALOG, NOISE, groupResourceLabel, isSystemIdentity } from './catalog.js';
import { blindSpots, checkPolicy, conflictsWithCis, isSensitive, requirementProbes } from './checks.js';
import { attributesFromEvent, evaluatePolicy } from './evaluate.js';
import { parsePolicy } from './load.js';
import { describeRequirement, namesExplicitly, requirementMatches, type RuleRequirement } from './requirements.js';
import { simulatePolicy, unwrapItem, type SimulationItem } from './simulate.js';
import type { GroupResources, Policy, PolicyRule, RequestAttributes } from './types.js';
import { emptyRule, levelRank } from './types.js';

export const PROFILES = ['minimal', 'recommended', 'strict'] as const;
export type Profile = (typeof PROFILES)[number];

export interface GeneratedRule extends PolicyRule {
  comment?: string;
}

export interface GeneratedPolicy {
  profile: Profile;
  header: string[];
  omitStages: Stage[];
  omitManagedFields: boolean;
  rules: GeneratedRule[];
}

const R = (r: Partial<PolicyRule> & { level: string; comment?: string }): GeneratedRule => ({ ...emptyRule(r.level), ...r });
const gr = (group: string, resources: string[] = [], resourceNames: string[] = []): GroupResources => ({ group, resources, resourceNames });

function sensitiveRule(): GeneratedRule {
  return R({
    level: 'Metadata',
    comment: 'Secret values live in the bodies of these requests (CIS 3.2.2): log who touched what, never the content.',
    resources: [gr('', ['secrets', 'configmaps', 'serviceaccounts/token']), gr('authentication.k8s.io', ['tokenreviews'])],
  });
}

function noiseRules(profile: Profile): GeneratedRule[] {
  const leases = NOISE.find((n) => n.id === 'leases')!;
  const endpoints = NOISE.find((n) => n.id === 'endpoints-reads')!;
  const out: GeneratedRule[] = [
    R({
      level: 'None',
      comment: 'Health, version and discovery checks: the most frequent requests of all, no security value.',
      nonResourceURLs: ['/healthz*', '/livez*', '/readyz*', '/version', '/version/', '/openapi/*', '/api', '/api/*', '/apis', '/apis/*'],
      verbs: ['get'],
    }),
    R({
      level: 'None',
      comment: 'Leader election and node heartbeats.',
      verbs: [...leases.verbs],
      resources: [gr('coordination.k8s.io', ['leases'])],
    }),
    R({
      level: 'None',
      comment: 'Service discovery watches by every node and controller.',
      verbs: [...endpoints.verbs],
      resources: [gr('', ['endpoints']), gr('discovery.k8s.io', ['endpointslices'])],
    }),
  ];
  if (profile === 'strict') {
    out.push(
      R({
        level: 'None',
        comment: 'Reads of Event objects (their writes are kept).',
        verbs: ['get', 'list', 'watch'],
        resources: [gr('', ['events']), gr('events.k8s.io', ['events'])],
      }),
    );
  } else {
    out.push(
      R({ level: 'None', comment: 'Event objects: very high volume, no security value.', resources: [gr('', ['events']), gr('events.k8s.io', ['events'])] }),
    );
  }
  out.push(
    R({
      level: 'None',
      comment: 'Kubelets reading their own node object.',
      userGroups: ['system:nodes'],
      verbs: ['get'],
      resources: [gr('', ['nodes', 'nodes/status'])],
    }),
  );
  return out;
}

function baseRules(profile: Profile): GeneratedRule[] {
  if (profile === 'minimal') {
    return [R({ level: 'Metadata', comment: 'Everything else, at Metadata (CIS 3.2.2).' })];
  }
  const nodeStatus = R({
    level: profile === 'strict' ? 'Request' : 'Metadata',
    comment: 'Node and pod status updates by kubelets: frequent and large.',
    userGroups: ['system:nodes'],
    verbs: ['update', 'patch'],
    resources: [gr('', ['nodes/status', 'pods/status'])],
  });
  return [
    nodeStatus,
    R({ level: 'Metadata', comment: 'Reads: who read what; responses are large and rarely needed.', verbs: ['get', 'list', 'watch'] }),
    R({
      level: profile === 'strict' ? 'RequestResponse' : 'Request',
      comment:
        profile === 'strict'
          ? 'Every change with its request and response bodies (what was asked and what resulted).'
          : 'Every change with its request body: what detections inspect (pod specs, role rules, bindings).',
    }),
  ];
}

/** Rules that give a requirement what it needs; none for the parts only a CIS-forbidden level would give. */
function ruleForRequirement(req: RuleRequirement, policyOmitsRequestReceived: boolean): GeneratedRule[] {
  const out: GeneratedRule[] = [];
  const comment = `Detection ${req.rule}: needs ${describeRequirement(req)} at ${req.level}.`;
  // Without a policy-wide omitStages every rule omits RequestReceived itself, unless the detection needs it.
  const omit: string[] = policyOmitsRequestReceived || !req.stages.some((s) => s !== 'RequestReceived') ? [] : ['RequestReceived'];
  const entries = new Map<string, Set<string>>();
  let anyResource = req.resources.length === 0 && (req.nonResourceURLs ?? []).length === 0;
  for (const r of req.resources) {
    if (req.level !== 'Metadata' && isSensitive(r.group, r.resource, r.subresource === '*' ? '' : (r.subresource ?? ''))) continue;
    const groups = r.group === '*' ? [...new Set(CATALOG.filter((c) => r.resource === '*' || c.resource === r.resource).map((c) => c.group))] : [r.group];
    if (r.group === '*' && r.resource === '*') {
      anyResource = true;
      continue;
    }
    const spec =
      r.resource === '*'
        ? r.subresource === undefined
          ? '*'
          : r.subresource === '*'
            ? '*'
            : `*/${r.subresource}`
        : r.subresource === undefined
          ? r.resource
          : `${r.resource}/${r.subresource}`;
    for (const g of groups) {
      if (!entries.has(g)) entries.set(g, new Set());
      entries.get(g)!.add(spec);
    }
  }
  // "Any request" at a body level would include secrets: the sensitive rule placed before it keeps them at Metadata.
  if (anyResource) {
    out.push(R({ level: req.level, comment, verbs: [...req.verbs], ...(req.namespaces?.length ? { namespaces: [...req.namespaces] } : {}), omitStages: omit }));
    return out;
  }
  if (entries.size > 0) {
    out.push(
      R({
        level: req.level,
        comment,
        verbs: [...req.verbs],
        resources: [...entries].map(([g, specs]) => gr(g, [...specs])),
        ...(req.namespaces?.length ? { namespaces: [...req.namespaces] } : {}),
        omitStages: omit,
      }),
    );
  }
  if ((req.nonResourceURLs ?? []).length > 0) {
    out.push(R({ level: req.level, comment, verbs: [...req.verbs], nonResourceURLs: [...req.nonResourceURLs!], omitStages: omit }));
  }
  return out;
}

function toPolicy(g: GeneratedPolicy): Policy {
  return { rules: g.rules, omitStages: g.omitStages, omitManagedFields: g.omitManagedFields };
}

export interface GenerateOptions {
  profile?: Profile;
  /** Requirements of the enabled detections; undefined when the catalog is unavailable. */
  requirements?: RuleRequirement[];
  /** Why requirements are missing (goes into the header). */
  requirementsNote?: string;
  /** Captured traffic to tune the recommended profile with. */
  fromLog?: () => AsyncIterable<SimulationItem>;
  /** Tuning thresholds: a read pattern is dropped when it is at least this share of all events and this many events. */
  minShare?: number;
  minEvents?: number;
}

export interface GenerateResult {
  policy: GeneratedPolicy;
  yaml: string;
  /** Requirements that stay blind and why (CIS conflicts). */
  uncovered: { rule: string; reason: string }[];
  /** With fromLog: volume of the captured log, of the untuned profile and of the tuned policy. */
  volume?: { inputBytes: number; untunedBytes: number; tunedBytes: number; inputEvents: number; tunedEvents: number; droppedPatterns: number };
}

interface ReadPattern {
  key: string;
  verb: string;
  group: string;
  resource: string;
  subresource: string;
  users: Set<string>;
  nodes: boolean;
  events: number;
  sample: RequestAttributes;
}

async function tuneFromLog(base: GeneratedPolicy, o: GenerateOptions, reqs: RuleRequirement[]): Promise<{ rules: GeneratedRule[]; total: number }> {
  const patterns = new Map<string, ReadPattern>();
  let total = 0;
  const userOnly = new Map<string, boolean>();
  for await (const item of o.fromLog!()) {
    const e = unwrapItem(item).event;
    if (!e) continue;
    total++;
    const a = attributesFromEvent(e);
    if (!a.resourceRequest || !['get', 'list', 'watch'].includes(a.verb)) continue;
    const key = `${a.verb}|${a.apiGroup}|${a.resource}|${a.subresource}`;
    const system = a.user !== null && isSystemIdentity(a.user.name, a.user.groups);
    // A pattern qualifies only if every request of it came from a system identity.
    userOnly.set(key, (userOnly.get(key) ?? true) && system);
    if (!system) continue;
    if (isSensitive(a.apiGroup, a.resource, a.subresource)) continue;
    // Keep what a detection names itself; wildcard detections are protected by the blind-spot re-check below.
    if (reqs.some((r) => requirementMatches(r, a) && namesExplicitly(r, a))) continue;
    let p = patterns.get(key);
    if (!p) {
      p = { key, verb: a.verb, group: a.apiGroup, resource: a.resource, subresource: a.subresource, users: new Set(), nodes: true, events: 0, sample: a };
      patterns.set(key, p);
    }
    p.events++;
    if (a.user!.groups.includes('system:nodes')) p.users.add('group:system:nodes');
    else {
      p.nodes = false;
      p.users.add(a.user!.name);
    }
  }
  const minShare = o.minShare ?? 0.01;
  const minEvents = o.minEvents ?? 10;
  const picked = [...patterns.values()]
    .filter((p) => userOnly.get(p.key) === true && p.events >= minEvents && p.events >= total * minShare)
    // Only what the profile still logs: its noise rules already drop lease renewals, endpoint watches and the like.
    .filter((p) => evaluatePolicy(toPolicy(base), p.sample).level !== 'None')
    .sort((a, b) => b.events - a.events);
  const rules: GeneratedRule[] = [];
  for (const p of picked) {
    const users = [...p.users].filter((u) => !u.startsWith('group:')).sort();
    const viaNodes = p.users.has('group:system:nodes');
    const res = gr(p.group, [p.subresource ? `${p.resource}/${p.subresource}` : p.resource]);
    const comment = `Seen in the log: ${p.events} ${p.verb} ${groupResourceLabel(p.group, p.resource, p.subresource)} by system identities only.`;
    if (users.length > 0) rules.push(R({ level: 'None', comment, users, verbs: [p.verb], resources: [res] }));
    if (viaNodes) rules.push(R({ level: 'None', comment, userGroups: ['system:nodes'], verbs: [p.verb], resources: [res] }));
  }
  // Keep only drops that blind nothing the untuned policy shows.
  const kept: GeneratedRule[] = [];
  const baseBlind = countBlind(toPolicy(base), reqs);
  for (const r of rules) {
    const trial = insertBeforeNoise(base, [...kept, r]);
    if (countBlind(toPolicy(trial), reqs) <= baseBlind) kept.push(r);
  }
  return { rules: kept, total };
}

function countBlind(p: Policy, reqs: RuleRequirement[]): number {
  return blindSpots(p, reqs).reduce((n, b) => n + b.misses.length, 0);
}

function insertBeforeNoise(g: GeneratedPolicy, extra: GeneratedRule[]): GeneratedPolicy {
  const firstNoise = g.rules.findIndex((r) => r.level === 'None');
  const at = firstNoise < 0 ? g.rules.length : firstNoise;
  return { ...g, rules: [...g.rules.slice(0, at), ...extra, ...g.rules.slice(at)] };
}

export async function generatePolicy(o: GenerateOptions = {}): Promise<GenerateResult> {
  const profile = o.profile ?? 'recommended';
  const reqs = o.requirements ?? [];
  const needsRR = reqs.some((r) => r.stages.length > 0 && r.stages.every((s) => s === 'RequestReceived'));
  let g: GeneratedPolicy = {
    profile,
    header: [],
    omitStages: needsRR ? [] : ['RequestReceived'],
    omitManagedFields: profile !== 'minimal',
    rules: [sensitiveRule(), ...noiseRules(profile), ...baseRules(profile)],
  };
  if (needsRR) for (const r of g.rules) r.omitStages = ['RequestReceived'];

  // Patch, one requirement at a time: a rule giving it its level, placed just before the first rule that hides
  // its requests (never before the sensitive rule), at no lower a level than the policy gave those requests.
  const uncovered: { rule: string; reason: string }[] = [];
  // The minimal profile is CIS and nothing more: it reports blind detections but does not patch for them.
  for (const req of profile === 'minimal' ? [] : reqs) {
    const b = blindSpots(toPolicy(g), [req])[0]!;
    if (b.misses.length === 0) continue;
    const extra = ruleForRequirement(req, g.omitStages.includes('RequestReceived'));
    if (extra.length === 0) continue;
    let level = req.level as string;
    for (const p of requirementProbes(toPolicy(g), req)) {
      const d = evaluatePolicy(toPolicy(g), p.attrs);
      if (d.rule !== null && d.rule > 0 && levelRank(d.level) > levelRank(level)) level = d.level;
    }
    for (const r of extra) r.level = level;
    const at = Math.max(1, Math.min(...b.misses.map((m) => m.decision.rule ?? g.rules.length)));
    g = { ...g, rules: [...g.rules.slice(0, at), ...extra, ...g.rules.slice(at)] };
  }
  for (const b of blindSpots(toPolicy(g), reqs)) {
    if (b.misses.length === 0) continue;
    const a = b.misses[0]!.probe.attrs;
    const reason = conflictsWithCis(b.req)
      ? `needs ${b.req.level} on secrets, configmaps or tokens, which CIS 3.2.2 keeps at Metadata`
      : profile === 'minimal'
        ? `needs ${b.req.level}; the minimal profile logs Metadata only (use --profile recommended)`
        : `could not be covered automatically (e.g. ${a.verb} ${groupResourceLabel(a.apiGroup, a.resource, a.subresource)})`;
    if (!uncovered.some((u) => u.rule === b.req.rule && u.reason === reason)) uncovered.push({ rule: b.req.rule, reason });
  }

  let volume: GenerateResult['volume'];
  if (o.fromLog) {
    const untuned = g;
    const tuned = await tuneFromLog(g, o, reqs);
    g = insertBeforeNoise(g, tuned.rules);
    const before = await simulatePolicy(toPolicy(untuned), o.fromLog());
    const after = await simulatePolicy(toPolicy(g), o.fromLog());
    volume = {
      inputBytes: before.input.bytes,
      inputEvents: before.input.events,
      untunedBytes: before.kept.bytes,
      tunedBytes: after.kept.bytes,
      tunedEvents: after.kept.events,
      droppedPatterns: tuned.rules.length,
    };
  }

  g.header = headerFor(profile, o, uncovered, volume);
  const yaml = emitPolicyYaml(g);
  // Self-check: what we emit must load unchanged and pass `kaudit policy check` without failures.
  const loaded = parsePolicy(yaml, `<generated ${profile}>`);
  const rep = checkPolicy(loaded, { requirements: reqs });
  const failures = rep.findings.filter((f) => f.severity === 'error');
  if (failures.length > 0)
    throw new Error(`internal error: the generated ${profile} policy fails its own check: ${failures.map((f) => `${f.id}: ${f.message}`).join('; ')}`);
  return { policy: g, yaml, uncovered, ...(volume ? { volume } : {}) };
}

function headerFor(profile: Profile, o: GenerateOptions, uncovered: GenerateResult['uncovered'], volume: GenerateResult['volume']): string[] {
  const h: string[] = [];
  const what: Record<Profile, string> = {
    minimal: 'minimal: meets CIS 3.2.1 and 3.2.2 (everything at Metadata, secrets never above it, known noise dropped).',
    recommended: 'recommended: CIS 3.2.1/3.2.2, request bodies of every change for the detections, known high-volume noise dropped.',
    strict: 'strict: CIS 3.2.1/3.2.2, request and response bodies of every change for detections and forensics.',
  };
  h.push(`kaudit policy generate --profile ${profile}${o.fromLog ? ' --from-log' : ''}`);
  h.push(what[profile]);
  h.push('Passes `kaudit policy check` without failures; loads in kube-apiserver 1.24+ (omitManagedFields: 1.23+).');
  // Stable wording: the header changes only when what the policy does for the detections changes.
  if (o.requirements === undefined) h.push(`Detections: not checked (${o.requirementsNote ?? 'detection catalog unavailable'}).`);
  else if (profile === 'minimal') h.push('Detections: this profile adds nothing for them; `kaudit policy check` names the ones it leaves blind.');
  else if (uncovered.length === 0) h.push('Detections: every enabled detection sees the requests it needs.');
  else {
    h.push('Detections: every enabled detection sees the requests it needs, except:');
    for (const u of uncovered) h.push(`  ${u.rule}: ${u.reason}`);
  }
  if (volume) {
    const pct = (a: number, b: number) => (b === 0 ? '0.0' : ((100 * (b - a)) / b).toFixed(1));
    h.push(`Tuned on ${volume.inputEvents} captured events: ${volume.droppedPatterns} system read pattern(s) dropped.`);
    h.push(
      `Expected volume: ${volume.tunedBytes} bytes instead of ${volume.inputBytes} captured (-${pct(volume.tunedBytes, volume.inputBytes)}%), ${volume.untunedBytes} with the untuned profile (-${pct(volume.tunedBytes, volume.untunedBytes)}%).`,
    );
  }
  return h;
}

function q(s: string): string {
  return JSON.stringify(s);
}

function flow(list: string[]): string {
  return `[${list.map(q).join(', ')}]`;
}

/** Writes the policy as YAML kube-apiserver reads unchanged (strings always quoted, lists in flow style). */
export function emitPolicyYaml(g: GeneratedPolicy): string {
  const out: string[] = [];
  for (const h of g.header) out.push(`# ${h}`.trimEnd());
  out.push('apiVersion: audit.k8s.io/v1');
  out.push('kind: Policy');
  if (g.omitStages.length > 0) {
    out.push('# RequestReceived would double the volume: the ResponseComplete event carries everything it has.');
    out.push(`omitStages: ${flow(g.omitStages)}`);
  }
  if (g.omitManagedFields) {
    out.push('# managedFields are bookkeeping of server-side apply: large, and of no use to an investigation.');
    out.push('omitManagedFields: true');
  }
  out.push('rules:');
  for (const r of g.rules) {
    if (r.comment) out.push(`  # ${r.comment}`);
    out.push(`  - level: ${r.level}`);
    if (r.users.length) out.push(`    users: ${flow(r.users)}`);
    if (r.userGroups.length) out.push(`    userGroups: ${flow(r.userGroups)}`);
    if (r.verbs.length) out.push(`    verbs: ${flow(r.verbs)}`);
    if (r.namespaces.length) out.push(`    namespaces: ${flow(r.namespaces)}`);
    if (r.resources.length) {
      out.push('    resources:');
      for (const x of r.resources) {
        out.push(`      - group: ${q(x.group)}${x.group === '' ? ' # core' : ''}`);
        if (x.resources.length) out.push(`        resources: ${flow(x.resources)}`);
        if (x.resourceNames.length) out.push(`        resourceNames: ${flow(x.resourceNames)}`);
      }
    }
    if (r.nonResourceURLs.length) out.push(`    nonResourceURLs: ${flow(r.nonResourceURLs)}`);
    if (r.omitStages.length) out.push(`    omitStages: ${flow(r.omitStages)}`);
    if (r.omitManagedFields !== undefined) out.push(`    omitManagedFields: ${r.omitManagedFields}`);
  }
  return out.join('\n') + '\n';
}
