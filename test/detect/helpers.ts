import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DetectionEngine, type EngineOptions } from '../../src/detect/engine.js';
import { exampleEvent } from '../../src/detect/examples.js';
import { defaultRulesDir } from '../../src/detect/index.js';
import { parseRuleFile, RuleLoadError, type RuleSet } from '../../src/detect/rule.js';
import { normalise } from '../../src/events/normalise.js';
import { newRedactionKey } from '../../src/events/redact.js';
import type { NormalisedEvent } from '../../src/events/types.js';

export const redaction = { enabled: true, key: newRedactionKey() };
let seq = 0;

/** A normalised event from a partial one (the rule-example shorthands apply: user: name, code, at: +5m, query). */
export function ev(partial: Record<string, unknown>, cluster = 'test'): NormalisedEvent {
  return normalise(exampleEvent(structuredClone(partial), `t${++seq}`, 0), cluster, redaction);
}

/** A rule set from inline YAML, with the catalog's shared lists. */
export function ruleSet(yamlText: string): RuleSet {
  const set: RuleSet = { rules: [], lists: new Map(), issues: [] };
  const listsFile = join(defaultRulesDir(), 'lists.yaml');
  parseRuleFile(readFileSync(listsFile, 'utf8'), listsFile, set);
  parseRuleFile(yamlText, 'inline.yaml', set);
  const errors = set.issues.filter((i) => i.level === 'error');
  if (errors.length) throw new RuleLoadError(errors);
  return set;
}

export function engine(yamlText: string, opts: Partial<EngineOptions> = {}): DetectionEngine {
  const set = ruleSet(yamlText);
  return new DetectionEngine({ rules: set.rules, lists: set.lists, ...opts });
}

export function sink() {
  let text = '';
  return {
    write: (s: string) => {
      text += s;
      return true;
    },
    get text() {
      return text;
    },
  };
}
