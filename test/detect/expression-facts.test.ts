import { describe, expect, it } from 'vitest';
import { parseDetectionConfig } from '../../src/detect/config.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { expressionSources } from '../../src/detect/expression-facts.js';
import { ExpressionError, RuleExpression } from '../../src/detect/expression.js';
import { defaultRulesDir, loadRules } from '../../src/detect/index.js';
import { DetectionLists } from '../../src/detect/lists.js';
import { expressionFactsOf } from '../../src/detect/rule-cache-facts.js';
import { loadRuleSet, ruleCacheOf } from '../../src/detect/rule.js';
import type { NormalisedEvent } from '../../src/events/types.js';
import { ev } from './helpers.js';

/** The bundled rules' cache as the build writes it, with the expressions' facts. */
async function bundledCache() {
  const cache = ruleCacheOf(defaultRulesDir());
  cache.expressions = await expressionFactsOf(cache);
  return cache;
}

const sorted = (s: Iterable<string>) => [...s].sort();

describe('expression facts kept in the rule cache', () => {
  it('are what parsing each bundled expression finds: what it reads, calls and names, and its truth without bodies', async () => {
    const cache = await bundledCache();
    const set = loadRules(defaultRulesDir());
    const lists = DetectionLists.build(new Map([...set.lists].map(([n, l]) => [n, l.items])));
    const sources = new Set(set.rules.flatMap((r) => expressionSources(r)));
    expect(sources.size).toBeGreaterThan(50);
    expect(sorted(Object.keys(cache.expressions!))).toEqual(sorted(sources));
    let truths = 0;
    for (const src of sources) {
      const facts = cache.expressions![src]!;
      const parsed = new RuleExpression(src, lists, { timeoutMs: 2000 });
      for (const k of ['reads', 'rootFields', 'functions', 'lists', 'freeVariables', 'unknownFunctions'] as const)
        expect(sorted(facts[k]), `${src}: ${k}`).toEqual(sorted(parsed.analysis[k]));
      if (facts.bodyless !== undefined) {
        truths++;
        expect(facts.bodyless ?? undefined, src).toBe(await parsed.bodylessTruth());
      } else {
        // A truth a list decides is kept with the lists it was found with.
        expect(facts.bodylessFor, src).toBeDefined();
        expect(facts.bodylessFor!.truth ?? undefined, src).toBe(await parsed.bodylessTruth());
      }
    }
    expect(truths).toBeGreaterThan(sources.size / 2);
    expect(truths).toBeLessThan(sources.size);
  });

  it('keep a truth without bodies that a list decides only for the same lists, so a list changed by the config counts', async () => {
    const lists = DetectionLists.build(new Map([['l', ['x']]]));
    const x = (src: string) => new RuleExpression(src, lists, { timeoutMs: 1000 }).facts();
    expect((await x('$count($containers()[securityContext.privileged = true]) > 0')).bodyless).toBe(false);
    expect((await x("verb = 'create'")).bodyless).toBeNull();
    const facts = await x("$inList('x', 'l')");
    expect(facts.bodyless).toBeUndefined();
    expect(facts.bodylessFor?.truth).toBe(true);
    // The same lists: the kept truth, without parsing (the text given here would not parse).
    const same = DetectionLists.build(new Map([['l', ['x']]]));
    expect(await new RuleExpression("$inList('x', 'l') = = ", same, { timeoutMs: 1000 }, facts).bodylessTruth()).toBe(true);
    // Other lists (the config changed one): found again, and here the list no longer holds the value.
    const other = DetectionLists.build(new Map([['l', ['y']]]));
    expect(await new RuleExpression("$inList('x', 'l')", other, { timeoutMs: 1000 }, facts).bodylessTruth()).toBe(false);
  });

  it('spare parsing an expression until it is first evaluated', async () => {
    const lists = DetectionLists.build(new Map());
    const facts = await new RuleExpression("verb = 'create'", lists, { timeoutMs: 1000 }).facts();
    // Facts given for a text that does not parse: nothing fails until the expression is evaluated.
    const lazy = new RuleExpression("verb = = 'create'", lists, { timeoutMs: 1000 }, facts);
    expect(sorted(lazy.analysis.rootFields)).toEqual(['verb']);
    await expect(lazy.test(ev({ verb: 'create' }).event!)).rejects.toThrow(ExpressionError);
    // A text that parses evaluates as one parsed at once does.
    const good = new RuleExpression("verb = 'create'", lists, { timeoutMs: 1000 }, facts);
    expect(await good.test(ev({ verb: 'create' }).event!)).toBe(true);
    expect(await good.test(ev({ verb: 'delete' }).event!)).toBe(false);
    // Unknown lists are still refused when the rules are compiled, from the facts alone.
    expect(() => new RuleExpression('x', lists, { timeoutMs: 1000 }, { ...facts, lists: ['nope'] })).toThrow('unknown list "nope"');
  });

  it('leave the alerts of the bundled rules exactly those of an engine that parses every expression', async () => {
    const { mixedStream } = (await import('../../benchmarks/lib/mixed.mjs')) as {
      mixedStream: (o: { seed: number; rate: number; people: number }) => () => Record<string, unknown>;
    };
    const next = mixedStream({ seed: 5, rate: 20, people: 0.2 });
    const events: NormalisedEvent[] = [];
    for (let i = 0; i < 8000; i++) events.push(ev(next()));
    const cache = await bundledCache();
    const withFacts = loadRuleSet(defaultRulesDir(), cache);
    expect(withFacts.expressions?.size).toBeGreaterThan(50);
    const parsing = loadRuleSet(defaultRulesDir(), undefined);
    expect(parsing.expressions).toBeUndefined();
    const make = (set: typeof parsing) =>
      new DetectionEngine({
        rules: set.rules,
        lists: set.lists,
        config: parseDetectionConfig({}),
        ...(set.expressions ? { expressions: set.expressions } : {}),
      });
    const a = make(withFacts);
    const b = make(parsing);
    await a.prepare();
    await b.prepare();
    const alertsA = await a.detect(events.filter((e) => a.wants(e)));
    const alertsB = await b.detect(events.filter((e) => b.wants(e)));
    expect(alertsA.length).toBeGreaterThan(20);
    expect(alertsA.map((x) => `${x.rule} ${x.auditID} ${x.stage} ${JSON.stringify(x.details)}`)).toEqual(
      alertsB.map((x) => `${x.rule} ${x.auditID} ${x.stage} ${JSON.stringify(x.details)}`),
    );
  }, 120_000);
});
