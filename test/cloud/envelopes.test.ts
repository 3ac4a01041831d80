import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeRecord } from '../../src/events/decode.js';
import { aks } from '../../src/events/envelopes/aks.js';
import { eks } from '../../src/events/envelopes/eks.js';
import { forwarder } from '../../src/events/envelopes/forwarder.js';
import { gke, parseResourceName } from '../../src/events/envelopes/gke.js';
import { findEnvelope } from '../../src/events/envelopes/index.js';
import { ev } from '../helpers/events.js';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const dataMessage = (msgs: string[], group = '/aws/eks/prod/cluster') =>
  JSON.stringify({
    messageType: 'DATA_MESSAGE',
    owner: '1',
    logGroup: group,
    logStream: 'kube-apiserver-audit-1',
    subscriptionFilters: ['k'],
    logEvents: msgs.map((m, i) => ({ id: String(i), timestamp: 1, message: m })),
  });

/** Decoded items as [event auditID | error, cluster]. */
function decode(v: unknown, format?: string): (string | undefined)[][] {
  return decodeRecord({ value: v, where: 'test' }, format).map((d) => ('error' in d ? ['ERR ' + d.error, d.where] : [d.event.auditID, d.cluster]));
}

const logEntry = (over: Record<string, unknown> = {}, pp: Record<string, unknown> = {}) => ({
  insertId: 'i-1',
  logName: 'projects/p/logs/cloudaudit.googleapis.com%2Factivity',
  operation: { id: 'op-1', producer: 'k8s.io', first: true, last: true },
  protoPayload: {
    '@type': 'type.googleapis.com/google.cloud.audit.AuditLog',
    serviceName: 'k8s.io',
    methodName: 'io.k8s.core.v1.secrets.get',
    resourceName: 'core/v1/namespaces/prod/secrets/db',
    authenticationInfo: { principalEmail: 'bob@example.com' },
    requestMetadata: { callerIp: '198.51.100.1', callerSuppliedUserAgent: 'kubectl' },
    status: {},
    ...pp,
  },
  resource: { type: 'k8s_cluster', labels: { cluster_name: 'g1', location: 'eu', project_id: 'p' } },
  timestamp: '2026-11-02T10:00:00.123456Z',
  ...over,
});

describe('shape detection', () => {
  it('picks each envelope by shape, and none for a native event or an unknown object', () => {
    expect(findEnvelope({ events: [{ timestamp: 1, message: '{}', ingestionTime: 2 }] })?.name).toBe('eks');
    expect(findEnvelope(JSON.parse(dataMessage([])))?.name).toBe('eks');
    expect(findEnvelope({ requestId: 'r', timestamp: 1, records: [{ data: 'eA==' }] })?.name).toBe('eks');
    expect(findEnvelope(logEntry())?.name).toBe('gke');
    expect(findEnvelope({ message: { data: 'eA==', messageId: '1' }, subscription: 's' })?.name).toBe('gke');
    expect(findEnvelope({ records: [{ category: 'kube-audit', resourceId: 'x', properties: { log: '{}' } }] })?.name).toBe('aks');
    expect(findEnvelope({ category: 'kube-audit', time: 't', properties: { log: '{}' } })?.name).toBe('aks');
    expect(findEnvelope({ date: 1.5, log: '{"kind":"Event"}' })?.name).toBe('forwarder');
    expect(findEnvelope({ '@timestamp': 't', message: '{"a":1}' })?.name).toBe('forwarder');
    expect(findEnvelope({ message: 'plain text line' })).toBeUndefined();
    expect(findEnvelope({ hello: 'world' })).toBeUndefined();
  });

  it('a record of no envelope is a dead letter that says so', () => {
    expect(decode({ hello: 'world' })).toEqual([
      [expect.stringMatching(/not an audit event.*nor a record of any envelope \(eks, gke, aks, forwarder\)/), undefined],
    ]);
  });
});

describe('EKS', () => {
  it('unwraps exports, subscription payloads (gzipped too) and Firehose deliveries; cluster from the log group', () => {
    const a = ev();
    const b = ev();
    expect(decode({ events: [{ logStreamName: 's', timestamp: 1, message: JSON.stringify(a), ingestionTime: 2 }], searchedLogStreams: [] })).toEqual([
      [a.auditID, undefined],
    ]);
    expect(decode(JSON.parse(dataMessage([JSON.stringify(a), JSON.stringify(b)])))).toEqual([
      [a.auditID, 'prod'],
      [b.auditID, 'prod'],
    ]);
    // A gzipped payload as bytes (what a Kinesis stream or a queue carries).
    const gz = decodeRecord({ text: gzipSync(dataMessage([JSON.stringify(a)])), where: 'k' });
    expect(gz).toEqual([expect.objectContaining({ cluster: 'prod', envelope: 'eks', text: JSON.stringify(a) })]);
    const control = JSON.stringify({
      messageType: 'CONTROL_MESSAGE',
      owner: 'CloudwatchLogs',
      logGroup: '',
      logStream: '',
      subscriptionFilters: [],
      logEvents: [{ id: '', timestamp: 1, message: 'CWL CONTROL MESSAGE: Checking health of destination Firehose.' }],
    });
    expect(decode(JSON.parse(control))).toEqual([]);
    const firehose = {
      requestId: 'r',
      timestamp: 1,
      records: [
        { data: b64(gzipSync(control)) },
        { data: b64(gzipSync(dataMessage([JSON.stringify(a)]) + dataMessage([JSON.stringify(b)], '/aws/eks/other/cluster'))) },
      ],
    };
    expect(decode(firehose)).toEqual([
      [a.auditID, 'prod'],
      [b.auditID, 'other'],
    ]);
  });

  it('bad input: truncated gzip, base64 garbage, a message that is not JSON: each its own dead letter, the rest decoded', () => {
    const a = ev();
    const b = ev();
    const gz = gzipSync(dataMessage([JSON.stringify(a)]));
    const firehose = {
      requestId: 'r',
      timestamp: 1,
      records: [
        { data: b64(gzipSync(dataMessage([JSON.stringify(a)]))) },
        { data: b64(gz.subarray(0, gz.length - 12)) },
        { data: 'not base64 at all!' },
        { data: b64(gzipSync(dataMessage(['{"kind":"Event",', JSON.stringify(b)]))) },
      ],
    };
    expect(decode(firehose)).toEqual([
      [a.auditID, 'prod'],
      ['ERR eks: Firehose record data is truncated gzip (' + (gz.length - 12) + ' bytes)', 'records[1]'],
      ['ERR eks: Firehose record data is not valid base64', 'records[2]'],
      [expect.stringMatching(/^ERR eks: event text is not JSON/), 'records[3] logEvents[0]'],
      [b.auditID, 'prod'],
    ]);
    // A truncated gzip record (a Kafka message) is one clear dead letter.
    expect(decodeRecord({ text: gz.subarray(0, 20), where: 'k' })).toEqual([{ error: 'record is truncated gzip (20 bytes)' }]);
  });
});

describe('GKE', () => {
  it('maps a LogEntry back to an audit event', () => {
    const [d] = decodeRecord({ value: logEntry({ labels: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': 'RBAC' } }), where: 'x' });
    expect(d).toMatchObject({ cluster: 'g1', envelope: 'gke' });
    const e = (d as { event: Record<string, unknown> }).event;
    expect(e).toMatchObject({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      auditID: 'op-1',
      stage: 'ResponseComplete',
      level: 'Metadata',
      verb: 'get',
      requestURI: '/api/v1/namespaces/prod/secrets/db',
      user: { username: 'bob@example.com' },
      sourceIPs: ['198.51.100.1'],
      userAgent: 'kubectl',
      objectRef: { resource: 'secrets', namespace: 'prod', name: 'db', apiGroup: '', apiVersion: 'v1' },
      responseStatus: { code: 200 },
      requestReceivedTimestamp: '2026-11-02T10:00:00.123456Z',
      annotations: {
        'authorization.k8s.io/decision': 'allow',
        'authorization.k8s.io/reason': 'RBAC',
        'cloud.google.com/project-id': 'p',
        'cloud.google.com/location': 'eu',
        'cloud.google.com/cluster-name': 'g1',
      },
    });
  });

  it('exec: command and container from the PodExecOptions; first/last to stages; gRPC status to HTTP; denied from authorizationInfo', () => {
    const exec = logEntry(
      { operation: { id: 'op-2', first: true, last: false } },
      {
        methodName: 'io.k8s.core.v1.pods.exec.create',
        resourceName: 'core/v1/namespaces/prod/pods/web-0/exec',
        request: { '@type': 'core.k8s.io/v1.PodExecOptions', command: ['sh', '-c', 'id'], container: 'app', stdin: true },
      },
    );
    const e = (decodeRecord({ value: exec, where: 'x' })[0] as { event: Record<string, unknown> }).event;
    expect(e).toMatchObject({
      stage: 'ResponseStarted',
      verb: 'create',
      requestURI: '/api/v1/namespaces/prod/pods/web-0/exec?command=sh&command=-c&command=id&container=app&stdin=true',
      responseStatus: { code: 101 },
    });
    const denied = logEntry(
      {},
      { status: { code: 7, message: 'forbidden' }, authorizationInfo: [{ granted: false, permission: 'io.k8s.core.v1.secrets.get' }] },
    );
    const d = (decodeRecord({ value: denied, where: 'x' })[0] as { event: Record<string, unknown> }).event;
    expect(d).toMatchObject({
      responseStatus: { code: 403, message: 'forbidden', status: 'Failure' },
      annotations: { 'authorization.k8s.io/decision': 'forbid' },
    });
    const anon = logEntry({}, { authenticationInfo: { principalEmail: 'system:anonymous' } });
    expect((decodeRecord({ value: anon, where: 'x' })[0] as { event: Record<string, unknown> }).event.user).toEqual({
      username: 'system:anonymous',
      groups: ['system:unauthenticated'],
    });
  });

  it('resource names of every shape', () => {
    expect(parseResourceName('core/v1/secrets')).toEqual({ apiGroup: '', apiVersion: 'v1', resource: 'secrets' });
    expect(parseResourceName('core/v1/namespaces/kube-system')).toEqual({ apiGroup: '', apiVersion: 'v1', resource: 'namespaces', name: 'kube-system' });
    expect(parseResourceName('rbac.authorization.k8s.io/v1/clusterrolebindings/x')).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      apiVersion: 'v1',
      resource: 'clusterrolebindings',
      name: 'x',
    });
    expect(parseResourceName('apps/v1/namespaces/a/deployments')).toEqual({ apiGroup: 'apps', apiVersion: 'v1', namespace: 'a', resource: 'deployments' });
    expect(parseResourceName('healthz')).toBeUndefined();
  });

  it('bad input: a protoPayload of another service, of another type, Pub/Sub data that is garbage: clear dead letters', () => {
    expect(decode(logEntry({}, { serviceName: 'storage.googleapis.com', methodName: 'storage.objects.get' }))).toEqual([
      ['ERR gke: Cloud Audit Logs entry of service "storage.googleapis.com", not k8s.io: not a Kubernetes audit event', undefined],
    ]);
    expect(decode(logEntry({}, { '@type': 'type.googleapis.com/google.cloud.bigquery.logging.v1.AuditData' }))).toEqual([
      [expect.stringMatching(/^ERR gke: LogEntry protoPayload is "type.googleapis.com\/google.cloud.bigquery.logging.v1.AuditData", not /), undefined],
    ]);
    expect(decode({ message: { data: '%%%', messageId: '7' }, subscription: 's' })).toEqual([
      ['ERR gke: Pub/Sub message data is not valid base64', 'message 7'],
    ]);
    expect(decode({ message: { data: b64('{"trunc'), messageId: '8' }, subscription: 's' })).toEqual([
      [expect.stringMatching(/^ERR gke: Pub\/Sub message data is not JSON/), 'message 8'],
    ]);
    expect(decode({ message: { data: b64(JSON.stringify(logEntry())), messageId: '9' }, subscription: 's' })).toEqual([['op-1', 'g1']]);
  });
});

describe('AKS', () => {
  const rec = (log: unknown, category = 'kube-audit') => ({
    category,
    operationName: 'Microsoft.ContainerService/managedClusters/diagnosticLogs/Read',
    resourceId: '/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-1',
    properties: { log, stream: 'stdout' },
    time: 't',
  });
  it('unwraps records documents and single records; cluster from resourceId', () => {
    const a = ev();
    const b = ev();
    expect(decode({ records: [rec(JSON.stringify(a)), rec(JSON.stringify(b), 'kube-audit-admin')] })).toEqual([
      [a.auditID, 'aks-1'],
      [b.auditID, 'aks-1'],
    ]);
    expect(decode(rec(JSON.stringify(a)))).toEqual([[a.auditID, 'aks-1']]);
  });
  it('bad input: a properties.log that is not JSON, another category: each a dead letter, its neighbours kept', () => {
    const a = ev();
    expect(decode({ records: [rec('I1102 10:00:00 not json'), rec(JSON.stringify(a)), rec('{}', 'kube-apiserver'), rec(undefined)] })).toEqual([
      [expect.stringMatching(/^ERR aks: event text is not JSON/), 'records[0] properties.log'],
      [a.auditID, 'aks-1'],
      ['ERR aks: diagnostic record of category "kube-apiserver", not kube-audit or kube-audit-admin', 'records[2]'],
      ["ERR aks: diagnostic record properties.log is undefined, not the event's JSON text", 'records[3]'],
    ]);
    expect(aks.matches({ records: [] })).toBe(true);
  });
});

describe('forwarders', () => {
  it('takes the event from log, message or event.original, as text or object', () => {
    const a = ev();
    expect(decode({ date: 1.5, log: JSON.stringify(a) + '\n' })).toEqual([[a.auditID, undefined]]);
    expect(decode({ message: JSON.stringify(a), source_type: 'file' })).toEqual([[a.auditID, undefined]]);
    expect(decode({ '@version': '1', log: { file: { path: '/x' } }, event: { original: JSON.stringify(a) } })).toEqual([[a.auditID, undefined]]);
    expect(decode({ log: a })).toEqual([[a.auditID, undefined]]);
    expect(decode({ log: '{"kind":"Event", truncated' })).toEqual([[expect.stringMatching(/^ERR forwarder: event text is not JSON/), 'log']]);
    expect(forwarder.matches(a)).toBe(false);
    expect(eks.matches({ message: JSON.stringify(a) })).toBe(false);
    expect(gke.matches({ message: JSON.stringify(a) })).toBe(false);
  });
});
