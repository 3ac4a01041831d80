import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloudWatchLogsClient, CreateLogGroupCommand, CreateLogStreamCommand, PutLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ev, tempDir, waitFor } from '../helpers/events.js';
import { describeWithMoto, startMoto, type Moto } from './moto.js';

/**
 * `kaudit serve` following an EKS cluster's audit streams in CloudWatch Logs (moto's real API server), killed with
 * SIGKILL in the middle and started again: every event stored once, nothing committed read again beyond the page in
 * flight, new events and new streams followed, and a restart at the end reads nothing.
 */
const BIN = new URL('../../bin/kaudit.js', import.meta.url).pathname;
const GROUP = '/aws/eks/eks-prod/cluster';
const PAGE = 100;

describeWithMoto('CloudWatch Logs source (EKS) against a real CloudWatch Logs API', () => {
  let moto: Moto;
  let cw: CloudWatchLogsClient;
  const dir = tempDir('kaudit-cw-');
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    moto = await startMoto();
    cw = new CloudWatchLogsClient({ endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
  }, 600_000);
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    cw?.destroy();
    await moto?.stop();
  });

  // CloudWatch Logs refuses events older than 14 days: an hour ago.
  let t = Date.now() - 3_600_000;
  const put = async (stream: string, n: number, create = false) => {
    if (create) await cw.send(new CreateLogStreamCommand({ logGroupName: GROUP, logStreamName: stream }));
    const events = Array.from({ length: n }, () => {
      t += 10;
      const e = ev({ requestReceivedTimestamp: new Date(t).toISOString().replace('Z', '000Z') });
      return { timestamp: t, message: JSON.stringify(e) };
    });
    for (let i = 0; i < events.length; i += 2000) {
      const r = await cw.send(new PutLogEventsCommand({ logGroupName: GROUP, logStreamName: stream, logEvents: events.slice(i, i + 2000) }));
      expect(r.rejectedLogEventsInfo).toBeUndefined();
    }
  };

  const serve = (db: string, cfg: string) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--config', cfg, '--db', db, '--listen', '127.0.0.1:0', '--cluster', 'fallback'], {
      env: { ...process.env, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1', KAUDIT_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const address = waitFor(() => /serving on http:\/\/(\S+?) /.exec(err)?.[1], 'kaudit serve to listen', 60_000);
    return { child, address, log: () => err };
  };
  const metric = async (address: string, name: string) => {
    const text = await (await fetch(`http://${address}/metrics`)).text();
    let sum = 0;
    for (const l of text.split('\n')) if (l.startsWith(name)) sum += Number(l.slice(l.lastIndexOf(' ') + 1));
    return sum;
  };

  it('reads every stream, survives SIGKILL mid-way, follows new events and streams, re-reads nothing at the end', async () => {
    await cw.send(new CreateLogGroupCommand({ logGroupName: GROUP }));
    await put('kube-apiserver-audit-aaaa', 3000, true);
    await put('kube-apiserver-audit-bbbb', 3000, true);
    // Not an audit stream: never read.
    await put('authenticator-cccc', 50, true);
    const db = join(dir, 'k.db');
    const cfg = join(dir, 'kaudit.yaml');
    writeFileSync(
      cfg,
      `sources:\n  - type: cloudwatch\n    logGroup: ${GROUP}\n    region: us-east-1\n    endpoint: ${moto.endpoint}\n    pageSize: ${PAGE}\n    pollInterval: 200ms\n`,
    );
    const count = () => {
      try {
        const d = new Database(db, { readonly: true, fileMustExist: true });
        try {
          return d.prepare('SELECT count(*) FROM events').pluck().get() as number;
        } finally {
          d.close();
        }
      } catch {
        return 0;
      }
    };

    const first = serve(db, cfg);
    await first.address;
    await waitFor(() => count() >= 1200, 'a first part of the events', 120_000).catch((e) => {
      throw new Error(`${(e as Error).message}; kaudit serve said:\n${first.log()}`);
    });
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    const before = count();
    expect(before).toBeLessThan(6000);

    const second = serve(db, cfg);
    const addr = await second.address;
    await waitFor(() => count() === 6000, 'all 6000 events after the restart', 120_000);
    // Live: more events in a followed stream, and a stream that appears while running.
    await put('kube-apiserver-audit-bbbb', 300);
    await put('kube-apiserver-audit-dddd', 200, true);
    await waitFor(() => count() === 6500, 'the new events and the new stream', 60_000);
    await new Promise((r) => setTimeout(r, 800));
    expect(count()).toBe(6500);
    const read = await metric(addr, 'kaudit_cloudwatch_events_read_total{');
    const dups = await metric(addr, 'kaudit_events_duplicate_total{');
    // What the first run committed is not read again, apart from the one page whose events were stored but whose
    // position had not committed yet when it was killed.
    expect(dups).toBeLessThanOrEqual(PAGE);
    expect(read).toBe(6500 - before + dups);
    // The cluster came from the log group; the events are native in the store.
    const d = new Database(db, { readonly: true });
    const clusters = d.prepare('SELECT DISTINCT d.value FROM events e JOIN dict d ON d.id = e.cluster').pluck().all();
    d.close();
    expect(clusters).toEqual(['eks-prod']);
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));

    const third = serve(db, cfg);
    const addr3 = await third.address;
    await new Promise((r) => setTimeout(r, 1500));
    expect(await metric(addr3, 'kaudit_cloudwatch_events_read_total{')).toBe(0);
    expect(count()).toBe(6500);
    third.child.kill('SIGTERM');
    await new Promise((r) => third.child.once('exit', r));
  }, 400_000);
});
