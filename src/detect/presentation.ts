/**
 * Alert presentation: what an alert says about its event (title, severity with escalation, summary, details, object
 * reference, group key). Rules that differ only in id share one presenter, which does this work once per event and
 * decision; each rule then gets its own alert from it.
 */
import type { NormalisedEvent, ObjectReference } from '../events/types.js';
import { alertEventFields, severityRank, type Alert, type Severity } from './alert.js';
import { DEFER, type RuleExpression } from './expression.js';
import { eventObjectName } from './match.js';
import { groupObject, renderSummary } from './summary.js';

/** What a stateful rule's decision adds to its alert (threshold count and window, sequence steps). */
export interface Extras {
  count?: number;
  window?: string;
  key?: string;
  extra?: Record<string, unknown>;
}

/** An alert that is due: the group-key object and, for stateful rules, what the state says. */
export interface Due {
  object?: string;
  extras?: Extras;
}

/** The decision of a stateless rule (one object, so that presenters recognise the same decision). */
export const STATELESS_DUE: Due = {};

export interface Presenter {
  title: string;
  tags: string[];
  mitre: string[];
  severity: Severity;
  summary: string;
  details: [string, RuleExpression][];
  escalate: { severity: Severity; check: (e: NormalisedEvent) => boolean }[];
  lastEvent?: NormalisedEvent;
  lastDue?: Due;
  lastBase?: AlertBase | Promise<AlertBase>;
  lastKeyTail?: string | Promise<string>;
}

/** An alert without the rule's id and group key. */
type AlertBase = Omit<Alert, 'rule' | 'groupKey'> & { object: string };

/** Where a failed detail is reported. */
type Warn = (message: string) => void;

/**
 * The alert of rule `id` for event `e`. The presenter's work (summary, details, severity) is done once per event and
 * decision, and reused by rules that differ only in id.
 */
export function presentAlert(p: Presenter, id: string, e: NormalisedEvent, due: Due, warn: Warn): Alert | Promise<Alert> {
  if (p.lastEvent !== e || p.lastDue !== due) {
    p.lastEvent = e;
    p.lastDue = due;
    const base = present(p, id, e, due.extras, warn);
    p.lastBase = base;
    // The group key after the rule id is the same for every rule sharing this presenter and decision.
    const tail = (b: AlertBase) => `|${e.cluster}|${e.user}|${due.object ?? b.object}`;
    p.lastKeyTail = base instanceof Promise ? base.then(tail) : tail(base);
  }
  const base = p.lastBase!;
  const tail = p.lastKeyTail!;
  if (base instanceof Promise) return Promise.all([base, tail]).then(([b, t]) => alertOf(id, id + t, b));
  return alertOf(id, id + (tail as string), base);
}

/** A rule's alert from the presenter's work for the event (shared by rules that differ only in id). */
function alertOf(rule: string, groupKey: string, b: AlertBase): Alert {
  const a: Alert = {
    rule,
    title: b.title,
    severity: b.severity,
    tags: b.tags,
    mitre: b.mitre,
    summary: b.summary,
    cluster: b.cluster,
    auditID: b.auditID,
    stage: b.stage,
    time: b.time,
    timeMicros: b.timeMicros,
    user: b.user,
    sourceIP: b.sourceIP,
    verb: b.verb,
    objectRef: b.objectRef,
    groupKey,
    // Always set (undefined when none, which JSON leaves out): one object shape for every alert.
    details: b.details,
  };
  return a;
}

function present(p: Presenter, id: string, e: NormalisedEvent, x: Extras | undefined, warn: Warn): AlertBase | Promise<AlertBase> {
  let details: Record<string, unknown> | undefined = x?.extra ? { ...x.extra } : undefined;
  for (let i = 0; i < p.details.length; i++) {
    const [k, expr] = p.details[i]!;
    try {
      const v = expr.valueNow(e.event);
      if (v === DEFER) return presentAsync(p, id, e, x, details, i, warn);
      details = keepDetail(details, k, v);
    } catch (err) {
      detailFailed(id, k, e, err, warn);
    }
  }
  return base(p, e, x, details);
}

/** present() from detail `from` on, for details JSONata must evaluate. */
async function presentAsync(
  p: Presenter,
  id: string,
  e: NormalisedEvent,
  x: Extras | undefined,
  details: Record<string, unknown> | undefined,
  from: number,
  warn: Warn,
): Promise<AlertBase> {
  for (const [k, expr] of p.details.slice(from)) {
    try {
      details = keepDetail(details, k, await expr.value(e.event));
    } catch (err) {
      detailFailed(id, k, e, err, warn);
    }
  }
  return base(p, e, x, details);
}

function keepDetail(details: Record<string, unknown> | undefined, k: string, v: unknown): Record<string, unknown> | undefined {
  if (v === undefined) return details;
  // The alert is serialised (store, feed, Kafka): a value nested deeper than that can go is not kept (throws).
  JSON.stringify(v);
  (details ??= {})[k] = Array.isArray(v) ? [...v] : v;
  return details;
}

function detailFailed(id: string, k: string, e: NormalisedEvent, err: unknown, warn: Warn): void {
  warn(`detection rule ${id}: details.${k} failed on event ${e.auditID}: ${(err as Error).message}`);
}

function base(p: Presenter, e: NormalisedEvent, x: Extras | undefined, details: Record<string, unknown> | undefined): AlertBase {
  let severity = p.severity;
  for (const esc of p.escalate) if (severityRank(esc.severity) > severityRank(severity) && esc.check(e)) severity = esc.severity;
  const ref: ObjectReference = { ...(e.event.objectRef ?? {}) };
  if (e.resource !== '' && !ref.name) {
    const n = eventObjectName(e);
    if (n) ref.name = n;
  }
  return {
    title: p.title,
    severity,
    tags: p.tags,
    mitre: p.mitre,
    summary: renderSummary(p.summary, e, { count: x?.count, window: x?.window, key: x?.key, details }),
    ...alertEventFields(e),
    objectRef: ref,
    ...(details ? { details } : {}),
    object: groupObject(e),
  };
}
