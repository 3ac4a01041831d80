import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { startApi } from '../api/app.js';
import { checkListenSafety } from '../api/auth.js';
import { loadConfig, setStore, type KauditConfig } from '../config/config.js';
import { startKafkaServices, type KafkaServices } from '../sinks/kafka.js';
import type { Detector } from '../detect/alert.js';
import { log } from '../log.js';
import { Metrics, registerProcessMetrics } from '../metrics.js';
import { AlertFollower } from '../pipeline/alert-follower.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { WriteHealth } from '../pipeline/write-health.js';
import { importFiles } from '../sources/file-import.js';
import { FileTail } from '../sources/file-tail.js';
import { CloudWatchSource } from '../sources/cloudwatch.js';
import { describeSource, type CloudWatchSourceConfig } from '../config/sources.js';
import { describeStore, openServingStore, type StoreWriter } from '../store/open.js';
import type { StoreReader } from '../store/store.js';
import { loadDetector, parse, UsageError } from './common.js';
import { startDemoReplay } from './demo.js';

export const SERVE_HELP = `Usage: kaudit serve [--config FILE] [--store PATH|URL] [--listen HOST:PORT] [--tail PATH]... [options]

Runs the API (under /api/v1; /healthz, /readyz, /metrics), the audit webhook receiver and the configured tails.
Settings come from the config file, then KAUDIT_* environment variables, then these flags.

  --config FILE        YAML config (see README)
  --store PATH|URL     a SQLite file (default ./data/kaudit.db), or an OpenSearch URL (the fleet store; auth and
                       TLS from the config's store.opensearch); --db is the same
  --listen HOST:PORT   default 127.0.0.1:8080; any non-loopback address needs TLS and tokens
  --tail PATH          follow an audit log across rotation (repeatable)
  --cluster NAME       cluster name for tailed events (default "default")
  --rules DIR          detection rules directory (default: bundled detections/)
  --demo               import the bundled sample audit log at start, so there is data to look at
  --tls-cert FILE      serve HTTPS with this certificate (and --tls-key FILE)
  --tls-client-ca FILE require client certificates signed by this CA
  --tokens-file FILE   bearer tokens with scopes (see README, Security model)
  --no-redact          keep Secret values in stored events (not recommended)
  --insecure-allow-unauthenticated-remote   serve a non-loopback address without TLS and tokens (never in production)
`;

export const SAMPLE_LOG = fileURLToPath(new URL('../../fixtures/sample/audit.log', import.meta.url));

export interface Running {
  config: KauditConfig;
  store: StoreReader;
  pipeline: Pipeline;
  writer: StoreWriter;
  metrics: Metrics;
  app: FastifyInstance;
  address: string;
  port: number;
  tails: FileTail[];
  cloudwatch: CloudWatchSource[];
  stop(): Promise<void>;
}

/** Starts everything `kaudit serve` runs; returns handles so tests can drive and stop it in-process. */
export async function startServe(
  cfg: KauditConfig,
  opts: { rulesDir?: string; demo?: boolean; detect?: boolean; demoReplay?: { firstMs?: number; everyMs?: number } } = {},
): Promise<Running> {
  // Refuse an unsafe listen address before opening anything.
  checkListenSafety(cfg);
  const metrics = new Metrics();
  registerProcessMetrics(metrics);
  const r = cfg.store.retention;
  const retention = r.maxAge || r.maxSize ? { maxAgeMs: r.maxAge, maxBytes: r.maxSize, intervalMs: r.intervalSeconds * 1000 } : undefined;
  // Whatever start-up opened is closed again if a later step fails, so a refused start exits instead of hanging.
  const opened: (() => Promise<void> | void)[] = [];
  const cleanup = async () => {
    for (const c of opened.reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  try {
    // SQLite: one writer thread owns every write, and this thread reads (API, tail positions) on its own connection.
    // OpenSearch: one client does both.
    const served = await openServingStore(cfg.store, { alertGroupWindowMs: cfg.store.alertGroupWindow }, retention);
    opened.push(() => served.close());
    const { writer, reader: store } = served;
    let ready = false;
    let stopDemo = () => {};
    const detector = opts.detect === false ? undefined : await loadDetector({ rulesDir: opts.rulesDir, config: cfg.detection, reserveState: true });
    // Kafka consumers' partitions, and the identities in them, move between processes: their state moves with them
    // through the state topic (kafka.topics.state), not through this store.
    const kafkaConfig = cfg.kafka;
    if (detector?.stateEntries) {
      metrics.collect('kaudit_detection_state_entries', 'Request ids and keys the detection state holds (bounded by detection.state)', () => [
        { value: detector.stateEntries!() },
      ]);
    }
    if (detector?.stateBytes) {
      metrics.collect('kaudit_detection_state_bytes', 'Bytes the request-id sets of the detection state hold (each its whole size from its first id)', () => [
        { value: detector.stateBytes!() },
      ]);
    }
    const persist = !!detector?.saveState && cfg.detection.state?.persist !== false && !kafkaConfig?.consume;
    if (persist) await restoreDetectionState(writer, detector!);
    // While the store cannot write (full disk, ...), /readyz says why, and a probe finds when it can again.
    const probe = served.probeWrite;
    const health = probe ? new WriteHealth({ path: served.where, probe: () => probe(WRITE_PROBE_BYTES), metrics }) : undefined;
    opened.push(() => health?.stop());
    const pipeline = new Pipeline({
      writer,
      detector,
      metrics,
      health,
      redaction: { enabled: cfg.redaction.enabled, key: writer.redactionKey },
      maxQueuedBatches: cfg.ingest.maxQueuedBatches,
    });
    // A scrape is synchronous and the store's answer is not: the gauge shows the size last read, refreshed by each scrape.
    let storeBytes = 0;
    metrics.collect('kaudit_store_bytes', 'Bytes of the store in use', () => {
      store.sizeBytes().then(
        (n) => (storeBytes = n),
        () => undefined,
      );
      return [{ value: storeBytes }];
    });
    // Kafka roles (consume into this pipeline, publish alerts, or ingest-only webhook): see README, Scale-out with Kafka.
    let kafka: KafkaServices | undefined;
    if (kafkaConfig) {
      kafka = await startKafkaServices({ config: kafkaConfig, pipeline, store, cluster: cfg.cluster, detector });
      opened.push(() => kafka!.stop());
      metrics.addRenderer(() => kafka!.metricsText());
    }
    const sources = cfg.sources;
    // A shared store's alerts come from every detector: the feed follows the store.
    const follower = served.shared ? new AlertFollower(store) : undefined;
    follower?.start();
    opened.push(() => follower?.stop());
    const { app, address, port } = await startApi({
      config: cfg,
      store,
      sink: kafka?.webhookSink ?? pipeline,
      bus: follower?.bus ?? pipeline.bus,
      metrics,
      ready: () => ready,
      problem: () => health?.problem ?? kafka?.problem(),
      sources,
    });
    opened.push(() => app.close());
    const tails = cfg.tail.map(
      (t) => new FileTail({ path: t.path, cluster: t.cluster ?? cfg.cluster, sink: pipeline, store, maxLine: cfg.maxLineBytes, metrics }),
    );
    for (const t of tails) t.start();
    // Managed clusters' pull sources (push endpoints are routes of the API, above).
    const cloudwatch = sources
      .filter((s): s is CloudWatchSourceConfig => s.type === 'cloudwatch')
      .map(
        (s) =>
          new CloudWatchSource({
            logGroup: s.logGroup,
            cluster: s.cluster,
            region: s.region,
            endpoint: s.endpoint,
            streamPrefix: s.streamPrefix,
            pollMs: s.pollMs,
            pageSize: s.pageSize,
            sink: pipeline,
            positions: store,
            metrics,
          }),
      );
    for (const c of cloudwatch) c.start();
    opened.push(async () => void (await Promise.all(cloudwatch.map((c) => c.stop()))));
    for (const s of sources) log.info(`source: ${describeSource(s)}`);
    if (opts.demo && existsSync(SAMPLE_LOG)) {
      const res = await importFiles([SAMPLE_LOG], { sink: pipeline, cluster: 'demo' });
      log.info(`demo: imported the sample audit log (${res.events} new events, ${res.alerts} alerts)`);
      const replay = startDemoReplay({ sink: pipeline, sampleLog: SAMPLE_LOG, ...opts.demoReplay });
      opened.push(() => replay.stop());
      stopDemo = () => replay.stop();
    }
    ready = true;
    let stopped = false;
    return {
      config: cfg,
      store,
      pipeline,
      writer,
      metrics,
      app,
      address,
      port,
      tails,
      cloudwatch,
      async stop() {
        if (stopped) return;
        stopped = true;
        ready = false;
        stopDemo();
        await Promise.all(tails.map((t) => t.stop()));
        await Promise.all(cloudwatch.map((c) => c.stop()));
        await app.close();
        follower?.stop();
        await kafka?.stop();
        await pipeline.idle();
        if (persist) await saveDetectionState(writer, detector!, pipeline);
        health?.stop();
        await served.close();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** The write probe's size: about what a batch of 2,000 events takes in the store (events, indexes, blob). */
const WRITE_PROBE_BYTES = 1 << 20;

/** The name under which the store keeps `kaudit serve`'s detection state between a stop and the next start. */
const DETECTION_STATE = 'detection';

/** Loads the detection state the last stop saved (taking it out of the store: it is good for one start only). */
async function restoreDetectionState(writer: StoreWriter, detector: Detector): Promise<void> {
  let json: string | undefined;
  try {
    json = await writer.takeState(DETECTION_STATE);
  } catch (e) {
    log.warn(`detection state of the last stop not read (${(e as Error).message}): open windows start empty`);
    return;
  }
  if (json === undefined) return;
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch {
    log.warn('detection state of the last stop is not JSON: open windows start empty');
    return;
  }
  const r = detector.loadState!(data);
  const saved = (data as { savedAt?: unknown }).savedAt;
  log.info(
    `detection state restored from the stop at ${typeof saved === 'string' ? saved : '?'}: ${r.keys} keys in ${r.parts} parts${r.skipped ? ` (${r.skipped} parts of rules changed or gone, skipped)` : ''}`,
  );
}

/** Saves the detection state for the next start, when it matches what the store holds (see Pipeline.consistent). */
async function saveDetectionState(writer: StoreWriter, detector: Detector, pipeline: Pipeline): Promise<void> {
  if (!pipeline.consistent) {
    log.warn(
      'detection state not saved: a batch failed since the start, so the state may count events the store does not hold; open windows start empty at the next start',
    );
    return;
  }
  try {
    await writer.saveState(DETECTION_STATE, JSON.stringify(detector.saveState!()));
  } catch (e) {
    log.warn(`detection state not saved (${(e as Error).message}): open windows start empty at the next start`);
  }
}

export async function runServe(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      config: { type: 'string' },
      db: { type: 'string' },
      store: { type: 'string' },
      listen: { type: 'string' },
      tail: { type: 'string', multiple: true },
      cluster: { type: 'string' },
      rules: { type: 'string' },
      demo: { type: 'boolean' },
      'no-redact': { type: 'boolean' },
      'insecure-allow-unauthenticated-remote': { type: 'boolean' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-client-ca': { type: 'string' },
      'tokens-file': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  const cfg = loadConfig(values.config);
  const target = values.store ?? values.db;
  if (target) setStore(cfg, target, values.store ? '--store' : '--db');
  if (values.listen) cfg.server.listen = values.listen;
  if (values.cluster) cfg.cluster = values.cluster;
  if (values['no-redact']) cfg.redaction.enabled = false;
  if (values['insecure-allow-unauthenticated-remote']) cfg.server.insecureAllowUnauthenticatedRemote = true;
  if (values['tls-cert'] || values['tls-key'] || values['tls-client-ca']) {
    cfg.server.tls = {
      cert: values['tls-cert'] ?? cfg.server.tls?.cert ?? '',
      key: values['tls-key'] ?? cfg.server.tls?.key ?? '',
      clientCA: values['tls-client-ca'] ?? cfg.server.tls?.clientCA,
    };
    if (!cfg.server.tls.cert || !cfg.server.tls.key) throw new UsageError('TLS needs both --tls-cert and --tls-key (or server.tls in the config)');
  }
  if (values['tokens-file']) cfg.server.tokensFile = values['tokens-file'];
  for (const p of values.tail ?? []) cfg.tail.push({ path: p });
  // Tests and screenshots shorten the demo's replay interval.
  const replayMs = Number(process.env.KAUDIT_DEMO_REPLAY_MS) || undefined;
  const running = await startServe(cfg, {
    rulesDir: values.rules,
    demo: values.demo,
    demoReplay: replayMs ? { firstMs: replayMs, everyMs: replayMs } : undefined,
  });
  const scheme = cfg.server.tls ? 'https' : 'http';
  log.info(
    `kaudit serving on ${scheme}://${running.address} (console ${scheme}://${running.address}/, API ${scheme}://${running.address}/api/v1, OpenAPI at /api/v1/openapi.json), store ${describeStore(cfg.store)}${cfg.tail.length ? `, tailing ${cfg.tail.map((t) => t.path).join(', ')}` : ''}`,
  );
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      log.info(`${sig}: finishing the batches in progress and stopping`);
      void running.stop().then(resolve);
    };
    process.once('SIGINT', () => onSignal('SIGINT'));
    process.once('SIGTERM', () => onSignal('SIGTERM'));
  });
  return 0;
}
