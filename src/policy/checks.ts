/**
 * `kaudit policy check`: what a policy gets wrong, as findings. A check that passes adds no finding.
 *
 * Severities: `error` fails the check (the apiserver would refuse the policy, a field is silently ignored, or a CIS
 * control is not met); `warning` is a real weakness that does not break a benchmark (a detection left blind, a rule
 * that can never match, noisy traffic kept); `note` is advice.
 */
import type { Stage } from '../events/types.js';
import {
  FRESH,
  GENERIC_IDENTITIES,
  NOISE,
  NON_RESOURCE_VERBS,
  RESOURCE_VERBS,
  SYSTEM_IDENTITIES,
  describeRequest,
  groupResourceLabel,
  noiseClassOf,
  nonResourceRequest,
} from './catalog.js';
import { evaluatePolicy } from './evaluate.js';
import type { LoadedPolicy } from './load.js';
import { allIdentities, everyResource, isLogged, isVisible, resourceProbes, type Probe, type ResourceSel } from './probe.js';
import { describeRequirement, requirementCounts, type RuleRequirement } from './requirements.js';
import { findShadowedRules } from './shadow.js';
import { workloadWritesWithoutBodies } from './workload-bodies.js';
import type { AuditDecision, Policy } from './types.js';
import { levelRank } from './types.js';
import { validatePolicy } from './validate.js';

export type Severity = 'error' | 'warning' | 'note';

export interface Finding {
  id: string;
  severity: Severity;
  message: string;
  /** Index of the policy rule the finding is about (null: no rule matched, the default None applied). */
  rule?: number | null;
  /** Field path, for invalid-policy and unknown-field. */
  path?: string;
  /** Line in the policy (or manifest) file. */
  line?: number;
  /** File the line refers to when it is not the policy (the apiserver manifest). */
  file?: string;
  /** Detection rule id, for detection-blind-spot. */
  detection?: string;
  /** Up to a few example requests behind the finding. */
  examples?: string[];
}

export interface CheckDescription {
  id: string;
  title: string;
}

export interface CheckOptions {
  /** Requirements of the enabled detections; undefined skips detection-blind-spot. */
  requirements?: RuleRequirement[];
  /** Why the requirements are missing, reported as a skipped check. */
  requirementsUnavailable?: string;
  /** Namespaces whose workloads the posture checks should see (workload-bodies); default: every namespace probed. */
  postureNamespaces?: string[];
}

export interface CheckReport {
  source: string;
  findings: Finding[];
  /** Ids of the checks that ran and found nothing. */
  passed: string[];
  skipped: { id: string; reason: string }[];
}

const SEVERITY_ORDER: Severity[] = ['note', 'warning', 'error'];

export function severityAtLeast(s: Severity, min: Severity): boolean {
  return SEVERITY_ORDER.indexOf(s) >= SEVERITY_ORDER.indexOf(min);
}

/** Resources whose request or response body holds secret values (CIS 3.2.2 names the first three). */
export const SENSITIVE: ResourceSel[] = [
  { group: '', resource: 'secrets' },
  { group: '', resource: 'configmaps' },
  { group: 'authentication.k8s.io', resource: 'tokenreviews' },
  { group: '', resource: 'serviceaccounts', subresource: 'token' },
];

const SENSITIVE_VERBS: Record<string, string[]> = {
  secrets: [...RESOURCE_VERBS],
  configmaps: [...RESOURCE_VERBS],
  tokenreviews: ['create'],
  token: ['create'],
};

export function isSensitive(group: string, resource: string, subresource = ''): boolean {
  return SENSITIVE.some((s) => (s.group === group || group === '*') && (s.resource === resource || resource === '*') && (s.subresource ?? '') === subresource);
}

interface Miss {
  probe: Probe;
  decision: AuditDecision;
}

/** Up to n example descriptions, preferring different requests over the same request by different callers. */
function pickExamples(ms: { probe: Probe; decision?: AuditDecision }[], n = 3, suffix?: (m: { probe: Probe; decision?: AuditDecision }) => string): string[] {
  const out: string[] = [];
  const seenReq = new Set<string>();
  for (const pass of [0, 1]) {
    for (const m of ms) {
      if (out.length >= n) return out;
      const reqKey = describeRequest(m.probe.attrs, '');
      const text = describeRequest(m.probe.attrs, m.probe.who) + (suffix ? suffix(m) : '');
      if (out.includes(text)) continue;
      if (pass === 0 && seenReq.has(reqKey)) continue;
      seenReq.add(reqKey);
      out.push(text);
    }
  }
  return out;
}

function ruleLabel(rule: number | null): string {
  return rule === null ? 'no rule matches (default None)' : `rule ${rule}`;
}

/** A finding as a check makes it: the check's id is added by checkPolicy. */
type CheckFinding = Omit<Finding, 'id'>;

/** Groups misses by the rule that decided them; one finding per rule keeps the output short and actionable. */
function missesToFindings(
  severity: Severity,
  misses: Miss[],
  describe: (rule: number | null, misses: Miss[], what: string) => string,
  lineOf: (rule: number | null) => number | undefined,
): CheckFinding[] {
  const byRule = new Map<number | null, Miss[]>();
  for (const m of misses) {
    const k = m.decision.rule;
    if (!byRule.has(k)) byRule.set(k, []);
    byRule.get(k)!.push(m);
  }
  const out: CheckFinding[] = [];
  for (const [rule, ms] of byRule) {
    const kinds = new Map<string, Set<string>>();
    for (const m of ms) {
      const a = m.probe.attrs;
      const label = a.resourceRequest ? groupResourceLabel(a.apiGroup, a.resource, a.subresource) : a.path;
      if (!kinds.has(label)) kinds.set(label, new Set());
      kinds.get(label)!.add(a.verb);
    }
    // Say where, when the misses are confined to namespaces the policy names (never the "any other" probe).
    const nss = new Set(ms.filter((m) => m.probe.attrs.resourceRequest && m.probe.attrs.namespace !== '').map((m) => m.probe.attrs.namespace));
    const allNamespaced = ms.every((m) => m.probe.attrs.resourceRequest && m.probe.attrs.namespace !== '');
    const where = allNamespaced && nss.size > 0 && !nss.has(FRESH) ? ` in namespace${nss.size > 1 ? 's' : ''} ${[...nss].join(', ')}` : '';
    const what = [...kinds].map(([label, verbs]) => `${label} (${[...verbs].join(', ')})`).join('; ') + where;
    const examples = pickExamples(ms);
    const f: CheckFinding = { severity, message: describe(rule, ms, what), rule, examples };
    const line = lineOf(rule);
    if (line !== undefined) f.line = line;
    out.push(f);
  }
  return out;
}

/**
 * Which verbs put a secret value into the log at Request level (a request body carrying it). At RequestResponse
 * every verb does (the response holds the object). The TokenRequest body holds no secret: only its response does.
 */
const VALUE_IN_REQUEST_BODY: Record<string, string[]> = {
  secrets: ['create', 'update', 'patch'],
  configmaps: ['create', 'update', 'patch'],
  tokenreviews: ['create'],
  token: [],
};

function checkSecrets(policy: Policy, lineOf: (r: number | null) => number | undefined): CheckFinding[] {
  const leaks: Miss[] = [];
  const aboveMetadata: Miss[] = [];
  const notLogged: Miss[] = [];
  for (const sel of SENSITIVE) {
    const key = sel.subresource ?? sel.resource;
    const verbs = SENSITIVE_VERBS[key]!;
    // At most Metadata for anyone the policy could single out.
    for (const p of resourceProbes({ policy, resources: [sel], verbs, identities: allIdentities(policy), withNames: true })) {
      const d = evaluatePolicy(policy, p.attrs);
      if (levelRank(d.level) <= levelRank('Metadata') || !isLogged(d, p.attrs)) continue;
      const leaksValue = d.level === 'RequestResponse' || VALUE_IN_REQUEST_BODY[key]!.includes(p.attrs.verb);
      (leaksValue ? leaks : aboveMetadata).push({ probe: p, decision: d });
    }
    // At least Metadata for ordinary callers (CIS names secrets, configmaps and tokenreviews).
    if (sel.subresource === undefined) {
      for (const p of resourceProbes({ policy, resources: [sel], verbs, identities: GENERIC_IDENTITIES })) {
        const d = evaluatePolicy(policy, p.attrs);
        if (!isLogged(d, p.attrs)) notLogged.push({ probe: p, decision: d });
      }
    }
  }
  return [
    ...missesToFindings(
      'error',
      leaks,
      (rule, ms, what) => {
        const lvl = ms[0]!.decision.level;
        return `${ruleLabel(rule)} logs ${what} at ${lvl}: that writes secret values (or tokens) into the audit log; log them at Metadata`;
      },
      lineOf,
    ),
    // Above Metadata but without a value in any body written (a read or delete at Request): harmless, yet not what
    // CIS 3.2.2 asks for.
    ...missesToFindings(
      'note',
      aboveMetadata,
      (rule, ms, what) => {
        const lvl = ms[0]!.decision.level;
        return `${ruleLabel(rule)} logs ${what} at ${lvl}: no secret value is written (these requests carry none in their body at this level), but CIS 3.2.2 asks for Metadata`;
      },
      lineOf,
    ),
    ...missesToFindings(
      'error',
      notLogged,
      (rule, _ms, what) =>
        `${what} ${rule === null ? 'are not logged: no rule matches them' : `are not logged: ${ruleLabel(rule)} drops them`}; log them at Metadata`,
      lineOf,
    ),
  ];
}

function checkLogged(policy: Policy, probes: Probe[], lineOf: (r: number | null) => number | undefined, advice: string): CheckFinding[] {
  const misses: Miss[] = [];
  for (const p of probes) {
    const d = evaluatePolicy(policy, p.attrs);
    if (!isLogged(d, p.attrs)) misses.push({ probe: p, decision: d });
  }
  return missesToFindings(
    'error',
    misses,
    (rule, _ms, what) =>
      `${what} ${rule === null ? 'are not logged: no rule matches them' : `are not logged: ${ruleLabel(rule)} ${policy.rules[rule]!.level === 'None' ? 'drops them' : 'omits every stage they go through'}`}; ${advice}`,
    lineOf,
  );
}

/** Pod and workload writes logged without their bodies: the posture checks (detections/posture.yaml) read the pod specs. */
function checkWorkloadBodies(policy: Policy, namespaces: string[] | undefined, lineOf: (r: number | null) => number | undefined): CheckFinding[] {
  return missesToFindings(
    'warning',
    workloadWritesWithoutBodies(policy, namespaces),
    (rule, _ms, what) =>
      `${what} ${rule === null ? 'are not logged' : `are logged below Request by ${ruleLabel(rule)}`}: the workload posture checks (CIS 5.x, the posture-* detections) need the pod specs in the request bodies; log these writes at Request${namespaces ? '' : ' (--posture-namespaces narrows this to the namespaces you want checked)'}`,
    lineOf,
  );
}

function catchAllProbes(policy: Policy): Probe[] {
  const probes = resourceProbes({ policy, resources: everyResource(), verbs: RESOURCE_VERBS, identities: GENERIC_IDENTITIES, namespaces: undefined });
  for (const id of GENERIC_IDENTITIES) {
    for (const path of ['/kaudit-probe', '/kaudit-probe/x', '/logs/kaudit-probe', '/metrics', '/debug/pprof/profile']) {
      for (const verb of ['get', 'post']) probes.push({ attrs: nonResourceRequest(id.user, verb, path), who: id.label });
    }
  }
  return probes.filter((p) => noiseClassOf(p.attrs) === undefined);
}

/** Requirements that CIS 3.2.2 itself forbids (a body of secrets, configmaps or token reviews). */
export function conflictsWithCis(req: RuleRequirement): boolean {
  if (req.level === 'Metadata') return false;
  return req.resources.some((r) => isSensitive(r.group, r.resource, r.subresource === '*' ? '' : (r.subresource ?? '')));
}

export function requirementProbes(policy: Policy, req: RuleRequirement): Probe[] {
  const verbs = req.verbs.length > 0 ? req.verbs : [...RESOURCE_VERBS];
  const probes: Probe[] = [];
  const urls = req.nonResourceURLs ?? [];
  const sels: ResourceSel[] = [];
  const any = req.resources.length === 0 && urls.length === 0;
  const resources = any ? [{ group: '*', resource: '*', subresource: '*' }] : req.resources;
  for (const r of resources) {
    const matching = everyResource().filter(
      (e) =>
        (r.group === '*' || r.group === e.group) &&
        (r.resource === '*' || r.resource === e.resource) &&
        (r.subresource === '*' ? true : (r.subresource ?? undefined) === e.subresource),
    );
    if (r.group !== '*' && r.resource !== '*' && r.subresource !== '*')
      matching.push({ group: r.group, resource: r.resource, ...(r.subresource ? { subresource: r.subresource } : {}) });
    for (const m of matching) if (!sels.some((s) => s.group === m.group && s.resource === m.resource && s.subresource === m.subresource)) sels.push(m);
  }
  const namespaces = req.namespaces && req.namespaces.length > 0 ? req.namespaces : undefined;
  probes.push(...resourceProbes({ policy, resources: sels, verbs, identities: GENERIC_IDENTITIES, namespaces }));
  const nrVerbs = req.verbs.length > 0 ? req.verbs : NON_RESOURCE_VERBS.slice(0, 2);
  const paths = any ? ['/kaudit-probe'] : urls.map((u) => (u === '*' ? '/kaudit-probe' : u.endsWith('*') ? `${u.slice(0, -1)}kaudit-probe` : u));
  for (const id of GENERIC_IDENTITIES)
    for (const path of paths) for (const verb of nrVerbs) probes.push({ attrs: nonResourceRequest(id.user, verb, path), who: id.label });
  // Probes outside the requirement (a catalog expansion can overreach) and known noise it only reaches by wildcard.
  return probes.filter((p) => requirementCounts(req, p.attrs));
}

/** Per requirement: the probes the policy leaves blind. */
export function blindSpots(
  policy: Policy,
  reqs: RuleRequirement[],
): { req: RuleRequirement; misses: { probe: Probe; decision: AuditDecision }[]; total: number }[] {
  return reqs.map((req) => {
    const probes = requirementProbes(policy, req);
    const misses: Miss[] = [];
    for (const p of probes) {
      const d = evaluatePolicy(policy, p.attrs);
      if (!isVisible(d, req.level, req.stages)) misses.push({ probe: p, decision: d });
    }
    return { req, misses, total: probes.length };
  });
}

function checkBlindSpots(policy: Policy, reqs: RuleRequirement[], lineOf: (r: number | null) => number | undefined): CheckFinding[] {
  const out: CheckFinding[] = [];
  for (const { req, misses, total } of blindSpots(policy, reqs)) {
    if (misses.length === 0) continue;
    const first = misses[0]!;
    const d = first.decision;
    const got =
      d.level === 'None'
        ? 'not logged'
        : levelRank(d.level) < levelRank(req.level)
          ? `logged at ${d.level}`
          : `logged without the ${req.stages.join(' or ')} stage`;
    const scope = misses.length === total ? 'blind' : `blind for ${misses.length} of ${total} probed requests`;
    const conflict = conflictsWithCis(req)
      ? ' It needs request bodies that CIS 3.2.2 keeps out of the log (secret values): keeping the policy at Metadata there is deliberate; disable the detection or accept the risk.'
      : '';
    const f: CheckFinding = {
      severity: 'warning',
      detection: req.rule,
      rule: d.rule,
      message: `detection ${req.rule} (${req.title}) is ${scope}: it needs ${describeRequirement(req)} at ${req.level} in ${req.stages.join(' or ')}, but ${describeRequest(first.probe.attrs, first.probe.who)} is ${got} (${ruleLabel(d.rule)}).${conflict}`,
      examples: pickExamples(misses, 3, (m) => `: ${m.decision!.level} (${ruleLabel(m.decision!.rule)})`),
    };
    const line = lineOf(d.rule);
    if (line !== undefined) f.line = line;
    out.push(f);
  }
  return out;
}

function checkNoisyReads(policy: Policy, lineOf: (r: number | null) => number | undefined): CheckFinding[] {
  const out: CheckFinding[] = [];
  for (const n of NOISE) {
    const verbs = n.verbs.filter((v) => ['get', 'list', 'watch'].includes(v) || (n.id === 'leases' && v === 'update'));
    const probes: Probe[] = [];
    if (n.resources)
      probes.push(
        ...resourceProbes({ policy, resources: n.resources, verbs, identities: SYSTEM_IDENTITIES, namespaces: ['kube-system', 'kube-node-lease', 'default'] }),
      );
    for (const path of n.nonResourceURLs ?? [])
      for (const id of [...SYSTEM_IDENTITIES, ...GENERIC_IDENTITIES]) probes.push({ attrs: nonResourceRequest(id.user, 'get', path), who: id.label });
    const kept: Miss[] = [];
    for (const p of probes) {
      const d = evaluatePolicy(policy, p.attrs);
      if (isLogged(d, p.attrs)) kept.push({ probe: p, decision: d });
    }
    if (kept.length === 0) continue;
    const rules = [...new Set(kept.map((k) => k.decision.rule))];
    const f: CheckFinding = {
      severity: 'warning',
      rule: rules[0] ?? null,
      message: `${n.description} are logged (${rules.map((r) => ruleLabel(r)).join(', ')}), e.g. ${describeRequest(kept[0]!.probe.attrs, kept[0]!.probe.who)} at ${kept[0]!.decision.level}: this is among the highest-volume traffic of a cluster and tells little; add a level: None rule for it before the broader rules`,
      examples: pickExamples(kept),
    };
    const line = lineOf(rules[0] ?? null);
    if (line !== undefined) f.line = line;
    out.push(f);
  }
  return out;
}

function checkOmitRequestReceived(policy: Policy, lineOf: (r: number | null) => number | undefined): CheckFinding[] {
  if (policy.omitStages.includes('RequestReceived')) return [];
  const rules = policy.rules
    .map((r, i) => ({ r, i }))
    .filter(({ r }) => r.level !== 'None' && !r.omitStages.includes('RequestReceived'))
    .map(({ i }) => i);
  if (rules.length === 0) return [];
  const f: CheckFinding = {
    severity: 'note',
    rule: rules[0]!,
    message: `rule${rules.length > 1 ? 's' : ''} ${rules.join(', ')} write a RequestReceived event for every request as well as the ResponseComplete one, nearly doubling the volume for little value: add omitStages: ["RequestReceived"] at the policy level`,
  };
  const line = lineOf(rules[0]!);
  if (line !== undefined) f.line = line;
  return [f];
}

function logsSomething(policy: Policy): boolean {
  const all: Stage[] = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'];
  return policy.rules.some(
    (r) =>
      r.level !== 'None' &&
      ['Metadata', 'Request', 'RequestResponse'].includes(r.level) &&
      all.some((s) => !r.omitStages.includes(s) && !policy.omitStages.includes(s)),
  );
}

/** What every check may look at: the file as loaded, and the policy when kube-apiserver would load it. */
interface CheckInput {
  loaded: LoadedPolicy;
  /** The policy's validation errors (decoded policies only). */
  validation: ReturnType<typeof validatePolicy>;
  opts: CheckOptions;
  lineOfRule: (r: number | null) => number | undefined;
}

interface Check extends CheckDescription {
  /**
   * `file`: runs on whatever was loaded; `policy`: needs a policy kube-apiserver would load (else skipped). Returns
   * its findings, or why it was skipped.
   */
  needs: 'file' | 'policy';
  run(input: CheckInput, policy: Policy): CheckFinding[] | { skipped: string };
}

/** The line and rule index of a finding about a field path (`rules[3].level`). */
function atPath(path: string, line: number | undefined): { rule?: number; line?: number } {
  const rule = /^rules\[(\d+)\]/.exec(path);
  return { ...(rule ? { rule: Number(rule[1]) } : {}), ...(line !== undefined ? { line } : {}) };
}

const EXEC_SUBRESOURCES = ['exec', 'attach', 'portforward'];

/** Every check, in the order they run and report. */
const ALL_CHECKS: Check[] = [
  {
    id: 'invalid-policy',
    title: 'kube-apiserver accepts the policy',
    needs: 'file',
    run: ({ loaded, validation }) => [
      ...loaded.decodeErrors.map((e) => ({ severity: 'error' as const, message: e.message, path: e.path, ...(e.line !== undefined ? { line: e.line } : {}) })),
      ...validation.map((e) => ({ severity: 'error' as const, message: `${e.path}: ${e.message}`, path: e.path, ...atPath(e.path, loaded.lineOf(e.path)) })),
    ],
  },
  {
    id: 'unknown-field',
    title: 'no field is silently ignored',
    needs: 'file',
    run: ({ loaded }) =>
      loaded.unknownFields.map((u) => ({
        severity: 'error' as const,
        message: u.path ? `${u.path}: ${u.message}` : u.message,
        path: u.path,
        ...atPath(u.path, u.line),
      })),
  },
  {
    id: 'cis-3.2.1',
    title: 'CIS 3.2.1: a minimal audit policy is in place',
    needs: 'file',
    run: ({ loaded, validation }) => {
      if (!loaded.policy || validation.length > 0 || loaded.decodeErrors.length > 0) {
        return [{ severity: 'error', message: 'no audit policy is in effect: kube-apiserver would refuse this file (see the invalid-policy findings)' }];
      }
      if (!logsSomething(loaded.policy))
        return [{ severity: 'error', message: 'the policy logs nothing: every rule is level None or omits every stage; add a rule that logs at Metadata' }];
      return [];
    },
  },
  {
    id: 'cis-3.2.2-secrets-metadata-only',
    title: 'CIS 3.2.2: secrets, configmaps and token reviews are logged, at Metadata only',
    needs: 'policy',
    run: ({ lineOfRule }, policy) => checkSecrets(policy, lineOfRule),
  },
  {
    id: 'cis-3.2.2-workload-changes',
    title: 'CIS 3.2.2: changes to pods and deployments are logged',
    needs: 'policy',
    run: ({ lineOfRule }, policy) =>
      checkLogged(
        policy,
        resourceProbes({
          policy,
          resources: [
            { group: '', resource: 'pods' },
            { group: 'apps', resource: 'deployments' },
          ],
          verbs: ['create', 'update', 'patch', 'delete'],
          identities: GENERIC_IDENTITIES,
        }),
        lineOfRule,
        'log changes to pods and deployments at Metadata at least (Request to see what changed)',
      ),
  },
  {
    id: 'cis-3.2.2-exec-proxy',
    title: 'CIS 3.2.2: pods/exec, attach, portforward, proxy and services/proxy are logged',
    needs: 'policy',
    run: ({ lineOfRule }, policy) =>
      checkLogged(
        policy,
        [
          ...resourceProbes({
            policy,
            resources: EXEC_SUBRESOURCES.map((s) => ({ group: '', resource: 'pods', subresource: s })),
            verbs: ['create', 'get'],
            identities: GENERIC_IDENTITIES,
          }),
          ...resourceProbes({
            policy,
            resources: [
              { group: '', resource: 'pods', subresource: 'proxy' },
              { group: '', resource: 'services', subresource: 'proxy' },
            ],
            verbs: ['get', 'create', 'update', 'patch', 'delete'],
            identities: GENERIC_IDENTITIES,
          }),
        ],
        lineOfRule,
        'log pods/exec, pods/attach, pods/portforward, pods/proxy and services/proxy at Metadata at least',
      ),
  },
  {
    id: 'cis-3.2.2-catch-all',
    title: 'CIS 3.2.2: everything else is logged at Metadata at least',
    needs: 'policy',
    run: ({ lineOfRule }, policy) =>
      checkLogged(policy, catchAllProbes(policy), lineOfRule, 'end the policy with a catch-all rule (- level: Metadata) so that everything else is logged'),
  },
  {
    id: 'detection-blind-spot',
    title: 'every enabled detection sees the requests it needs',
    needs: 'policy',
    run: ({ opts, lineOfRule }, policy) =>
      opts.requirements
        ? checkBlindSpots(policy, opts.requirements, lineOfRule)
        : { skipped: opts.requirementsUnavailable ?? 'no detection requirements given' },
  },
  {
    id: 'workload-bodies',
    title: 'pod and workload writes are logged at Request, for the posture checks',
    needs: 'policy',
    run: ({ opts, lineOfRule }, policy) => checkWorkloadBodies(policy, opts.postureNamespaces, lineOfRule),
  },
  {
    id: 'shadowed-rule',
    title: 'every rule can match some request',
    needs: 'policy',
    run: ({ lineOfRule }, policy) =>
      findShadowedRules(policy).map((s) => {
        const line = lineOfRule(s.rule);
        return {
          severity: 'warning' as const,
          rule: s.rule,
          message: `rule ${s.rule} can never match: every request it covers is taken first by rule${s.by.length > 1 ? 's' : ''} ${s.by.join(', ')} (the first matching rule wins); move it up or remove it`,
          ...(line !== undefined ? { line } : {}),
        };
      }),
  },
  {
    id: 'omit-request-received',
    title: 'the RequestReceived stage is omitted',
    needs: 'policy',
    run: ({ lineOfRule }, policy) => checkOmitRequestReceived(policy, lineOfRule),
  },
  {
    id: 'noisy-reads',
    title: 'high-volume system reads are not logged',
    needs: 'policy',
    run: ({ lineOfRule }, policy) => checkNoisyReads(policy, lineOfRule),
  },
];

export const CHECKS: CheckDescription[] = ALL_CHECKS.map(({ id, title }) => ({ id, title }));

/** Runs every policy check. */
export function checkPolicy(loaded: LoadedPolicy, opts: CheckOptions = {}): CheckReport {
  const decoded = loaded.policy ?? loaded.decoded;
  const input: CheckInput = {
    loaded,
    validation: decoded ? validatePolicy(decoded) : [],
    opts,
    lineOfRule: (r) => (r === null ? undefined : loaded.ruleLines[r]),
  };
  const report: CheckReport = { source: loaded.source, findings: [], passed: [], skipped: [] };
  for (const check of ALL_CHECKS) {
    if (check.needs === 'policy' && !loaded.policy) {
      report.skipped.push({ id: check.id, reason: 'kube-apiserver would not load the file' });
      continue;
    }
    const out = check.run(input, loaded.policy!);
    if (!Array.isArray(out)) report.skipped.push({ id: check.id, reason: out.skipped });
    else if (out.length === 0) report.passed.push(check.id);
    else for (const f of out) report.findings.push({ id: check.id, ...f });
  }
  return report;
}
