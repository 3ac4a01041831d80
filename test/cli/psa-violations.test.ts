import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { startServe, type Running } from '../../src/cli/serve.js';
import { tempDir } from '../helpers/events.js';

// The migration question, asked of a realistic scenario (fixtures/admission/generate.mjs): what would break if a
// namespace enforced restricted tomorrow, and who deploys it? Ingested and asked through the built CLI, as users
// run it, and through the HTTP API of a real server.
const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;
const FIXTURE = new URL('../../fixtures/admission/migration.jsonl', import.meta.url).pathname;

function kaudit(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, KAUDIT_LOG_LEVEL: 'warn' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const json = (out: string) =>
  out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, any>);

let db = '';
beforeAll(() => {
  db = join(tempDir(), 'k.db');
  const r = kaudit(['ingest', '--db', db, FIXTURE]);
  expect(r.code).toBe(0);
  expect(r.err).toMatch(/stored 37 events/);
});

describe('kaudit query psa-violations (a Pod Security migration)', { timeout: 60_000 }, () => {
  it('lists, per owning workload and check, what enforcing restricted in shop would refuse, and who deploys it', () => {
    const r = kaudit(['query', 'psa-violations', '--db', db, '--namespace', 'shop', '--since', '2026-11-01', '--format', 'json']);
    expect(r.code).toBe(0);
    const rows = json(r.out);
    const owners = [...new Set(rows.map((x) => `${x.ownerKind}/${x.ownerName}`))];
    // The compliant api Deployment is absent; the pods of web, log-agent and nightly-report count under them.
    expect(owners.sort()).toEqual(['CronJob/nightly-report', 'DaemonSet/log-agent', 'Deployment/web', 'Pod/debug']);
    // Baseline breakers first: they break even a baseline namespace.
    expect(rows.slice(0, 2).map((x) => `${x.ownerName} ${x.check} ${x.violationLevel}`)).toEqual([
      'log-agent hostPathVolumes baseline',
      'debug privileged baseline',
    ]);
    const web = rows.find((x) => x.ownerName === 'web' && x.check === 'runAsNonRoot')!;
    expect(web).toMatchObject({
      policy: 'restricted:latest',
      requests: 11,
      denied: 0,
      userCount: 3,
      firstSeen: '2026-11-02T08:10:00.000000Z',
      lastSeen: '2026-11-05T07:00:00.000000Z',
    });
    // Who deploys it: Argo CD, most recently; the controllers made its ReplicaSet and pods.
    expect(web.users[0]).toBe('system:serviceaccount:argocd:argocd-application-controller');
    expect(web.users).toContain('system:serviceaccount:kube-system:replicaset-controller');
    expect(web.detail).toBe('pod or container "web" must set securityContext.runAsNonRoot=true');
    const report = rows.filter((x) => x.ownerName === 'nightly-report').map((x) => x.check);
    expect(report.sort()).toEqual(['allowPrivilegeEscalation', 'capabilities_restricted']);
    expect(rows.find((x) => x.ownerName === 'debug' && x.check === 'privileged')).toMatchObject({ users: ['carol@example.com'], requests: 2 });
  });

  it('narrows to what breaks baseline, counts refusals, and shows admission-policy failures and exemptions on request', () => {
    const base = json(kaudit(['query', 'psa-violations', '--db', db, '--level', 'baseline', '--since', '2026-11-01', '--format', 'json']).out);
    expect(base.map((x) => `${x.namespace} ${x.ownerKind}/${x.ownerName} ${x.check}`)).toEqual([
      'batch Job/migrate hostPorts',
      'shop DaemonSet/log-agent hostPathVolumes',
      'shop Pod/debug privileged',
    ]);
    const payments = json(kaudit(['query', 'psa-violations', '--db', db, '--namespace', 'pay*', '--since', '2026-11-01', '--format', 'json']).out);
    expect(payments.map((x) => [x.check, x.denied, x.signals])).toEqual([
      ['allowPrivilegeEscalation', 1, ['denied']],
      ['capabilities_restricted', 1, ['denied']],
      ['runAsNonRoot', 1, ['denied']],
      ['seccompProfile', 1, ['denied']],
    ]);
    const policy = json(kaudit(['query', 'psa-violations', '--db', db, '--signal', 'policy', '--since', '2026-11-01', '--format', 'json']).out);
    expect(policy).toEqual([
      expect.objectContaining({
        ownerName: 'web',
        check: 'replica-limit.example.com#0',
        policy: 'replica-limit.example.com',
        binding: 'replica-limit-shop',
        reason: 'failed expression: object.spec.replicas <= 5',
      }),
    ]);
    const exempt = json(kaudit(['query', 'psa-violations', '--db', db, '--signal', 'exempt', '--since', '2026-11-01', '--format', 'json']).out);
    expect(exempt.map((x) => `${x.namespace} ${x.ownerKind}/${x.ownerName} ${x.check} ${x.requests}`)).toEqual([
      'kube-system DaemonSet/kube-proxy namespace 1',
      'monitoring DaemonSet/node-exporter namespace 2',
      'shop Pod/legacy-sync user 1',
    ]);
    const table = kaudit(['query', 'psa-violations', '--db', db, '--namespace', 'batch', '--since', '2026-11-01', '--format', 'table']);
    expect(table.out).toMatch(/^NAMESPACE\s+OWNER\s+CHECK/);
    expect(table.out).toMatch(/batch\s+Job\/migrate\s+hostPorts\s+baseline\s+baseline:latest\s+2\s+0/);
    expect(kaudit(['query', 'psa-violations', '--db', db, '--signal', 'warn']).err).toMatch(/--signal takes audit, denied, policy, exempt, error, not warn/);
  });

  it("tables posture per namespace and check, from the posture rules' findings", () => {
    const rows = json(kaudit(['query', 'posture', '--db', db, '--namespace', 'shop', '--since', '2026-11-01', '--format', 'json']).out);
    const by = Object.fromEntries(rows.map((x) => [x.check, x]));
    expect(Object.keys(by).sort()).toEqual([
      'posture-default-serviceaccount',
      'posture-host-path',
      'posture-image-digest',
      'posture-run-as-non-root',
      'posture-secret-env',
      'posture-token-automount',
    ]);
    expect(by['posture-secret-env']).toMatchObject({ cis: '5.4.1', workloads: 2 });
    expect(by['posture-secret-env'].examples.sort()).toEqual(['CronJob/nightly-report', 'Deployment/web']);
    expect(by['posture-host-path']).toMatchObject({ cis: '5.2', workloads: 1, examples: ['DaemonSet/log-agent'] });
    // api is compliant everywhere: pinned, non-root, its own service account, no token.
    expect(rows.some((x) => x.examples.includes('Deployment/api'))).toBe(false);
  });
});

describe('the same answers over HTTP', { timeout: 60_000 }, () => {
  let running: Running | undefined;
  afterAll(async () => running?.stop());

  it('GET /api/v1/analyst/psa-violations and /analyst/posture, documented in the OpenAPI', async () => {
    const cfg = loadConfig(undefined, {});
    cfg.store.path = db;
    cfg.server.listen = '127.0.0.1:0';
    running = await startServe(cfg, { detect: false });
    const get = async (p: string) => {
      const r = await fetch(`http://${running!.address}${p}`);
      return { status: r.status, body: (await r.json()) as Record<string, any> };
    };
    const v = await get('/api/v1/analyst/psa-violations?namespace=shop&level=baseline&since=2026-11-01');
    expect(v.status).toBe(200);
    expect(v.body.items.map((x: any) => `${x.ownerKind}/${x.ownerName} ${x.check}`)).toEqual(['DaemonSet/log-agent hostPathVolumes', 'Pod/debug privileged']);
    expect(v.body.items[0].users).toEqual(['system:serviceaccount:kube-system:daemon-set-controller', 'alice@example.com']);
    const paged = await get('/api/v1/analyst/psa-violations?namespace=shop&since=2026-11-01&limit=5');
    expect(paged.body.items).toHaveLength(5);
    const rest = await get(`/api/v1/analyst/psa-violations?namespace=shop&since=2026-11-01&limit=100&cursor=${paged.body.next}`);
    // web 4 checks, log-agent 6, nightly-report 2, debug 5: every row once across the pages.
    expect(rest.body.next).toBeUndefined();
    expect(new Set([...paged.body.items, ...rest.body.items].map((x: any) => `${x.ownerName} ${x.check}`)).size).toBe(4 + 6 + 2 + 5);
    expect((await get('/api/v1/analyst/psa-violations?level=strict')).status).toBe(400);
    const p = await get('/api/v1/analyst/posture?namespace=batch&since=2026-11-01');
    expect(p.body.items.map((x: any) => x.check)).toEqual([
      'posture-default-serviceaccount',
      'posture-image-digest',
      'posture-run-as-non-root',
      'posture-token-automount',
    ]);
    const api = await get('/api/v1/openapi.json');
    expect(Object.keys(api.body.paths)).toEqual(expect.arrayContaining(['/api/v1/analyst/psa-violations', '/api/v1/analyst/posture']));
  });
});
