/**
 * The admission table's rows for one event (see schema.ts, migration 4): one per Pod Security violation (audit mode
 * or an enforce denial), per exemption, per parse error and per admission-policy audit failure, each naming the
 * workload written and its owner. Built on the ingest side when an event is packed (they are rare: pod and workload
 * writes in namespaces labelled for audit), carried to the writer thread as JSON beside the batch.
 */
import { workloadOf } from '../events/workload.js';
import type { NormalisedEvent } from '../events/types.js';

/** admission.signal values. */
export const ADMISSION_SIGNALS = { psaAudit: 1, psaDenied: 2, psaExempt: 3, policyAudit: 4, psaError: 5 } as const;
export type AdmissionSignalName = keyof typeof ADMISSION_SIGNALS;

export interface AdmissionRow {
  signal: number;
  time: number;
  cluster: string;
  namespace: string;
  user: string;
  auditID: string;
  verb: string;
  code: number;
  objectKind: string;
  objectName: string;
  ownerKind: string;
  ownerName: string;
  /** Pod Security: the policy level and version (`restricted`, `latest`); a policy failure: empty. */
  level: string;
  version: string;
  /** Pod Security's check id; a policy failure: `<policy>#<expressionIndex>`; an exemption: its kind. */
  check: string;
  /** The lowest level a Pod Security violation breaks (`baseline` or `restricted`). */
  violationLevel: string;
  /** Pod Security's reason and detail; a policy failure's message; a parse error's text. */
  reason: string;
  detail: string;
  policy: string;
  binding: string;
}

/** Rows for an event's decoded admission signals; empty when it has none or is not the request's final stage. */
export function admissionRows(e: NormalisedEvent): AdmissionRow[] {
  const a = e.admission;
  // Annotations are complete only on the final stage: counting that one keeps a request from counting twice.
  if (!a || (e.stage !== 'ResponseComplete' && e.stage !== 'Panic')) return [];
  const w = workloadOf(e.event);
  const base = {
    time: e.timeMicros,
    cluster: e.cluster,
    namespace: e.namespace,
    user: e.user,
    auditID: e.auditID,
    verb: e.verb,
    code: e.code,
    objectKind: w.object.kind,
    objectName: w.object.name,
    ownerKind: w.owner.kind,
    ownerName: w.owner.name,
    level: '',
    version: '',
    check: '',
    violationLevel: '',
    reason: '',
    detail: '',
    policy: '',
    binding: '',
  };
  const out: AdmissionRow[] = [];
  for (const [signal, f] of [
    [ADMISSION_SIGNALS.psaAudit, a.audit],
    [ADMISSION_SIGNALS.psaDenied, a.denied],
  ] as const) {
    if (!f) continue;
    for (const v of f.violations) {
      out.push({ ...base, signal, level: f.level, version: f.version, check: v.check, violationLevel: v.level, reason: v.reason, detail: v.detail });
    }
  }
  if (a.exempt)
    out.push({ ...base, signal: ADMISSION_SIGNALS.psaExempt, check: a.exempt, level: a.enforcePolicy?.level ?? '', version: a.enforcePolicy?.version ?? '' });
  if (a.error) out.push({ ...base, signal: ADMISSION_SIGNALS.psaError, reason: a.error });
  for (const p of a.policyFailures ?? []) {
    out.push({
      ...base,
      signal: ADMISSION_SIGNALS.policyAudit,
      check: `${p.policy}#${p.expressionIndex}`,
      reason: p.message,
      policy: p.policy,
      binding: p.binding,
      detail: p.actions.join(','),
    });
  }
  return out;
}
