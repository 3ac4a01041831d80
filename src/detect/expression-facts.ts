/**
 * What a start needs to know of a rule's JSONata expressions before any event arrives, kept in the rule cache by the
 * build. Parsing and analysing every condition, and evaluating the body-only ones on an empty event, was ~60-130 ms of
 * every detecting command's start (issue #21: start-up under 0.3 s) and loaded JSONata even when no event reached a
 * condition. With these facts a start parses an expression only when a rule first evaluates it.
 *
 * The facts follow from the expression's text and kaudit's own code (the helpers' table, the analysis): the rule
 * cache's validity key covers both, so a cache that holds them was written by the code that reads them.
 */
import type { BodyRead } from './expression-helpers.js';

export interface ExpressionFacts {
  /** Bodies the expression reads (directly or through helpers). */
  reads: BodyRead[];
  /** Event fields read at the top level. */
  rootFields: string[];
  functions: string[];
  /** Lists named by literal arguments of list helpers. */
  lists: string[];
  freeVariables: string[];
  unknownFunctions: string[];
  /**
   * Its truth for an event with neither body (see RuleExpression.bodylessTruth): true or false; null when there is
   * none (the expression reads more than the bodies, or evaluating it failed). Absent when the truth depends on the
   * lists, which the config can change: then the start finds it.
   */
  bodyless?: boolean | null;
  /**
   * For a body-only expression whose truth without bodies a list decides: that truth as found with the lists the build
   * had, and their hash (see listsKey in expression.ts). A start whose lists are the same takes it; others find it.
   */
  bodylessFor?: { lists: string; truth: boolean | null };
}

/** Every JSONata expression of a rule: its condition, its sequence steps' conditions and its details. */
export function expressionSources(rule: { condition?: string; details?: Record<string, string>; sequence?: { steps: { condition?: string }[] } }): string[] {
  const out: string[] = [];
  if (rule.condition) out.push(rule.condition);
  for (const s of rule.sequence?.steps ?? []) if (s.condition) out.push(s.condition);
  out.push(...Object.values(rule.details ?? {}));
  return out;
}
