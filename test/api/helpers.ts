import { alertEventFields } from '../../src/detect/alert.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSources } from '../../src/config/sources.js';
import type { FastifyInstance } from 'fastify';
import WebSocket from 'ws';
import { startApi, type AppOptions } from '../../src/api/app.js';
import type { ApiContext } from '../../src/api/context.js';
import { defaultConfig, type KauditConfig } from '../../src/config/config.js';
import type { Alert, Detector } from '../../src/detect/alert.js';
import type { NormalisedEvent } from '../../src/events/types.js';
import { Metrics } from '../../src/metrics.js';
import { AlertBus } from '../../src/pipeline/alert-bus.js';
import { Pipeline, type BatchSink } from '../../src/pipeline/pipeline.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

export function tempDir(prefix = 'kaudit-api-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface Certs {
  dir: string;
  ca: string;
  caPem: Buffer;
  serverCert: string;
  serverKey: string;
  /** name -> {cert, key} paths, signed by `ca` unless named rogue-*. */
  clients: Record<string, { cert: string; key: string }>;
}

/** A CA, a server certificate for 127.0.0.1/localhost, and client certificates (subject given), made with openssl. */
export function makeCerts(clients: Record<string, string> = {}): Certs {
  const dir = tempDir('kaudit-certs-');
  const key = (name: string) => openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
  const ca = (name: string) => {
    key(name);
    openssl(['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '2', '-subj', `/CN=${name}`, '-out', `${name}.crt`], dir);
  };
  const leaf = (name: string, subj: string, signer: string, ext: string) => {
    key(name);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', subj, '-out', `${name}.csr`], dir);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${signer}.crt`,
        '-CAkey',
        `${signer}.key`,
        '-CAcreateserial',
        '-days',
        '2',
        '-sha256',
        '-extfile',
        `${name}.ext`,
        '-out',
        `${name}.crt`,
      ],
      dir,
    );
  };
  ca('ca');
  ca('rogue-ca');
  leaf('server', '/CN=kaudit', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  const out: Certs['clients'] = {};
  for (const [name, subj] of Object.entries(clients)) {
    leaf(name, subj, name.startsWith('rogue') ? 'rogue-ca' : 'ca', 'extendedKeyUsage=clientAuth\n');
    out[name] = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  }
  return {
    dir,
    ca: join(dir, 'ca.crt'),
    caPem: readFileSync(join(dir, 'ca.crt')),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clients: out,
  };
}

/**
 * A detector for tests: flags every exec into a pod (any stage) as `test.pod-exec`, severity from the pod name's
 * prefix (crit-*, high-*, else medium), one alert per event (the group key is the audit id and stage). `pad` adds
 * that many bytes of details, to make alerts heavy.
 */
export function execDetector(pad = 0): Detector {
  const filler = pad > 0 ? 'x'.repeat(pad) : undefined;
  return {
    detect(events: readonly NormalisedEvent[]): Alert[] {
      const out: Alert[] = [];
      for (const e of events) {
        if (e.resource !== 'pods' || e.subresource !== 'exec') continue;
        const severity = e.name.startsWith('crit-') ? 'critical' : e.name.startsWith('high-') ? 'high' : 'medium';
        out.push({
          rule: 'test.pod-exec',
          title: 'Exec into a pod',
          severity,
          tags: ['T1609'],
          summary: `${e.user} ran ${e.command || 'a command'} in ${e.namespace}/${e.name}`,
          ...alertEventFields(e),
          objectRef: { resource: 'pods', subresource: 'exec', namespace: e.namespace, name: e.name },
          groupKey: `test.pod-exec|${e.cluster}|${e.auditID}|${e.stage}`,
          ...(filler ? { details: { pad: filler } } : {}),
        });
      }
      return out;
    },
  };
}

let seq = 0;
const T0 = Date.parse('2026-11-01T00:00:00Z') * 1000;

function ts(us: number): string {
  return new Date(Math.floor(us / 1000)).toISOString().slice(0, 19) + '.' + String(us % 1_000_000).padStart(6, '0') + 'Z';
}

export interface GenOptions {
  /** Every n-th event is an exec into a pod (0: none). */
  execEvery?: number;
  /** Pod name prefix for exec events (crit-, high-, ...). */
  podPrefix?: string;
  namespace?: string;
}

/** Events as the apiserver's webhook sends them: items of an EventList, without kind and apiVersion. */
export function makeEvents(n: number, o: GenOptions = {}): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const k = seq++;
    const t = T0 + k * 1000;
    const id = `00000000-0000-4000-8000-${String(k).padStart(12, '0')}`;
    const exec = o.execEvery && i % o.execEvery === 0;
    const ns = o.namespace ?? 'payments';
    if (exec) {
      const pod = `${o.podPrefix ?? ''}web-${k}`;
      out.push({
        level: 'Metadata',
        auditID: id,
        stage: 'ResponseStarted',
        requestURI: `/api/v1/namespaces/${ns}/pods/${pod}/exec?command=sh&container=web&stdin=true&stdout=true&tty=true`,
        verb: 'create',
        user: { username: 'alice@example.com', groups: ['system:authenticated'] },
        sourceIPs: ['203.0.113.10'],
        userAgent: 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350',
        objectRef: { resource: 'pods', namespace: ns, name: pod, apiVersion: 'v1', subresource: 'exec' },
        responseStatus: { metadata: {}, code: 101 },
        requestReceivedTimestamp: ts(t),
        stageTimestamp: ts(t + 2000),
        annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': 'RBAC: allowed' },
      });
    } else {
      out.push({
        level: 'Metadata',
        auditID: id,
        stage: 'ResponseComplete',
        requestURI: `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-${k % 12}?timeout=10s`,
        verb: 'update',
        user: { username: `system:node:node-${k % 12}`, groups: ['system:nodes', 'system:authenticated'] },
        sourceIPs: ['10.0.1.5'],
        userAgent: 'kubelet/v1.30.2 (linux/amd64) kubernetes/3968350',
        objectRef: { resource: 'leases', namespace: 'kube-node-lease', name: `node-${k % 12}`, apiGroup: 'coordination.k8s.io', apiVersion: 'v1' },
        responseStatus: { metadata: {}, code: 200 },
        requestReceivedTimestamp: ts(t),
        stageTimestamp: ts(t + 900),
        annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' },
      });
    }
  }
  return out;
}

export function eventList(items: Record<string, unknown>[]): string {
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
}

export interface Server {
  url: string;
  wsUrl: string;
  port: number;
  app: FastifyInstance;
  store: SqliteStore;
  pipeline: Pipeline;
  ctx: ApiContext;
  metrics: Metrics;
  dir: string;
  close(): Promise<void>;
}

export interface ServerOptions {
  config?: (c: KauditConfig) => void;
  detector?: Detector;
  app?: AppOptions;
  /** Wrap the pipeline as the webhook's sink (to inject failures). */
  sink?: (p: Pipeline) => BatchSink;
  pipeline?: { maxQueuedBatches?: number; maxQueuedEvents?: number };
  /** Reuse a store directory (restart tests). */
  dir?: string;
  port?: number;
}

/** The real thing on 127.0.0.1: SQLite store in a temp dir, the real pipeline, the API with startApi. */
export async function startServer(o: ServerOptions = {}): Promise<Server> {
  const dir = o.dir ?? tempDir();
  const config = defaultConfig();
  config.store.path = join(dir, 'kaudit.db');
  config.server.listen = `127.0.0.1:${o.port ?? 0}`;
  o.config?.(config);
  const metrics = new Metrics();
  const store = new SqliteStore(config.store.path);
  const bus = new AlertBus();
  const pipeline = new Pipeline({ writer: store, bus, metrics, detector: o.detector ?? execDetector(), ...o.pipeline });
  const ctx: ApiContext = { config, store, sink: o.sink ? o.sink(pipeline) : pipeline, bus, metrics, ready: () => true, sources: parseSources(config.sources) };
  const { app, port } = await startApi(ctx, o.app);
  const scheme = config.server.tls ? 'https' : 'http';
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    wsUrl: `${scheme === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}/api/v1/alerts/stream`,
    port,
    app,
    store,
    pipeline,
    ctx,
    metrics,
    dir,
    async close() {
      await app.close();
      await pipeline.idle();
      store.close();
    },
  };
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: any;
  text: string;
  ms: number;
}

export interface RequestOptions {
  method?: string;
  token?: string;
  headers?: Record<string, string>;
  ca?: Buffer;
  cert?: string;
  key?: string;
  /** Send the body in pieces without a Content-Length. */
  chunked?: boolean;
  agent?: unknown;
}

/** One HTTP(S) request with node's client (custom CA and client certificates, chunked bodies). */
export function request(url: string, body?: string | Buffer, o: RequestOptions = {}): Promise<Reply> {
  const u = new URL(url);
  const t0 = performance.now();
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  if (body !== undefined && !o.chunked) headers['content-length'] = String(Buffer.byteLength(body));
  const tls = u.protocol === 'https:' ? { ca: o.ca, cert: o.cert ? readFileSync(o.cert) : undefined, key: o.key ? readFileSync(o.key) : undefined } : {};
  return new Promise((resolve, reject) => {
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      { method: o.method ?? (body !== undefined ? 'POST' : 'GET'), headers, agent: o.agent as never, ...tls },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text, ms: performance.now() - t0 });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (!o.chunked) req.end(body);
    else {
      const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
      let i = 0;
      const step = 256 * 1024;
      const pump = () => {
        while (i < b.length) {
          const part = b.subarray(i, i + step);
          i += step;
          if (!req.write(part)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    }
  });
}

/** A feed client collecting alerts; resolves `opened` on open, records the close code and reason. */
export interface FeedClient {
  ws: WebSocket;
  alerts: { id: number; rule: string; cluster: string; severity: string; objectRef: { namespace?: string } }[];
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves when at least n alerts have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
}

export function feed(url: string, o: { token?: string; ca?: Buffer; cert?: string; key?: string; autoPong?: boolean } = {}): FeedClient {
  const ws = new WebSocket(url, {
    headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
    ca: o.ca,
    cert: o.cert ? readFileSync(o.cert) : undefined,
    key: o.key ? readFileSync(o.key) : undefined,
    autoPong: o.autoPong ?? true,
    perMessageDeflate: false,
  });
  const alerts: FeedClient['alerts'] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  ws.on('message', (d) => {
    alerts.push(JSON.parse(d.toString()));
    for (const w of [...waiters]) if (alerts.length >= w.n) w.resolve();
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        reject(
          Object.assign(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString()}`), {
            status: res.statusCode,
            body: Buffer.concat(chunks).toString(),
          }),
        ),
      );
    });
    ws.once('error', reject);
  });
  opened.catch(() => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return {
    ws,
    alerts,
    opened,
    closed,
    waitFor(n, timeoutMs = 10_000) {
      if (alerts.length >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} alerts (have ${alerts.length})`)), timeoutMs);
        waiters.push({ n, resolve: () => (clearTimeout(t), resolve()) });
      });
    },
  };
}

/** Ids of stored alerts, ascending, optionally of one cluster. */
export function storedAlertIds(store: SqliteStore, where = '', ...params: unknown[]): number[] {
  return store.db
    .prepare(`SELECT id FROM alerts ${where} ORDER BY id`)
    .pluck()
    .all(...params) as number[];
}

export function eventCount(store: SqliteStore, cluster?: string): number {
  if (cluster === undefined) return store.db.prepare('SELECT count(*) FROM events').pluck().get() as number;
  // Clusters are interned in the dict table.
  return store.db.prepare('SELECT count(*) FROM events e JOIN dict d ON d.id = e.cluster WHERE d.value = ?').pluck().get(cluster) as number;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The real detection engine when this build has one and it flags an exec into a pod; else execDetector(). Tests
 * assert against what was stored, so either works; the real one shows the feed carries real alerts.
 */
export async function realOrTestDetector(): Promise<{ detector: Detector; real: boolean }> {
  try {
    const spec = '../../src/detect/index.js';
    const mod = (await import(spec)) as { createDetector: (o: unknown) => Promise<Detector> };
    const { normalise } = await import('../../src/events/normalise.js');
    const { toAuditEvent } = await import('../../src/events/decode.js');
    const probe = await mod.createDetector({ onWarning: () => undefined });
    const ev = normalise(toAuditEvent({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...makeEvents(1, { execEvery: 1 })[0] }), 'probe', {
      enabled: false,
      key: Buffer.alloc(32),
    });
    if ((await probe.detect([ev])).length > 0) return { detector: await mod.createDetector({ onWarning: () => undefined }), real: true };
  } catch {
    // No engine in this build, or one that does not load: fall back.
  }
  return { detector: execDetector(), real: false };
}
