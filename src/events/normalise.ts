import { decodeAdmission } from './admission.js';
import { redactEvent, type RedactionOptions } from './redact.js';
import { parseMicros } from './time.js';
import type { AuditEvent, Decision, NormalisedEvent } from './types.js';

export const DECISION_ANNOTATION = 'authorization.k8s.io/decision';

/** Query parameters of an exec/attach/log request URI: `command` (repeated, one per argv word) and `container`. */
export function execParams(requestURI: string): { command: string; container: string } {
  const q = requestURI.indexOf('?');
  if (q < 0) return { command: '', container: '' };
  const params = new URLSearchParams(requestURI.slice(q + 1));
  return { command: params.getAll('command').join(' '), container: params.get('container') ?? '' };
}

/**
 * Turns a validated audit event into the indexed shape every later stage shares. Redacts secret values first, so
 * nothing downstream (detection, store, output) ever sees them. `text` is the event's original JSON, reused as the
 * stored raw form when nothing was redacted.
 */
export function normalise(ev: AuditEvent, cluster: string, redaction: RedactionOptions, text?: string): NormalisedEvent {
  const changed = redactEvent(ev, redaction);
  const ref = ev.objectRef;
  const timeMicros = parseMicros(ev.requestReceivedTimestamp);
  const sub = ref?.subresource ?? '';
  const resource = ref?.resource ?? '';
  let command = '';
  let container = '';
  if (resource === 'pods' && (sub === 'exec' || sub === 'attach' || sub === 'log' || sub === 'portforward')) {
    ({ command, container } = execParams(ev.requestURI));
  }
  const decision = ev.annotations?.[DECISION_ANNOTATION];
  return {
    cluster,
    auditID: ev.auditID,
    stage: ev.stage,
    level: ev.level,
    timeMicros,
    // The apiserver's own text (RFC 3339, microseconds); formatting it again would only allocate.
    time: ev.requestReceivedTimestamp,
    verb: ev.verb,
    user: ev.user?.username ?? '',
    groups: ev.user?.groups ?? [],
    impersonatedUser: ev.impersonatedUser?.username ?? '',
    sourceIP: ev.sourceIPs?.[0] ?? '',
    userAgent: ev.userAgent ?? '',
    apiGroup: ref?.apiGroup ?? '',
    apiVersion: ref?.apiVersion ?? '',
    resource,
    subresource: sub,
    namespace: ref?.namespace ?? '',
    name: ref?.name ?? '',
    code: typeof ev.responseStatus?.code === 'number' ? ev.responseStatus.code : 0,
    decision: decision === 'allow' || decision === 'forbid' ? (decision as Decision) : '',
    command,
    container,
    admission: decodeAdmission(ev),
    event: ev,
    raw: changed || text === undefined ? JSON.stringify(ev) : text,
  };
}
