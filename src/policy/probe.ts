/**
 * Concrete requests that stand for classes of requests. A policy only compares names, so a class is covered by the
 * names the policy mentions plus one name it does not mention (FRESH): that is how the checks can ask "are pod
 * creates logged in every namespace, for every ordinary caller?" with a finite list of requests.
 */
import type { Stage } from '../events/types.js';
import { CATALOG, FRESH, GENERIC_IDENTITIES, catalogEntry, resourceRequest, verbNamesObject, type ProbeIdentity } from './catalog.js';
import type { AuditDecision, Policy, RequestAttributes } from './types.js';
import { levelAtLeast } from './types.js';

export interface Probe {
  attrs: RequestAttributes;
  /** Who the probe stands for, for messages. */
  who: string;
}

/** Namespaces worth probing: two well-known ones, one nobody mentions, and every one the policy names. */
export function probeNamespaces(policy: Policy): string[] {
  const out = ['default', 'kube-system', FRESH];
  for (const r of policy.rules) for (const n of r.namespaces) if (n !== '' && !out.includes(n)) out.push(n);
  return out;
}

/** The generic identities plus one identity per user and per group the policy names (for "at most" checks). */
export function allIdentities(policy: Policy): ProbeIdentity[] {
  const out = [...GENERIC_IDENTITIES];
  const users = new Set<string>();
  const groups = new Set<string>();
  for (const r of policy.rules) {
    r.users.forEach((u) => users.add(u));
    r.userGroups.forEach((g) => groups.add(g));
  }
  for (const u of users) out.push({ label: u, user: { name: u, groups: ['system:authenticated'] } });
  for (const g of groups) out.push({ label: `a member of ${g}`, user: { name: `${FRESH}-member`, groups: [g] } });
  // A user named by one rule may also belong to a group named by another: one identity holding everything.
  if (users.size > 0 || groups.size > 0)
    out.push({ label: 'a user in every group the policy names', user: { name: [...users][0] ?? `${FRESH}-member`, groups: [...groups] } });
  return out;
}

export interface ResourceSel {
  group: string;
  resource: string;
  subresource?: string;
}

/** Probes for verbs on resources, in every probe namespace (or cluster scope), for the given identities. */
export function resourceProbes(o: {
  policy: Policy;
  resources: ResourceSel[];
  verbs: readonly string[];
  identities: ProbeIdentity[];
  namespaces?: string[];
  /** Also try every resourceName the policy lists (for "at most" checks). */
  withNames?: boolean;
}): Probe[] {
  const out: Probe[] = [];
  const names = new Set<string>([FRESH]);
  if (o.withNames) for (const r of o.policy.rules) for (const gr of r.resources) gr.resourceNames.forEach((n) => names.add(n));
  for (const sel of o.resources) {
    const entry = catalogEntry(sel.group, sel.resource);
    const namespaces = o.namespaces ?? (entry === undefined ? ['', ...probeNamespaces(o.policy)] : entry.namespaced ? probeNamespaces(o.policy) : ['']);
    for (const verb of o.verbs) {
      const sub = sel.subresource ?? '';
      const nameList = verbNamesObject(verb, sub) ? [...names] : [''];
      for (const ns of namespaces) {
        for (const name of nameList) {
          for (const id of o.identities) {
            out.push({
              attrs: resourceRequest({ user: id.user, verb, group: sel.group, resource: sel.resource, subresource: sub, namespace: ns, name }),
              who: id.label,
            });
          }
        }
      }
    }
  }
  return out;
}

/** Every catalog resource and subresource, plus an unknown resource of an unknown group (a CRD). */
export function everyResource(): ResourceSel[] {
  const out: ResourceSel[] = [];
  for (const c of CATALOG) {
    out.push({ group: c.group, resource: c.resource });
    for (const s of c.subresources ?? []) out.push({ group: c.group, resource: c.resource, subresource: s });
  }
  out.push({ group: `${FRESH}.example.com`, resource: 'widgets' });
  out.push({ group: '', resource: FRESH });
  return out;
}

/** Stages an apiserver writes for a request that is not cut short: long-running ones also get ResponseStarted. */
export function stagesOf(a: RequestAttributes): Stage[] {
  const longRunning = a.verb === 'watch' || ['exec', 'attach', 'portforward', 'proxy'].includes(a.subresource);
  return longRunning ? ['RequestReceived', 'ResponseStarted', 'ResponseComplete'] : ['RequestReceived', 'ResponseComplete'];
}

/** Whether the request leaves at least one event (at least Metadata, in a stage it goes through). */
export function isLogged(d: AuditDecision, a: RequestAttributes): boolean {
  return d.level !== 'None' && stagesOf(a).some((s) => !d.omitStages.includes(s));
}

/** Whether the request is written at `level` or more in one of `stages`. */
export function isVisible(d: AuditDecision, level: string, stages: readonly Stage[]): boolean {
  return d.level !== 'None' && levelAtLeast(d.level, level) && stages.some((s) => !d.omitStages.includes(s));
}
