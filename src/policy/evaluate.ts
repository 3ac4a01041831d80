/**
 * Which level and stages kube-apiserver records for a request: a restatement of k8s.io/apiserver
 * pkg/audit/policy/checker.go. The semantics, including the surprising ones, are pinned by test/policy/evaluate.test.ts:
 *  - the first rule whose every constraint holds wins; no match means level None with the policy's omitStages
 *    exactly as listed (a repeated stage stays repeated);
 *  - a rule's omitStages are the union of its own and the policy's;
 *  - a rule's omitManagedFields, when set, overrides the policy's;
 *  - a request without a user (failed authentication) never matches a rule that names users or groups;
 *  - `namespaces` or `resources` make a rule match resource requests only, and then nonResourceURLs are not looked
 *    at (validation forbids the mix anyway); `nonResourceURLs` alone make it match non-resource requests only;
 *  - `*` matches every resource and subresource, `*\/x` every resource's subresource x, and `r/*` the resource r
 *    itself as well as each of its subresources;
 *  - resourceNames restrict a group's resources to requests naming one of them (a list or a create has no name);
 *  - a nonResourceURL `*` matches any path, `p*` any path starting with p, anything else the exact path.
 */
import type { AuditEvent, Level, Stage } from '../events/types.js';
import type { AuditDecision, Policy, PolicyRule, RequestAttributes } from './types.js';
import { isLevel } from './types.js';

function unionStages(a: readonly string[], b: readonly string[]): Stage[] {
  const out: string[] = [];
  for (const s of [...a, ...b]) if (!out.includes(s)) out.push(s);
  return out as Stage[];
}

export function pathMatches(path: string, spec: string): boolean {
  if (spec === '*' || spec === path) return true;
  if (spec.endsWith('*')) {
    // The apiserver trims every trailing '*', so `/logs**` behaves like `/logs*` (validation rejects it anyway).
    return path.startsWith(spec.replace(/\*+$/, ''));
  }
  return false;
}

function ruleMatchesNonResource(r: PolicyRule, a: RequestAttributes): boolean {
  if (a.resourceRequest) return false;
  return r.nonResourceURLs.some((spec) => pathMatches(a.path, spec));
}

function ruleMatchesResource(r: PolicyRule, a: RequestAttributes): boolean {
  if (!a.resourceRequest) return false;
  // Cluster-scoped resources have the namespace "".
  if (r.namespaces.length > 0 && !r.namespaces.includes(a.namespace)) return false;
  if (r.resources.length === 0) return true;
  const combined = a.subresource !== '' ? `${a.resource}/${a.subresource}` : a.resource;
  for (const gr of r.resources) {
    if (gr.group !== a.apiGroup && gr.group !== '*') continue;
    if (gr.resources.length === 0) return true;
    if (gr.resourceNames.length > 0 && !gr.resourceNames.includes(a.name)) continue;
    for (const res of gr.resources) {
      if (res === combined || res === '*') return true;
      if (a.subresource !== '' && res.startsWith('*/') && res.slice(2) === a.subresource) return true;
      if (res.endsWith('/*') && res.slice(0, -2) === a.resource) return true;
    }
  }
  return false;
}

/** Whether one rule matches the request, ignoring every other rule. */
export function ruleMatches(r: PolicyRule, a: RequestAttributes): boolean {
  if (r.users.length > 0 && (a.user === null || !r.users.includes(a.user.name))) return false;
  if (r.userGroups.length > 0) {
    if (a.user === null || !a.user.groups.some((g) => r.userGroups.includes(g))) return false;
  }
  if (r.verbs.length > 0 && !r.verbs.includes(a.verb)) return false;
  if (r.namespaces.length > 0 || r.resources.length > 0) return ruleMatchesResource(r, a);
  if (r.nonResourceURLs.length > 0) return ruleMatchesNonResource(r, a);
  return true;
}

/** Index of the first rule matching the request, or -1. */
export function firstMatchingRule(policy: Policy, a: RequestAttributes): number {
  for (let i = 0; i < policy.rules.length; i++) if (ruleMatches(policy.rules[i]!, a)) return i;
  return -1;
}

function asLevel(l: string): Level {
  // An invalid level never reaches a running apiserver (validation rejects the policy); report it as None here.
  return isLevel(l) ? l : 'None';
}

/** The apiserver's decision for one request under a policy. */
export function evaluatePolicy(policy: Policy, a: RequestAttributes): AuditDecision {
  const i = firstMatchingRule(policy, a);
  if (i < 0) {
    // The apiserver hands back the policy's list as written here (duplicates included); only rule lists are united.
    return { level: 'None', omitStages: [...policy.omitStages] as Stage[], omitManagedFields: policy.omitManagedFields, rule: null };
  }
  const r = policy.rules[i]!;
  return {
    level: asLevel(r.level),
    omitStages: unionStages(policy.omitStages, r.omitStages),
    omitManagedFields: r.omitManagedFields ?? policy.omitManagedFields,
    rule: i,
  };
}

/** Whether an event of this stage is written for a request with this decision. */
export function stageRecorded(d: AuditDecision, stage: Stage): boolean {
  return d.level !== 'None' && !d.omitStages.includes(stage);
}

function decodePath(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}

/**
 * The request attributes the apiserver evaluated the policy with, rebuilt from the event it wrote.
 *  - The event's `user` is the authenticated user before impersonation, which is what the policy sees.
 *  - A request that failed authentication is written with an empty user: it had no user at evaluation time.
 *  - objectRef exists exactly for resource requests.
 *  - The apiserver copies the created object's name into objectRef after the policy ran; a plain create named no
 *    object in its URL, so its name is "" for the policy.
 */
export function attributesFromEvent(e: AuditEvent): RequestAttributes {
  const u = e.user ?? {};
  const hasUser = (u.username ?? '') !== '' || (u.groups?.length ?? 0) > 0;
  const ref = e.objectRef;
  const uri = e.requestURI ?? '';
  const q = uri.indexOf('?');
  const path = decodePath(q >= 0 ? uri.slice(0, q) : uri);
  const subresource = ref?.subresource ?? '';
  const verb = e.verb ?? '';
  return {
    user: hasUser ? { name: u.username ?? '', groups: u.groups ?? [] } : null,
    verb,
    resourceRequest: ref !== undefined && ref !== null,
    apiGroup: ref?.apiGroup ?? '',
    apiVersion: ref?.apiVersion ?? '',
    namespace: ref?.namespace ?? '',
    resource: ref?.resource ?? '',
    subresource,
    name: verb === 'create' && subresource === '' ? '' : (ref?.name ?? ''),
    path,
  };
}

/** One line of the `kaudit policy eval` output. */
export function decisionJson(d: AuditDecision): { level: Level; omitStages: Stage[]; omitManagedFields: boolean; rule: number | null } {
  return { level: d.level, omitStages: [...d.omitStages].sort(), omitManagedFields: d.omitManagedFields, rule: d.rule };
}
