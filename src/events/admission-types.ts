/** The admission signals decoded from an audit event's annotations (see admission.ts for the formats). */

export type PsaLevel = 'privileged' | 'baseline' | 'restricted';

export interface PolicyLevel {
  level: PsaLevel | string;
  /** `latest` or `v1.<minor>`. */
  version: string;
}

/** One failed Pod Security check. */
export interface PsaViolation {
  /** Pod Security's check id (`privileged`, `hostPathVolumes`, `runAsNonRoot` ...), or `unknown` for a reason kaudit does not know. */
  check: string;
  /** The reason as written (`runAsNonRoot != true`). */
  reason: string;
  /** The detail in parentheses after it (the containers, volumes, ports named), if any. */
  detail: string;
  /** The lowest level that forbids it: a `baseline` violation also breaks a namespace enforcing baseline. */
  level: 'baseline' | 'restricted';
}

export interface PsaFindings extends PolicyLevel {
  violations: PsaViolation[];
}

export interface PolicyFailure {
  policy: string;
  binding: string;
  message: string;
  expressionIndex: number;
  actions: string[];
}

export interface AdmissionSignals {
  enforcePolicy?: PolicyLevel;
  /** Audit mode: what enforcing the namespace's audit level would have refused. */
  audit?: PsaFindings;
  /** Enforce mode refused the request. */
  denied?: PsaFindings;
  exempt?: string;
  error?: string;
  policyFailures?: PolicyFailure[];
}
