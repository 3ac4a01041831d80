/**
 * Finding rules that no request can reach.
 *
 * Rule j is shadowed when every request it matches is matched by an earlier rule. Matching compares names only, so
 * it is enough to try, for rule j, the "least matchable" requests it matches: on every dimension the rule leaves
 * open, a value no rule mentions (an earlier rule can only match it if it leaves that dimension open too); on every
 * dimension the rule constrains, each value it allows. If each such witness is taken by an earlier rule, so is every
 * request rule j matches.
 */
import { ruleMatches } from './evaluate.js';
import type { Policy, PolicyRule, RequestAttributes, RequestUser } from './types.js';
import { requestAttributes } from './types.js';

const FRESH = '~kaudit-unmentioned~';
const MAX_WITNESSES = 20000;

function userChoices(r: PolicyRule): (RequestUser | null)[] {
  if (r.users.length === 0 && r.userGroups.length === 0) return [null];
  const names = r.users.length > 0 ? r.users : [FRESH];
  const groupSets = r.userGroups.length > 0 ? r.userGroups.map((g) => [g]) : [[]];
  const out: RequestUser[] = [];
  for (const name of names) for (const groups of groupSets) out.push({ name, groups });
  return out;
}

interface ResourceShape {
  apiGroup: string;
  resource: string;
  subresource: string;
  name: string;
}

function resourceShapes(r: PolicyRule): ResourceShape[] {
  const fresh: ResourceShape = { apiGroup: FRESH, resource: FRESH, subresource: '', name: FRESH };
  if (r.resources.length === 0) return [fresh];
  const out: ResourceShape[] = [];
  for (const gr of r.resources) {
    const apiGroup = gr.group === '*' ? FRESH : gr.group;
    const names = gr.resourceNames.length > 0 ? gr.resourceNames : [FRESH];
    const specs = gr.resources.length > 0 ? gr.resources : ['*'];
    for (const spec of specs) {
      let resource: string;
      let subresource: string;
      const slash = spec.indexOf('/');
      if (spec === '*') {
        resource = FRESH;
        subresource = '';
      } else if (slash < 0) {
        resource = spec;
        subresource = '';
      } else {
        const head = spec.slice(0, slash);
        const tail = spec.slice(slash + 1);
        resource = head === '*' ? FRESH : head;
        subresource = tail === '*' ? FRESH : tail;
      }
      for (const name of names) out.push({ apiGroup, resource, subresource, name });
    }
  }
  return out;
}

function witnesses(r: PolicyRule): RequestAttributes[] | null {
  const users = userChoices(r);
  const verbs = r.verbs.length > 0 ? r.verbs : [FRESH];
  const resourceSide = r.resources.length > 0 || r.namespaces.length > 0;
  const nonResourceSide = !resourceSide;
  const out: RequestAttributes[] = [];
  const push = (a: RequestAttributes) => {
    out.push(a);
    return out.length <= MAX_WITNESSES;
  };
  for (const user of users) {
    for (const verb of verbs) {
      if (resourceSide || r.nonResourceURLs.length === 0) {
        const namespaces = r.namespaces.length > 0 ? r.namespaces : [FRESH];
        for (const ns of namespaces) {
          for (const s of resourceShapes(r)) {
            if (
              !push(
                requestAttributes({
                  user,
                  verb,
                  resourceRequest: true,
                  namespace: ns,
                  apiGroup: s.apiGroup,
                  resource: s.resource,
                  subresource: s.subresource,
                  name: s.name,
                  path: `/${FRESH}`,
                }),
              )
            )
              return null;
          }
        }
      }
      if (nonResourceSide) {
        const paths =
          r.nonResourceURLs.length > 0
            ? r.nonResourceURLs.map((u) => (u === '*' ? `/${FRESH}` : u.endsWith('*') ? `${u.replace(/\*+$/, '')}${FRESH}` : u))
            : [`/${FRESH}`];
        for (const path of paths) if (!push(requestAttributes({ user, verb, resourceRequest: false, path }))) return null;
      }
    }
  }
  return out;
}

export interface ShadowedRule {
  rule: number;
  /** The earlier rules that together cover it. */
  by: number[];
}

/** Rules that can never match because earlier rules take every request they would match. */
export function findShadowedRules(policy: Policy): ShadowedRule[] {
  const out: ShadowedRule[] = [];
  policy.rules.forEach((r, j) => {
    if (j === 0) return;
    const ws = witnesses(r);
    if (ws === null) return; // too many combinations to decide; say nothing rather than guess
    const own = ws.filter((w) => ruleMatches(r, w));
    if (own.length === 0) return;
    const by = new Set<number>();
    for (const w of own) {
      let hit = -1;
      for (let i = 0; i < j; i++) {
        if (ruleMatches(policy.rules[i]!, w)) {
          hit = i;
          break;
        }
      }
      if (hit < 0) return;
      by.add(hit);
    }
    out.push({ rule: j, by: [...by].sort((a, b) => a - b) });
  });
  return out;
}
