/** The audit-policy area: load, validate, evaluate (the apiserver's matching), check, simulate, generate. */
export * from './types.js';
export { parsePolicy, loadPolicyFile, POLICY_API_VERSION, type LoadedPolicy, type PolicyIssue } from './load.js';
export { validatePolicy, type FieldError } from './validate.js';
export { evaluatePolicy, ruleMatches, attributesFromEvent, decisionJson, stageRecorded } from './evaluate.js';
export { checkPolicy, CHECKS, severityAtLeast, type Finding, type Severity, type CheckReport } from './checks.js';
export {
  loadDetectionRequirements,
  requirementMatches,
  parseRequirements,
  DetectionCatalogUnavailable,
  type RuleRequirement,
  type RequirementResource,
} from './requirements.js';
export { simulatePolicy, formatSimulation, type SimulationReport } from './simulate.js';
export { generatePolicy, emitPolicyYaml, PROFILES, type Profile } from './generate.js';
export { buildMatrix, formatMatrix } from './matrix.js';
export { loadApiserverManifest, parseApiserverManifest, checkApiserverFlags } from './manifest.js';
export { findShadowedRules } from './shadow.js';
