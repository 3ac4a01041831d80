/**
 * A rule's shipped exceptions: the routine work of the control plane it must stay quiet on (a controller
 * reconciling, a kubelet's mirror pod, the DaemonSet controller making kube-proxy's pods), written in the rule file as
 * data, not code. Each names who (the authenticated user or group: facts the apiserver vouches for) and, usually,
 * where and what (namespace, object name, images, the controlling owner). A user tightens or drops them from the
 * config (`detection.rules.<id>.removeExceptions`, or by editing the lists they refer to); `kaudit rules explain`
 * prints them.
 *
 * A spoofable attribute never suppresses on its own: the parser refuses an exception that names no user or group,
 * and there is no user-agent field at all.
 */
import type { NormalisedEvent } from '../events/types.js';
import type { RuleTuning } from './config.js';
import { images } from './facts.js';
import type { DetectionLists } from './lists.js';
import { eventObjectName, MatchError } from './match.js';
import { compilePatterns, type StringTest } from './patterns.js';

/** One shipped exception of a rule file. Fields hold patterns or `@list` references; all given fields must match. */
export interface ShippedException {
  /** Kebab-case id, unique within the rule: what `removeExceptions` names. */
  name: string;
  /** Why this traffic is routine; printed by `kaudit rules explain`. */
  reason: string;
  users?: string[];
  groups?: string[];
  namespaces?: string[];
  names?: string[];
  /** Every image of the event's pod specs must match (an event without images does not). */
  images?: string[];
  /** Kind of the object's controlling owner (ownerReferences with controller: true): `DaemonSet`, `Node`. */
  owners?: string[];
  /** Request verbs. */
  verbs?: string[];
}

export const SHIPPED_EXCEPTION_KEYS = ['name', 'reason', 'users', 'groups', 'namespaces', 'names', 'images', 'owners', 'verbs'] as const;
/** The fields that say who: an exception needs one of them. */
export const IDENTITY_KEYS = ['users', 'groups'] as const;

function expand(patterns: readonly string[], lists: DetectionLists): string[] {
  return patterns.flatMap((p) => {
    if (!p.startsWith('@')) return [p];
    if (!lists.has(p.slice(1))) throw new MatchError(`exceptions: unknown list "${p.slice(1)}"`);
    return [...lists.get(p.slice(1))];
  });
}

function ownerKind(e: NormalisedEvent): string {
  for (const b of [e.event.requestObject, e.event.responseObject]) {
    const md = b && typeof b === 'object' && !Array.isArray(b) ? (b as Record<string, unknown>).metadata : undefined;
    const owners = md && typeof md === 'object' ? (md as Record<string, unknown>).ownerReferences : undefined;
    if (!Array.isArray(owners)) continue;
    for (const o of owners) if (o && typeof o === 'object' && o.controller === true && typeof o.kind === 'string') return o.kind;
  }
  return '';
}

type Test = (e: NormalisedEvent) => boolean;

function compileOne(x: ShippedException, lists: DetectionLists): Test {
  const tests: Test[] = [];
  const field = (pats: string[] | undefined, get: (e: NormalisedEvent) => string) => {
    if (!pats) return;
    const t: StringTest = compilePatterns(expand(pats, lists));
    tests.push((e) => t(get(e)));
  };
  field(x.users, (e) => e.user);
  field(x.namespaces, (e) => e.namespace);
  field(x.names, eventObjectName);
  field(x.owners, ownerKind);
  field(x.verbs, (e) => e.verb);
  if (x.groups) {
    const t = compilePatterns(expand(x.groups, lists));
    tests.push((e) => e.groups.some(t));
  }
  if (x.images) {
    const t = compilePatterns(expand(x.images, lists));
    tests.push((e) => {
      const im = images(e.event);
      return im.length > 0 && im.every(t);
    });
  }
  return (e) => tests.every((t) => t(e));
}

/** The shipped exceptions that apply once the tuning's removals are taken out. */
export function activeShippedExceptions(list: readonly ShippedException[] | undefined, tuning: RuleTuning): ShippedException[] {
  const remove = tuning.removeExceptions ?? [];
  if (remove.includes('*')) return [];
  return (list ?? []).filter((x) => !remove.includes(x.name));
}

/**
 * The predicate of a rule's shipped exceptions (undefined when none apply) and a key that identifies them with the
 * list values they expand to (for sharing matchers and keying saved state).
 */
export function shippedExceptions(list: readonly ShippedException[] | undefined, tuning: RuleTuning, lists: DetectionLists): { test?: Test; key: string } {
  const active = activeShippedExceptions(list, tuning);
  if (active.length === 0) return { key: '' };
  const tests = active.map((x) => compileOne(x, lists));
  const key = JSON.stringify(
    active.map(({ reason: _r, ...x }) => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, Array.isArray(v) ? expand(v, lists) : v]))),
  );
  return { test: (e) => tests.some((t) => t(e)), key };
}

/** Which shipped exception (by name) an event falls under, for `kaudit rules explain --event`. */
export function matchingShippedException(
  list: readonly ShippedException[] | undefined,
  tuning: RuleTuning,
  lists: DetectionLists,
  e: NormalisedEvent,
): string | undefined {
  for (const x of activeShippedExceptions(list, tuning)) if (compileOne(x, lists)(e)) return x.name;
  return undefined;
}

/** Either predicate (each may be absent). */
export function eitherException(a: Test | undefined, b: Test | undefined): Test | undefined {
  if (a && b) return (e) => a(e) || b(e);
  return a ?? b;
}
