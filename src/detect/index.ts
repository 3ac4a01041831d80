/**
 * The detection engine's public face: make an engine from a rules directory and a tuning config, and derive what
 * the rules need from the audit policy.
 */
import { fileURLToPath } from 'node:url';
import type { RuleRequirement } from '../policy/requirements.js';
import type { DetectionConfig } from './config.js';
import { DetectionEngine, type EngineOptions } from './engine.js';
import { engineRequirements } from './requirements.js';
import { loadRuleSet, RuleLoadError, type RuleSet } from './rule.js';

export { DetectionConfigError, parseDetectionConfig, type DetectionConfig, type DetectionException, type RuleTuning } from './config.js';
export { DetectionEngine, type InactiveRule, type RuleInfo, type RuleStats } from './engine.js';
export { formatIssue, loadRuleSet, RuleLoadError, type RuleIssue, type RuleSet, type RuleSpec } from './rule.js';

export interface DetectorOptions {
  /** Rules directory (or one rule file); default: the bundled detections/ (or config.rulesDir). */
  rulesDir?: string;
  /** Tuning, as loadConfig (or parseDetectionConfig, for data from elsewhere) returns it. */
  config?: DetectionConfig;
  /** Share one matcher between rules with identical match, condition and exceptions (default true). */
  shareIdentical?: boolean;
  /** Use the candidate index (default true; false is the reference the tests compare it with). */
  useIndex?: boolean;
  /** Request-id sets take their whole size at their first id (EngineOptions.reserveState; `kaudit serve`). */
  reserveState?: boolean;
  onWarning?: (message: string) => void;
}

/** The bundled rules: `detections/` at the package root, from src/detect/ and from dist/detect/ alike. */
export function defaultRulesDir(): string {
  return fileURLToPath(new URL('../../detections/', import.meta.url));
}

/** Loads and checks a rule set; throws RuleLoadError listing every problem (file:line) when any is an error. */
export function loadRules(rulesDir: string): RuleSet {
  const set = loadRuleSet(rulesDir);
  const errors = set.issues.filter((i) => i.level === 'error');
  if (errors.length > 0) throw new RuleLoadError(errors);
  return set;
}

function resolve(opts: { rulesDir?: string; config?: DetectionConfig }): { config: DetectionConfig; dir: string } {
  const config = opts.config ?? {};
  return { config, dir: opts.rulesDir ?? config.rulesDir ?? defaultRulesDir() };
}

/** Makes a detection engine: rules loaded, compiled and indexed once. */
export async function createDetector(opts: DetectorOptions = {}): Promise<DetectionEngine> {
  const { config, dir } = resolve(opts);
  const set = loadRules(dir);
  const eo: EngineOptions = {
    rules: set.rules,
    lists: set.lists,
    ...(set.expressions ? { expressions: set.expressions } : {}),
    config,
    shareIdentical: opts.shareIdentical,
    useIndex: opts.useIndex,
    reserveState: opts.reserveState,
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
  };
  const engine = new DetectionEngine(eo);
  await engine.prepare();
  return engine;
}

/** What each enabled rule needs the audit log to contain, for the audit-policy checks. */
export async function loadRuleRequirements(opts: { rulesDir?: string; config?: DetectionConfig } = {}): Promise<RuleRequirement[]> {
  const { config: cfg, dir } = resolve(opts);
  const set = loadRules(dir);
  const engine = new DetectionEngine({ rules: set.rules, lists: set.lists, config: cfg, onWarning: () => {} });
  return engineRequirements(engine, set.rules);
}
