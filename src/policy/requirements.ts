/**
 * What a detection rule needs the audit log to contain: which requests, at which level, in which stage. The detection
 * engine (src/detect) derives one per enabled rule; the policy checks, the simulator and the generator compare them
 * with what a policy writes.
 */
import type { DetectionConfig } from '../detect/config.js';
import type { Stage } from '../events/types.js';
import { isSystemIdentity, noiseClassOf } from './catalog.js';
import { pathMatches } from './evaluate.js';
import type { RequestAttributes } from './types.js';

export interface RequirementResource {
  /** API group: "" is core, "*" any group. */
  group: string;
  /** Resource: "*" any resource. */
  resource: string;
  /** Subresource: absent = the resource itself (no subresource), "*" = the resource or any of its subresources. */
  subresource?: string;
}

export interface RuleRequirement {
  /** Detection rule id, e.g. `pod-exec`. */
  rule: string;
  title: string;
  /** Verbs the rule looks at; empty = any verb. */
  verbs: string[];
  /** Resources the rule looks at; empty (with no nonResourceURLs) = any request. */
  resources: RequirementResource[];
  /** Namespaces; absent or empty = any namespace ("" is cluster-scoped). */
  namespaces?: string[];
  /** Non-resource paths the rule looks at (`/version`, `/debug/*`): exact, `*`, or a trailing-`*` prefix. */
  nonResourceURLs?: string[];
  /** The least level that shows the rule what it needs. */
  level: 'Metadata' | 'Request' | 'RequestResponse';
  /** Stages of which any one suffices. */
  stages: Stage[];
}

function resourceMatches(r: RequirementResource, a: RequestAttributes): boolean {
  if (r.group !== '*' && r.group !== a.apiGroup) return false;
  if (r.resource !== '*' && r.resource !== a.resource) return false;
  if (r.subresource === undefined) return a.subresource === '';
  return r.subresource === '*' || r.subresource === a.subresource;
}

/** Whether a request is one the detection rule looks at. */
export function requirementMatches(req: RuleRequirement, a: RequestAttributes): boolean {
  if (req.verbs.length > 0 && !req.verbs.includes(a.verb)) return false;
  const urls = req.nonResourceURLs ?? [];
  if (req.resources.length === 0 && urls.length === 0) return true;
  if (a.resourceRequest) {
    if (req.namespaces && req.namespaces.length > 0 && !req.namespaces.includes(a.namespace)) return false;
    return req.resources.some((r) => resourceMatches(r, a));
  }
  return urls.some((u) => pathMatches(a.path, u));
}

/** Whether the requirement names this request's resource (or path) itself, not through a wildcard. */
export function namesExplicitly(req: RuleRequirement, a: RequestAttributes): boolean {
  if (a.resourceRequest) {
    return req.resources.some((r) => r.group === a.apiGroup && r.resource === a.resource && (r.subresource ?? '') === a.subresource);
  }
  return (req.nonResourceURLs ?? []).some((u) => u === a.path);
}

/**
 * Whether a request counts for the detection. A request the requirement names itself (its resource, or its exact
 * path) always counts. A request it reaches only through a wildcard ("any request", "any resource of apps") counts
 * unless it is known noise (lease renewals, endpoint watches, Event objects, health checks) or comes from a
 * control-plane or node identity: a detection that looks at "any request" is after people, workloads and anonymous
 * callers, not lease renewals. Production policies drop exactly that traffic, and the checks (whose probes are
 * ordinary identities), the simulator and the generator all apply this same rule.
 */
export function requirementCounts(req: RuleRequirement, a: RequestAttributes): boolean {
  if (!requirementMatches(req, a)) return false;
  if (namesExplicitly(req, a)) return true;
  return noiseClassOf(a) === undefined && !(a.user !== null && isSystemIdentity(a.user.name, a.user.groups));
}

/** A short human description of the requests a requirement covers: `create pods, deployments.apps`. */
export function describeRequirement(req: RuleRequirement): string {
  const verbs = req.verbs.length > 0 ? req.verbs.join('/') : 'any verb on';
  const res = req.resources.map((r) => {
    const name = r.resource === '*' ? 'any resource' : r.resource;
    const sub = r.subresource === undefined ? '' : r.subresource === '*' ? '/*' : `/${r.subresource}`;
    const group = r.group === '' ? '' : r.group === '*' ? ' (any group)' : `.${r.group}`;
    return `${name}${sub}${group}`;
  });
  const urls = req.nonResourceURLs ?? [];
  const all = [...res, ...urls];
  const what = all.length === 0 ? 'any request' : all.length > 4 ? `${all.slice(0, 3).join(', ')} and ${all.length - 3} more` : all.join(', ');
  const ns = req.namespaces && req.namespaces.length > 0 ? ` in ${req.namespaces.map((n) => (n === '' ? '(cluster scope)' : n)).join(', ')}` : '';
  return `${verbs} ${what}${ns}`;
}

const STAGE_SET = new Set<string>(['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic']);

/** Checks the shape of requirements read from a file (`--requirements`); throws with the offending index. */
export function parseRequirements(v: unknown, where: string): RuleRequirement[] {
  const list = Array.isArray(v)
    ? v
    : v && typeof v === 'object' && Array.isArray((v as { requirements?: unknown }).requirements)
      ? (v as { requirements: unknown[] }).requirements
      : null;
  if (!list) throw new Error(`${where}: expected a list of detection requirements (or {requirements: [...]})`);
  return list.map((x, i) => {
    const r = x as Partial<RuleRequirement>;
    const bad = (what: string) => new Error(`${where}: requirement ${i}${r && typeof r.rule === 'string' ? ` (${r.rule})` : ''}: ${what}`);
    if (!r || typeof r !== 'object') throw bad('not an object');
    if (typeof r.rule !== 'string' || r.rule === '') throw bad('rule (the detection id) is required');
    if (!['Metadata', 'Request', 'RequestResponse'].includes(r.level as string)) throw bad('level must be Metadata, Request or RequestResponse');
    const stages = r.stages ?? ['ResponseComplete'];
    if (!Array.isArray(stages) || stages.length === 0 || stages.some((s) => !STAGE_SET.has(s))) throw bad('stages must be a non-empty list of stage names');
    const resources = (r.resources ?? []).map((res) => {
      if (!res || typeof res.resource !== 'string') throw bad('each resource needs group and resource');
      return { group: res.group ?? '', resource: res.resource, ...(res.subresource !== undefined ? { subresource: res.subresource } : {}) };
    });
    return {
      rule: r.rule,
      title: r.title ?? r.rule,
      verbs: r.verbs ?? [],
      resources,
      ...(r.namespaces ? { namespaces: r.namespaces } : {}),
      ...(r.nonResourceURLs ? { nonResourceURLs: r.nonResourceURLs } : {}),
      level: r.level as RuleRequirement['level'],
      stages,
    };
  });
}

export interface DetectionCatalogOptions {
  rulesDir?: string;
  /** Tuning (the `detection:` section as loadConfig returns it): disabled rules need nothing. */
  config?: DetectionConfig;
}

/**
 * The requirements of every enabled detection rule, from the detection engine. Imported lazily so that the policy
 * commands work (with the blind-spot check skipped) in a build without the detection engine.
 */
export async function loadDetectionRequirements(opts: DetectionCatalogOptions = {}): Promise<RuleRequirement[]> {
  let mod: { loadRuleRequirements?: (o?: DetectionCatalogOptions) => Promise<RuleRequirement[]> };
  const specifier = '../detect/index.js';
  try {
    mod = (await import(specifier)) as typeof mod;
  } catch (e) {
    throw new DetectionCatalogUnavailable(`the detection engine could not be loaded (${specifier}: ${(e as Error).message.split('\n')[0]})`);
  }
  if (typeof mod.loadRuleRequirements !== 'function') {
    throw new DetectionCatalogUnavailable('the detection engine does not export loadRuleRequirements()');
  }
  return mod.loadRuleRequirements(opts);
}

export class DetectionCatalogUnavailable extends Error {
  override name = 'DetectionCatalogUnavailable';
}
