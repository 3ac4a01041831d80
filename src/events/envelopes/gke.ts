import { clusterName, decodeBase64, EnvelopeError, isObject, itemError, parseJsonOf, typeName } from './common.js';
import type { Envelope, EnvelopeItem } from './types.js';

/**
 * Google Kubernetes Engine audit logs: Cloud Logging `LogEntry`s whose `protoPayload` is a
 * `type.googleapis.com/google.cloud.audit.AuditLog` of service `k8s.io`, as `gcloud logging read --format=json`
 * prints them (an array), as a log sink writes them to Cloud Storage (one a line) and as a Pub/Sub push delivers them
 * (`{"message": {"data": base64 LogEntry, ...}, "subscription": ...}`). GKE never hands out the apiserver's own
 * event: each entry is mapped back to an `audit.k8s.io/v1` Event here (what cannot be given back: see the README,
 * "What a GKE LogEntry cannot give back").
 */

const AUDIT_LOG_TYPE = 'type.googleapis.com/google.cloud.audit.AuditLog';

/** google.rpc.Code to the HTTP status the apiserver would have answered (the mapping of google.rpc's code.proto). */
const GRPC_TO_HTTP: Record<number, number> = {
  0: 200,
  1: 499,
  2: 500,
  3: 400,
  4: 504,
  5: 404,
  6: 409,
  7: 403,
  8: 429,
  9: 400,
  10: 409,
  11: 400,
  12: 501,
  13: 500,
  14: 503,
  15: 500,
  16: 401,
};

const STREAMING = new Set(['exec', 'attach', 'portforward']);

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

interface Ref {
  apiGroup: string;
  apiVersion: string;
  resource?: string;
  namespace?: string;
  name?: string;
  subresource?: string;
}

/**
 * `core/v1/namespaces/NS/pods/NAME/exec`, `rbac.authorization.k8s.io/v1/clusterrolebindings/NAME`, `core/v1/secrets`
 * (a cluster-wide list), `core/v1/namespaces/NS` (a namespace) to an objectRef. Undefined for other shapes
 * (non-resource paths such as `healthz`).
 */
export function parseResourceName(rn: string): Ref | undefined {
  // Cut at each '/' by hand: split and slice were a third of the mapping's time, on every entry.
  const p: string[] = [];
  let from = 0;
  for (;;) {
    const slash = rn.indexOf('/', from);
    const end = slash < 0 ? rn.length : slash;
    if (end === from || p.length === 7) return undefined;
    p.push(rn.slice(from, end));
    if (slash < 0) break;
    from = slash + 1;
  }
  if (p.length < 3) return undefined;
  const apiGroup = p[0] === 'core' ? '' : p[0]!;
  const ref: Ref = { apiGroup, apiVersion: p[1]! };
  let i = 2;
  if (p[2] === 'namespaces' && p.length >= 5) {
    ref.namespace = p[3];
    i = 4;
  }
  if (p.length - i > 3) return undefined;
  ref.resource = p[i];
  if (p[i + 1] !== undefined) ref.name = p[i + 1];
  if (p[i + 2] !== undefined) ref.subresource = p[i + 2];
  return ref;
}

function requestPath(ref: Ref, rn: string): string {
  if (!ref.resource) return '/' + rn;
  let path = ref.apiGroup === '' ? `/api/${ref.apiVersion}` : `/apis/${ref.apiGroup}/${ref.apiVersion}`;
  if (ref.namespace !== undefined) path += `/namespaces/${ref.namespace}`;
  path += `/${ref.resource}`;
  if (ref.name !== undefined) path += `/${ref.name}`;
  if (ref.subresource !== undefined) path += `/${ref.subresource}`;
  return path;
}

/** `rbac.authorization.k8s.io/v1.ClusterRoleBinding` -> apiVersion and kind (`core.k8s.io/v1.Pod` -> `v1`, `Pod`). */
function typeOf(t: unknown): { apiVersion: string; kind: string } | undefined {
  if (typeof t !== 'string') return undefined;
  const dot = t.lastIndexOf('.');
  const slash = t.lastIndexOf('/');
  if (dot < 0 || slash < 0 || dot < slash) return undefined;
  const gv = t.slice(0, dot);
  const kind = t.slice(dot + 1);
  const apiVersion = gv.startsWith('core.k8s.io/') ? gv.slice('core.k8s.io/'.length) : gv;
  return { apiVersion, kind };
}

/** A request or response body: without the protobuf `@type`, with apiVersion and kind from it when absent. */
function body(v: unknown): Record<string, unknown> | undefined {
  if (!isObject(v)) return undefined;
  const { ['@type']: t, ...rest } = v;
  const tk = typeOf(t);
  if (tk && rest.kind === undefined) return { apiVersion: tk.apiVersion, kind: tk.kind, ...rest };
  return rest;
}

/** Groups the apiserver always gives these identities (GKE logs only the principal). */
function impliedGroups(user: string): string[] | undefined {
  if (!user.startsWith('system:')) return undefined;
  if (user === 'system:anonymous') return ['system:unauthenticated'];
  if (user.startsWith('system:serviceaccount:')) {
    const ns = user.slice('system:serviceaccount:'.length, user.indexOf(':', 'system:serviceaccount:'.length));
    if (ns) return ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'];
  }
  if (user.startsWith('system:node:')) return ['system:nodes', 'system:authenticated'];
  return undefined;
}

/** Cluster names of the resource labels seen (a handful per deployment), so each entry does not sanitise it again. */
const clusters = new Map<string, string | undefined>();
function clusterOf(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (clusters.has(raw)) return clusters.get(raw);
  const c = clusterName(raw);
  if (clusters.size < 1000) clusters.set(raw, c);
  return c;
}

function query(execOpts: Record<string, unknown> | undefined): string {
  if (!execOpts) return '';
  const q = new URLSearchParams();
  if (Array.isArray(execOpts.command)) for (const c of execOpts.command) if (typeof c === 'string') q.append('command', c);
  if (typeof execOpts.container === 'string') q.append('container', execOpts.container);
  for (const k of ['stdin', 'stdout', 'stderr', 'tty'] as const) if (typeof execOpts[k] === 'boolean') q.append(k, String(execOpts[k]));
  const s = q.toString();
  return s ? '?' + s : '';
}

/** A LogEntry to an audit.k8s.io/v1 Event, or an EnvelopeError saying why it is not a Kubernetes audit entry. */
export function logEntryToEvent(e: Record<string, unknown>): { event: Record<string, unknown>; cluster?: string } {
  const pp = e.protoPayload;
  if (!isObject(pp)) throw new EnvelopeError(`LogEntry protoPayload is ${typeName(pp)}, not an object`);
  if (pp['@type'] !== AUDIT_LOG_TYPE) throw new EnvelopeError(`LogEntry protoPayload is ${JSON.stringify(pp['@type'])}, not ${AUDIT_LOG_TYPE}`);
  if (pp.serviceName !== 'k8s.io')
    throw new EnvelopeError(`Cloud Audit Logs entry of service ${JSON.stringify(pp.serviceName)}, not k8s.io: not a Kubernetes audit event`);
  const method = str(pp.methodName);
  if (!method) throw new EnvelopeError('GKE audit entry lacks protoPayload.methodName');
  const time = str(e.timestamp) ?? str(e.receiveTimestamp);
  if (!time) throw new EnvelopeError('GKE audit entry lacks timestamp');
  const op = isObject(e.operation) ? e.operation : {};
  const auditID = str(op.id) ?? str(e.insertId);
  if (!auditID) throw new EnvelopeError('GKE audit entry has neither operation.id nor insertId');
  const verb = method.slice(method.lastIndexOf('.') + 1);
  const rn = str(pp.resourceName) ?? '';
  const ref = rn ? parseResourceName(rn) : undefined;
  const request = body(pp.request);
  const response = body(pp.response);
  const execOpts = ref?.subresource && STREAMING.has(ref.subresource) ? request : undefined;
  const auth = isObject(pp.authenticationInfo) ? pp.authenticationInfo : {};
  const username = str(auth.principalEmail) ?? str(auth.principalSubject) ?? '';
  const meta = isObject(pp.requestMetadata) ? pp.requestMetadata : {};
  const status = isObject(pp.status) ? pp.status : {};
  const grpc = typeof status.code === 'number' ? status.code : 0;
  let code = GRPC_TO_HTTP[grpc] ?? 500;
  if (grpc === 0) code = ref?.subresource && STREAMING.has(ref.subresource) ? 101 : verb === 'create' ? 201 : 200;
  const labels = isObject(e.labels) ? e.labels : {};
  const annotations: Record<string, string> = {};
  for (const k in labels) {
    const v = labels[k];
    if (typeof v === 'string') annotations[k] = v;
  }
  if (annotations['authorization.k8s.io/decision'] === undefined && Array.isArray(pp.authorizationInfo) && pp.authorizationInfo.length > 0) {
    const granted = pp.authorizationInfo.every((a) => isObject(a) && a.granted === true);
    annotations['authorization.k8s.io/decision'] = granted ? 'allow' : 'forbid';
  }
  const res = isObject(e.resource) && isObject(e.resource.labels) ? e.resource.labels : {};
  const project = str(res.project_id);
  const location = str(res.location);
  const gkeCluster = str(res.cluster_name);
  if (project) annotations['cloud.google.com/project-id'] = project;
  if (location) annotations['cloud.google.com/location'] = location;
  if (gkeCluster) annotations['cloud.google.com/cluster-name'] = gkeCluster;
  if (str(e.insertId)) annotations['logging.googleapis.com/insert-id'] = e.insertId as string;
  const stage = op.first === true && op.last !== true ? 'ResponseStarted' : 'ResponseComplete';
  const groups = impliedGroups(username);
  const event: Record<string, unknown> = {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: response ? 'RequestResponse' : request ? 'Request' : 'Metadata',
    auditID,
    stage,
    requestURI: (ref ? requestPath(ref, rn) : '/' + rn) + query(execOpts),
    verb,
    user: groups ? { username, groups } : { username },
  };
  const ip = str(meta.callerIp);
  if (ip) event.sourceIPs = [ip];
  const ua = str(meta.callerSuppliedUserAgent);
  if (ua) event.userAgent = ua;
  if (ref?.resource) {
    const o: Record<string, string> = { resource: ref.resource };
    if (ref.namespace !== undefined) o.namespace = ref.namespace;
    if (ref.name !== undefined) o.name = ref.name;
    o.apiGroup = ref.apiGroup;
    o.apiVersion = ref.apiVersion;
    if (ref.subresource !== undefined) o.subresource = ref.subresource;
    event.objectRef = o;
  }
  const rs: Record<string, unknown> = { metadata: {}, code };
  if (str(status.message)) rs.message = status.message;
  if (code >= 400) rs.status = 'Failure';
  event.responseStatus = rs;
  if (request && !execOpts) event.requestObject = request;
  if (response) event.responseObject = response;
  event.requestReceivedTimestamp = time;
  event.stageTimestamp = time;
  event.annotations = annotations;
  return { event, cluster: clusterOf(gkeCluster) };
}

function isLogEntry(o: Record<string, unknown>): boolean {
  return isObject(o.protoPayload) && ('logName' in o || 'insertId' in o || 'resource' in o || 'timestamp' in o);
}

function isPush(o: Record<string, unknown>): boolean {
  return isObject(o.message) && 'data' in o.message && (typeof o.subscription === 'string' || typeof o.message.messageId === 'string');
}

function entryItems(v: unknown, where: string | undefined, out: EnvelopeItem[]): void {
  try {
    if (!isObject(v) || !isLogEntry(v))
      throw new EnvelopeError(`not a Cloud Logging LogEntry with a protoPayload (a JSON ${typeName(v)}${isObject(v) ? ' without protoPayload' : ''})`);
    const { event, cluster } = logEntryToEvent(v);
    const item: EnvelopeItem = { value: event };
    if (cluster !== undefined) item.cluster = cluster;
    if (where !== undefined) item.where = where;
    out.push(item);
  } catch (e) {
    out.push(itemError(e, where));
  }
}

export const gke: Envelope = {
  name: 'gke',
  matches(v) {
    return isObject(v) && (isLogEntry(v) || isPush(v));
  },
  unwrap(v) {
    const out: EnvelopeItem[] = [];
    if (isObject(v) && isPush(v)) {
      const where = `message ${String((v.message as Record<string, unknown>).messageId ?? '')}`.trim();
      try {
        const data = decodeBase64((v.message as Record<string, unknown>).data, 'Pub/Sub message data');
        entryItems(parseJsonOf(data.toString('utf8'), 'Pub/Sub message data'), where, out);
      } catch (e) {
        out.push(itemError(e, where));
      }
      return out;
    }
    entryItems(v, undefined, out);
    return out;
  },
};
