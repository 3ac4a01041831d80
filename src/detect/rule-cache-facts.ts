/**
 * The build's step that adds each cached rule's expression facts (expression-facts.ts) to the rule cache: every
 * expression parsed and analysed once, here, instead of at every start.
 */
import { expressionSources, type ExpressionFacts } from './expression-facts.js';
import { RuleExpression } from './expression.js';
import { DetectionLists } from './lists.js';
import type { RuleCache } from './rule.js';

/** The facts of every expression of the cache's rules, found with the cache's own lists, by expression text. */
export async function expressionFactsOf(cache: RuleCache, timeoutMs = 2000): Promise<Record<string, ExpressionFacts>> {
  const files = Object.values(cache.files);
  const lists = DetectionLists.build(new Map(files.flatMap((f) => f.lists.map((l) => [l.name, l.items] as const))));
  const out: Record<string, ExpressionFacts> = {};
  for (const rule of files.flatMap((f) => f.rules))
    for (const src of expressionSources(rule)) {
      if (Object.hasOwn(out, src)) continue;
      try {
        out[src] = await new RuleExpression(src, lists, { timeoutMs }).facts();
      } catch {
        // Not an expression this parser takes (or a list it does not know): the start reports it, as without a cache.
      }
    }
  return out;
}
