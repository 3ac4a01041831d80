/**
 * The audit.k8s.io versions kaudit reads. The apiserver writes v1 (the only version since Kubernetes 1.24); v1beta1
 * was the default from 1.8 to 1.11 and its logs are still around, with the same event fields. v1alpha1 (1.7) events
 * lack requestReceivedTimestamp and are not read. One rule for every path: a log line, a document, an EventList, a
 * webhook body, a Kafka message.
 */
export const AUDIT_API_VERSIONS = ['audit.k8s.io/v1', 'audit.k8s.io/v1beta1'] as const;

/** The version an EventList's items take when neither they nor the list name one (what the apiserver writes). */
export const DEFAULT_AUDIT_API_VERSION = 'audit.k8s.io/v1';

// Comparisons rather than a Set lookup: this runs once per event, on strings fresh from JSON.parse.
export function isAuditApiVersion(v: unknown): v is string {
  return v === 'audit.k8s.io/v1' || v === 'audit.k8s.io/v1beta1';
}

/** Why an apiVersion is refused, for error messages that read the same on every path. */
export function apiVersionProblem(v: unknown): string {
  return `apiVersion ${JSON.stringify(v)} is not audit.k8s.io/v1 or v1beta1 (the audit versions kaudit reads)`;
}
