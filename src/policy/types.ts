import { LEVELS, STAGES, type Level, type Stage } from '../events/types.js';

/**
 * The audit.k8s.io/v1 Policy as kube-apiserver decodes it. Fields keep the apiserver's loose typing (a level is any
 * string until validated) so that a policy the apiserver would reject can still be loaded, reported and evaluated.
 */
export interface GroupResources {
  /** API group; "" is the core group, "*" (Kubernetes 1.36+) any group. */
  group: string;
  /** Resource names as they appear in URLs: `pods`, `pods/log`, `pods/*`, `*\/scale`, `*`. Empty = every resource. */
  resources: string[];
  resourceNames: string[];
}

export interface PolicyRule {
  level: string;
  users: string[];
  userGroups: string[];
  verbs: string[];
  resources: GroupResources[];
  namespaces: string[];
  nonResourceURLs: string[];
  omitStages: string[];
  /** undefined: inherit the policy's value. */
  omitManagedFields?: boolean;
}

export interface Policy {
  rules: PolicyRule[];
  omitStages: string[];
  omitManagedFields: boolean;
}

/** What kube-apiserver's authorizer.Attributes carry for the audit policy: the input of `kaudit policy eval`. */
export interface RequestUser {
  name: string;
  groups: string[];
}

export interface RequestAttributes {
  /** null: the request failed authentication (the apiserver then evaluates the policy with no user). */
  user: RequestUser | null;
  verb: string;
  resourceRequest: boolean;
  apiGroup: string;
  apiVersion: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  path: string;
}

/** The apiserver's RequestAuditConfig plus which rule produced it. */
export interface AuditDecision {
  level: Level;
  /** Stages not written for this request, in the order they were listed (policy first, then rule). */
  omitStages: Stage[];
  omitManagedFields: boolean;
  /** Index of the first matching rule, null when no rule matched (level None). */
  rule: number | null;
}

export { LEVELS, STAGES };
export type { Level, Stage };

export function isLevel(s: string): s is Level {
  return (LEVELS as readonly string[]).includes(s);
}

export function isStage(s: string): s is Stage {
  return (STAGES as readonly string[]).includes(s);
}

/** None < Metadata < Request < RequestResponse; an unknown level ranks below None. */
export function levelRank(l: string): number {
  return (LEVELS as readonly string[]).indexOf(l);
}

export function levelAtLeast(have: string, need: string): boolean {
  return levelRank(have) >= levelRank(need);
}

export function emptyRule(level = ''): PolicyRule {
  return { level, users: [], userGroups: [], verbs: [], resources: [], namespaces: [], nonResourceURLs: [], omitStages: [] };
}

export function requestAttributes(a: Partial<RequestAttributes>): RequestAttributes {
  return {
    user: a.user === undefined ? null : a.user,
    verb: a.verb ?? '',
    resourceRequest: a.resourceRequest ?? false,
    apiGroup: a.apiGroup ?? '',
    apiVersion: a.apiVersion ?? '',
    namespace: a.namespace ?? '',
    resource: a.resource ?? '',
    subresource: a.subresource ?? '',
    name: a.name ?? '',
    path: a.path ?? '',
  };
}
