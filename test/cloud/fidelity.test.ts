import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/events.js';

/**
 * The managed clusters' exports of one scenario (fixtures/cloud, written by make.mjs) answer the analyst questions and
 * fire the rules exactly as the native log does, through the built CLI and a real SQLite store.
 */
const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;
const FIX = new URL('../../fixtures/cloud/', import.meta.url).pathname;

function kaudit(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, KAUDIT_LOG_LEVEL: 'warn' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const rows = (out: string) =>
  out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const pick = (r: Record<string, unknown>, keys: string[]) => Object.fromEntries(keys.map((k) => [k, r[k]]));
const KEYS = ['user', 'namespace', 'name', 'command', 'container', 'sourceIP', 'verb', 'resource', 'code', 'decision'];

function answers(db: string) {
  const q = (what: string) => rows(kaudit(['query', what, '--db', db, '--format', 'json']).out);
  return {
    exec: q('exec').map((r) => pick(r, KEYS)),
    secretReads: q('secret-reads').map((r) => pick(r, KEYS)),
    rbac: q('rbac-changes').map((r) => pick(r, KEYS)),
    rules: q('alerts')
      .map((r) => r.rule as string)
      .sort(),
    clusters: [...new Set(rows(kaudit(['query', 'events', '--db', db, '--format', 'json', '--limit', '1000']).out).map((r) => r.cluster))],
  };
}

function ingest(dir: string, name: string, file: string, extra: string[] = []) {
  const db = join(dir, `${name}.db`);
  const r = kaudit(['ingest', '--db', db, ...extra, join(FIX, file)]);
  expect(r.code, r.err).toBe(0);
  return { db, summary: r.err };
}

describe('managed-cluster exports decode to the native answers', () => {
  const dir = tempDir('kaudit-fidelity-');
  let native: ReturnType<typeof answers>;

  it('the native reference', () => {
    const { db, summary } = ingest(dir, 'native', 'native/audit.log', ['--cluster', 'ref']);
    expect(summary).toMatch(/stored 23 events, skipped 0 duplicates, 0 bad records/);
    native = answers(db);
    expect(native.exec).toEqual([
      expect.objectContaining({
        user: 'alice@example.com',
        namespace: 'shop',
        name: 'cart-7d9f',
        command: 'sh -c cat /etc/shadow',
        container: 'app',
        sourceIP: '203.0.113.10',
      }),
    ]);
    expect(native.secretReads.map((r) => [r.user, r.verb, r.namespace, r.name])).toEqual([
      ['system:serviceaccount:tools:scanner', 'list', '', ''],
      ['bob@example.com', 'get', 'shop', 'db-password'],
    ]);
    expect(native.rbac).toEqual([expect.objectContaining({ user: 'mallory@example.com', name: 'mallory-admin', sourceIP: '192.0.2.66' })]);
    expect(native.rules).toEqual([
      'anonymous-request-allowed',
      'cluster-admin-binding',
      'pod-exec',
      'pod-exec-suspicious-command',
      'pod-privileged',
      // The privileged pod's spec also fails the info-level posture checks (detections/posture.yaml).
      'posture-default-serviceaccount',
      'posture-image-digest',
      'posture-run-as-non-root',
      'posture-token-automount',
      'rolebinding-created',
      'secret-list',
      'secret-read',
      'workload-after-rbac-change',
    ]);
  });

  it.each([
    ['eks filter-log-events export', 'eks/filter-log-events.json', 'ref', ['--cluster', 'ref']],
    ['eks Firehose delivery', 'eks/firehose-request.json', 'eks-prod', []],
    ['gke gcloud logging read', 'gke/logging-read.json', 'gke-prod', []],
    ['gke log sink (Cloud Storage)', 'gke/sink-storage.json', 'gke-prod', []],
    ['gke Pub/Sub push bodies', 'gke/pubsub-push.ndjson', 'gke-prod', []],
    ['aks Event Hubs records', 'aks/eventhub-records.json', 'aks-prod', []],
    ['aks storage blob', 'aks/insights-logs-kube-audit.json', 'aks-prod', []],
    ['Fluent Bit', 'forwarder/fluent-bit.json', 'default', []],
    ['Vector', 'forwarder/vector.ndjson', 'default', []],
    ['Logstash', 'forwarder/logstash.json', 'default', []],
  ])('%s', (name, file, cluster, extra) => {
    const { db, summary } = ingest(dir, name.replace(/\W+/g, '-'), file, extra);
    expect(summary).toMatch(/stored 23 events, skipped 0 duplicates, 0 bad records/);
    const a = answers(db);
    expect(a.exec).toEqual(native.exec);
    expect(a.secretReads).toEqual(native.secretReads);
    expect(a.rbac).toEqual(native.rbac);
    expect(a.rules).toEqual(native.rules);
    expect(a.clusters).toEqual([cluster]);
  });

  it('a subscription payload file (gzipped DATA_MESSAGE) takes its cluster from the log group', () => {
    const { db, summary } = ingest(dir, 'sub', 'eks/subscription-data-message.json.gz');
    expect(summary).toMatch(/stored 12 events, skipped 0 duplicates, 0 bad records/);
    expect(answers(db).clusters).toEqual(['eks-prod']);
  });

  it('--cluster wins over the envelope; --format native refuses an envelope with a reason', () => {
    const { db } = ingest(dir, 'pinned', 'aks/eventhub-records.json', ['--cluster', 'mine']);
    expect(answers(db).clusters).toEqual(['mine']);
    const forced = ingest(dir, 'forced', 'aks/insights-logs-kube-audit.json', ['--format', 'native']);
    expect(forced.summary).toMatch(/stored 0 events, skipped 0 duplicates, 23 bad records/);
    const dl = rows(kaudit(['query', 'dead-letters', '--db', forced.db, '--format', 'json']).out);
    expect(dl[0]!.reason).toMatch(/not an audit event/);
    const wrong = ingest(dir, 'wrong', 'aks/insights-logs-kube-audit.json', ['--format', 'gke']);
    expect(wrong.summary).toMatch(/23 bad records/);
    expect(rows(kaudit(['query', 'dead-letters', '--db', wrong.db, '--format', 'json']).out)[0]!.reason).toMatch(/^gke: not a record of this format/);
    expect(kaudit(['ingest', '--db', join(dir, 'x.db'), '--format', 'cloudtrail', join(FIX, 'native/audit.log')]).code).toBe(2);
  });

  it('kaudit detect fires the same rules on every export as on the native log', () => {
    const fired = (file: string) =>
      rows(kaudit(['detect', join(FIX, file), '--quiet']).out)
        .map((a) => a.rule)
        .sort();
    const ref = fired('native/audit.log');
    expect(ref).toEqual(native.rules);
    for (const f of [
      'eks/filter-log-events.json',
      'eks/firehose-request.json',
      'gke/logging-read.json',
      'aks/eventhub-records.json',
      'forwarder/vector.ndjson',
    ])
      expect(fired(f), f).toEqual(ref);
  });
});
