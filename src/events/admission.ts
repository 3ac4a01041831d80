/**
 * The admission signals an audit event carries in its annotations, decoded: Pod Security admission's evaluation
 * (`pod-security.kubernetes.io/...`) and ValidatingAdmissionPolicy failures with the Audit action
 * (`validation.policy.admission.k8s.io/validation_failure`). Annotations kaudit does not know stay in the raw event.
 *
 * The formats, as k8s.io/pod-security-admission and k8s.io/apiserver write them:
 * - `enforce-policy`: the enforce policy a pod was checked against, `<level>:<version>` (`restricted:latest`,
 *   `baseline:v1.29`); written for pods only (workload templates are checked in audit and warn modes only).
 * - `audit-violations`: `would violate PodSecurity "<level>:<version>": <reason> (<detail>), <reason> ...`, for pods
 *   and for pod-spec-carrying workloads (Deployment, DaemonSet, Job, CronJob, ...), when the namespace's audit level
 *   is violated. Warn mode writes nothing to the audit log (its warnings go to the client).
 * - `exempt`: `user`, `namespace` or `runtimeClass`: the request skipped Pod Security by a configured exemption.
 * - `error`: the namespace's labels did not parse (`Failed to parse policy: ...`).
 * - An enforce denial is a 403 whose status message reads `... violates PodSecurity "<level>:<version>": ...`.
 * - `validation_failure`: a JSON array of {message, policy, binding, expressionIndex, validationActions}.
 */
import type { AdmissionSignals, PolicyFailure, PolicyLevel, PsaFindings, PsaViolation } from './admission-types.js';
import type { AuditEvent } from './types.js';

export type { AdmissionSignals, PolicyFailure, PolicyLevel, PsaFindings, PsaViolation } from './admission-types.js';

export const PSA_PREFIX = 'pod-security.kubernetes.io/';
export const PSA_ENFORCE_POLICY = 'pod-security.kubernetes.io/enforce-policy';
export const PSA_AUDIT_VIOLATIONS = 'pod-security.kubernetes.io/audit-violations';
export const PSA_EXEMPT = 'pod-security.kubernetes.io/exempt';
export const PSA_ERROR = 'pod-security.kubernetes.io/error';
export const POLICY_VALIDATION_FAILURE = 'validation.policy.admission.k8s.io/validation_failure';

/**
 * Pod Security's forbidden reasons, as its checks write them, with the check's id and the lowest level that forbids
 * it. `seccompProfile` and `procMount` are written by a baseline and a restricted check alike (see levelOf).
 */
const REASONS: readonly [reason: string, check: string, level: 'baseline' | 'restricted'][] = [
  ['allowPrivilegeEscalation != false', 'allowPrivilegeEscalation', 'restricted'],
  ['unrestricted capabilities', 'capabilities_restricted', 'restricted'],
  ['non-default capabilities', 'capabilities_baseline', 'baseline'],
  ['runAsNonRoot != true', 'runAsNonRoot', 'restricted'],
  ['runAsUser=0', 'runAsUser', 'restricted'],
  ['restricted volume types', 'restrictedVolumes', 'restricted'],
  ['seccompProfile', 'seccompProfile', 'restricted'],
  ['host namespaces', 'hostNamespaces', 'baseline'],
  ['hostPath volumes', 'hostPathVolumes', 'baseline'],
  ['hostPort', 'hostPorts', 'baseline'],
  ['privileged', 'privileged', 'baseline'],
  ['procMount', 'procMount', 'baseline'],
  ['seLinuxOptions', 'seLinuxOptions', 'baseline'],
  ['forbidden sysctls', 'sysctls', 'baseline'],
  ['hostProcess', 'windowsHostProcess', 'baseline'],
  ['forbidden AppArmor profiles', 'appArmorProfile', 'baseline'],
  ['forbidden AppArmor profile', 'appArmorProfile', 'baseline'],
  ['probe or lifecycle host', 'hostProbesAndHostLifecycle', 'baseline'],
];

/** Longest first, so that `hostPort` never takes the start of `hostPath volumes`' neighbours by accident. */
const BY_LENGTH = [...REASONS].sort((a, b) => b[0].length - a[0].length);

function levelOf(reason: string, detail: string, dflt: 'baseline' | 'restricted'): 'baseline' | 'restricted' {
  // The baseline seccomp check forbids only an explicit Unconfined profile; restricted also requires one to be set.
  if (reason === 'seccompProfile') return /Unconfined/.test(detail) ? 'baseline' : 'restricted';
  return dflt;
}

/** `restricted:latest` -> {level, version}; undefined when it is not that shape. */
export function parsePolicyLevel(v: string): PolicyLevel | undefined {
  const m = /^([a-z]+):(latest|v\d+\.\d+)$/.exec(v.trim());
  return m ? { level: m[1]!, version: m[2]! } : undefined;
}

/** The end of a parenthesised detail that opens at `open`: nesting and double-quoted names are skipped over. */
function closeParen(s: string, open: number): number {
  let depth = 0;
  let quoted = false;
  for (let i = open; i < s.length; i++) {
    const c = s[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  return -1;
}

/**
 * Splits Pod Security's forbidden detail (`reason (detail), reason, reason (detail)`) into its checks. A reason kaudit
 * does not know (a newer Pod Security) is kept as `unknown` up to the next comma outside parentheses.
 */
export function parseViolations(text: string, auditLevel: string): PsaViolation[] {
  const out: PsaViolation[] = [];
  let i = 0;
  while (i < text.length && out.length < 64) {
    while (text[i] === ' ' || text[i] === ',') i++;
    if (i >= text.length) break;
    const known = BY_LENGTH.find(([r]) => text.startsWith(r, i) && (i + r.length === text.length || text[i + r.length] === ' ' || text[i + r.length] === ','));
    let reason: string;
    let end: number;
    if (known) {
      reason = known[0];
      end = i + reason.length;
    } else {
      const p = text.indexOf(' (', i);
      const c = text.indexOf(', ', i);
      end = p >= 0 && (c < 0 || p < c) ? p : c >= 0 ? c : text.length;
      reason = text.slice(i, end);
    }
    let detail = '';
    if (text.startsWith(' (', end)) {
      const close = closeParen(text, end + 1);
      const stop = close < 0 ? text.length : close;
      detail = text.slice(end + 2, stop);
      end = close < 0 ? text.length : close + 1;
    }
    const baselineOnly = auditLevel === 'baseline';
    out.push({
      check: known ? known[1] : 'unknown',
      reason,
      detail,
      level: baselineOnly ? 'baseline' : known ? levelOf(reason, detail, known[2]) : 'restricted',
    });
    i = end;
  }
  return out;
}

const VIOLATES = /violates? PodSecurity "([a-z]+:(?:latest|v\d+\.\d+))": (.*)$/s;

function findings(text: string): PsaFindings | undefined {
  const m = VIOLATES.exec(text);
  const lv = m ? parsePolicyLevel(m[1]!) : undefined;
  return m && lv ? { ...lv, violations: parseViolations(m[2]!, lv.level) } : undefined;
}

function policyFailures(text: string): PolicyFailure[] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v)) return undefined;
  const out: PolicyFailure[] = [];
  for (const f of v.slice(0, 64)) {
    if (typeof f !== 'object' || f === null) continue;
    const r = f as Record<string, unknown>;
    out.push({
      policy: typeof r.policy === 'string' ? r.policy : '',
      binding: typeof r.binding === 'string' ? r.binding : '',
      message: typeof r.message === 'string' ? r.message : '',
      expressionIndex: typeof r.expressionIndex === 'number' ? r.expressionIndex : -1,
      actions: Array.isArray(r.validationActions) ? r.validationActions.filter((a): a is string => typeof a === 'string') : [],
    });
  }
  return out.length > 0 ? out : undefined;
}

/** The admission signals of an event, or undefined when it carries none (most events: a few property reads). */
export function decodeAdmission(ev: AuditEvent): AdmissionSignals | undefined {
  const a = ev.annotations;
  const status = ev.responseStatus;
  const deniedText = status?.code === 403 && typeof status.message === 'string' && status.message.includes('violates PodSecurity') ? status.message : undefined;
  if (!a && !deniedText) return undefined;
  let s: AdmissionSignals | undefined;
  if (a) {
    const enforce = a[PSA_ENFORCE_POLICY];
    const audit = a[PSA_AUDIT_VIOLATIONS];
    const exempt = a[PSA_EXEMPT];
    const error = a[PSA_ERROR];
    const vap = a[POLICY_VALIDATION_FAILURE];
    if (typeof enforce === 'string') {
      const lv = parsePolicyLevel(enforce);
      if (lv) (s ??= {}).enforcePolicy = lv;
    }
    if (typeof audit === 'string') {
      const f = findings(audit);
      if (f) (s ??= {}).audit = f;
    }
    if (typeof exempt === 'string' && exempt) (s ??= {}).exempt = exempt;
    if (typeof error === 'string' && error) (s ??= {}).error = error;
    if (typeof vap === 'string') {
      const f = policyFailures(vap);
      if (f) (s ??= {}).policyFailures = f;
    }
  }
  if (deniedText) {
    const f = findings(deniedText);
    if (f) (s ??= {}).denied = f;
  }
  return s;
}
