/**
 * The declarative `match` of a rule, compiled into (1) what the candidate index needs (stages, verbs, resources) and
 * (2) one cheap check of the indexed fields of a normalised event. Both run before any JSONata.
 */
import type { NormalisedEvent, Stage } from '../events/types.js';
import { objectName } from './facts.js';
import type { DetectionLists } from './lists.js';
import { checkPattern, compilePatterns, type StringTest } from './patterns.js';
import type { FieldFilter, MatchSpec } from './match-spec.js';

export class MatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MatchError';
  }
}

export interface ResourceRef {
  /** API group: "" core, "*" any. */
  group: string;
  /** "*" any resource. */
  resource: string;
  /** undefined: the resource itself; "*": the resource or any subresource; else that subresource. */
  subresource?: string;
}

const RESOURCE = /^(\*|[a-z0-9][a-z0-9-]*)(?:\/(\*|[a-z0-9][a-z0-9-]*))?(?:\.(\*|[a-z0-9][a-z0-9.-]*))?$/;

/** `pods`, `pods/exec`, `deployments.apps`, `clusterroles.rbac.authorization.k8s.io`, `pods/*`, `*`, `*.apps`. */
export function parseResource(s: string): ResourceRef {
  const m = RESOURCE.exec(s);
  if (!m) throw new MatchError(`bad resource "${s}": write resource[/subresource][.group], e.g. pods/exec or deployments.apps`);
  const resource = m[1]!;
  const group = m[3] ?? (resource === '*' ? '*' : '');
  return { group, resource, ...(m[2] !== undefined ? { subresource: m[2] } : {}) };
}

export const KNOWN_VERBS = new Set([
  'get',
  'list',
  'watch',
  'create',
  'update',
  'patch',
  'delete',
  'deletecollection',
  'post',
  'put',
  'head',
  'options',
  'proxy',
  'escalate',
  'bind',
  'impersonate',
  'approve',
  'sign',
  'use',
]);

/** What the candidate index needs from a match. */
export interface IndexPlan {
  stages: Stage[];
  /** null = any verb. */
  verbs: string[] | null;
  /** Resource requests the match can select; null = any resource request (or, with nonResource, none). */
  resources: ResourceRef[] | null;
  /** Whether resource requests can match at all. */
  resourceRequests: boolean;
  /** Whether non-resource requests (no objectRef) can match. */
  nonResource: boolean;
}

export interface CompiledMatch {
  plan: IndexPlan;
  /** Checks everything the index does not guarantee (or everything, for an unindexed match). */
  check: (e: NormalisedEvent) => boolean;
}

type Pred = (e: NormalisedEvent) => boolean;

function expand(patterns: readonly string[], lists: DetectionLists, where: string): string[] {
  return patterns.flatMap((p) => {
    if (p.startsWith('@')) {
      const name = p.slice(1);
      if (!lists.has(name)) throw new MatchError(`${where}: unknown list "${name}"`);
      return [...lists.get(name)];
    }
    try {
      checkPattern(p);
    } catch (e) {
      throw new MatchError(`${where}: bad pattern ${p}: ${(e as Error).message}`);
    }
    return [p];
  });
}

function filterTests(f: FieldFilter | undefined, lists: DetectionLists, where: string): { inc?: StringTest; exc?: StringTest } {
  if (!f) return {};
  return {
    ...(f.include ? { inc: compilePatterns(expand(f.include, lists, `${where}.include`)) } : {}),
    ...(f.exclude ? { exc: compilePatterns(expand(f.exclude, lists, `${where}.exclude`)) } : {}),
  };
}

function fieldPred(f: FieldFilter | undefined, get: (e: NormalisedEvent) => string, lists: DetectionLists, where: string): Pred | undefined {
  const { inc, exc } = filterTests(f, lists, where);
  if (inc && exc)
    return (e) => {
      const v = get(e);
      return inc(v) && !exc(v);
    };
  if (inc) return (e) => inc(get(e));
  if (exc) return (e) => !exc(get(e));
  return undefined;
}

function pathOf(uri: string): string {
  const q = uri.indexOf('?');
  return q < 0 ? uri : uri.slice(0, q);
}

function urlTest(patterns: readonly string[]): StringTest {
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (path) => exact.has(path) || prefixes.some((p) => path.startsWith(p));
}

function resourceTest(refs: ResourceRef[]): Pred {
  return (e) => {
    for (const r of refs) {
      if (r.resource !== '*' && r.resource !== e.resource) continue;
      if (r.group !== '*' && r.group !== e.apiGroup) continue;
      if (r.subresource === undefined ? e.subresource === '' : r.subresource === '*' || r.subresource === e.subresource) return true;
    }
    return false;
  };
}

function codeTest(codes: (number | string)[]): Pred {
  const exact = new Set<number>();
  const classes = new Set<number>();
  for (const c of codes) {
    if (typeof c === 'number') exact.add(c);
    else if (c.endsWith('xx')) classes.add(Number(c[0]));
    else exact.add(Number(c));
  }
  return (e) => exact.has(e.code) || classes.has(Math.floor(e.code / 100));
}

/** Name of the object an event is about, for `names` filters and exceptions (the body's name for creates). */
export function eventObjectName(e: NormalisedEvent): string {
  return e.name || objectName(e.event);
}

export function isAllowed(e: NormalisedEvent): boolean {
  return e.decision === 'allow' || (e.decision === '' && e.code !== 401 && e.code !== 403);
}

export function isDenied(e: NormalisedEvent): boolean {
  return e.decision === 'forbid' || e.code === 403;
}

/**
 * The request did what it asked: a response code below 400 (101 for a stream that opened) and no forbid decision.
 * An event without a code (RequestReceived) has no outcome yet and is not a success.
 */
export function succeeded(e: NormalisedEvent): boolean {
  return e.code > 0 && e.code < 400 && e.decision !== 'forbid';
}

/** The request failed or was denied: a response code of 400 or above, or a forbid decision. */
export function failed(e: NormalisedEvent): boolean {
  return e.code >= 400 || e.decision === 'forbid';
}

/**
 * Compiles a match. With `indexed`, the stage, verb and resource-name checks are left to the candidate index (which
 * only hands the matcher events that pass them); the API group and subresource are still checked here.
 */
export function compileMatch(spec: MatchSpec | undefined, lists: DetectionLists, where: string, indexed: boolean): CompiledMatch {
  const m = spec ?? {};
  const stages = m.stages ?? (['ResponseComplete'] as Stage[]);
  const verbs = m.verbs && m.verbs.length > 0 && !m.verbs.includes('*') ? m.verbs : null;
  let refs: ResourceRef[] | null = null;
  if (m.resources) {
    refs = m.resources.map((r) => {
      try {
        return parseResource(r);
      } catch (e) {
        throw new MatchError(`${where}.resources: ${(e as Error).message}`);
      }
    });
  }
  const anyRequest = !m.resources && !m.nonResourceURLs;
  const plan: IndexPlan = {
    stages,
    verbs,
    resources: refs && refs.some((r) => r.resource === '*') ? null : refs,
    resourceRequests: anyRequest || !!m.resources,
    nonResource: anyRequest || !!m.nonResourceURLs,
  };
  const preds: Pred[] = [];
  if (!indexed) {
    const st = new Set<string>(stages);
    preds.push((e) => st.has(e.stage));
    if (verbs) {
      const vs = new Set(verbs);
      preds.push((e) => vs.has(e.verb));
    }
  }
  if (!anyRequest) {
    const resTest = refs ? resourceTest(refs) : undefined;
    const urls = m.nonResourceURLs ? urlTest(m.nonResourceURLs) : undefined;
    preds.push((e) =>
      e.resource === '' ? urls !== undefined && e.subresource === '' && urls(pathOf(e.event.requestURI)) : resTest !== undefined && resTest(e),
    );
  }
  const add = (p: Pred | undefined) => p && preds.push(p);
  add(fieldPred(m.users, (e) => e.user, lists, `${where}.users`));
  add(fieldPred(m.namespaces, (e) => e.namespace, lists, `${where}.namespaces`));
  add(fieldPred(m.names, eventObjectName, lists, `${where}.names`));
  add(fieldPred(m.userAgents, (e) => e.userAgent, lists, `${where}.userAgents`));
  add(fieldPred(m.paths, (e) => pathOf(e.event.requestURI), lists, `${where}.paths`));
  if (m.groups) {
    const { inc, exc } = filterTests(m.groups, lists, `${where}.groups`);
    if (inc) preds.push((e) => e.groups.some(inc));
    if (exc) preds.push((e) => !e.groups.some(exc));
  }
  switch (m.identity) {
    case 'person':
      preds.push((e) => lists.isPerson(e.user, e.groups));
      break;
    case 'non-system':
      preds.push((e) => !lists.isSystem(e.user, e.groups));
      break;
    case 'system':
      preds.push((e) => lists.isSystem(e.user, e.groups));
      break;
    case 'service-account':
      preds.push((e) => e.user.startsWith('system:serviceaccount:'));
      break;
    case 'anonymous':
      preds.push((e) => e.user === 'system:anonymous' || e.groups.includes('system:unauthenticated'));
      break;
    default:
      break;
  }
  if (m.codes) preds.push(codeTest(m.codes));
  if (m.decision === 'allow') preds.push(isAllowed);
  else if (m.decision === 'forbid') preds.push(isDenied);
  if (m.outcome === 'succeeded') preds.push(succeeded);
  else if (m.outcome === 'failed') preds.push(failed);
  if (m.impersonated !== undefined) {
    const want = m.impersonated;
    preds.push((e) => (e.impersonatedUser !== '') === want);
  }
  if (m.admission !== undefined) {
    const want = m.admission;
    preds.push((e) => (e.admission !== undefined) === want);
  }
  return { plan, check: combine(preds) };
}

function combine(preds: Pred[]): Pred {
  switch (preds.length) {
    case 0:
      return () => true;
    case 1:
      return preds[0]!;
    case 2: {
      const [a, b] = preds as [Pred, Pred];
      return (e) => a(e) && b(e);
    }
    case 3: {
      const [a, b, c] = preds as [Pred, Pred, Pred];
      return (e) => a(e) && b(e) && c(e);
    }
    default:
      return (e) => {
        for (const p of preds) if (!p(e)) return false;
        return true;
      };
  }
}
