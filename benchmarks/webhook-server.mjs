// The server side of benchmarks/webhook.mjs, in its own process: what `kaudit serve` runs for the webhook (writer
// thread, read-only store connection, pipeline with the real detection rules, the API with access control).
// Usage (by webhook.mjs): node benchmarks/webhook-server.mjs DIR [--tls CERT KEY TOKENS]; prints {"port":N} on stdout.
import { join } from 'node:path';

const dist = new URL('../dist/', import.meta.url);
const { WriterThread } = await import(new URL('store/writer.js', dist));
const { SqliteStore } = await import(new URL('store/sqlite-store.js', dist));
const { Pipeline } = await import(new URL('pipeline/pipeline.js', dist));
const { startApi } = await import(new URL('api/app.js', dist));
const { Metrics } = await import(new URL('metrics.js', dist));
const { defaultConfig } = await import(new URL('config/config.js', dist));
const { loadDetector } = await import(new URL('cli/common.js', dist));

const [dir, ...rest] = process.argv.slice(2);
const cfg = defaultConfig();
cfg.store.path = join(dir, 'kaudit.db');
cfg.server.listen = '127.0.0.1:0';
if (rest[0] === '--tls') {
  cfg.server.tls = { cert: rest[1], key: rest[2] };
  cfg.server.tokensFile = rest[3];
}
const metrics = new Metrics();
const writer = await WriterThread.open(cfg.store.path);
const store = new SqliteStore(cfg.store.path, { readonly: true });
// The bundled rules (BENCH_RULES=DIR for others). If they do not load, a one-rule exec detector stands in, so the
// delivery figures still mean something; the output says which ran.
let detectorName;
let detector;
if (!process.env.BENCH_NO_DETECT) {
  try {
    detector = await loadDetector({ rulesDir: process.env.BENCH_RULES });
    detectorName = `${detector?.rules?.length ?? '?'} rules`;
  } catch (e) {
    detectorName = `stand-in exec rule (the rules did not load: ${e.message.split('\n')[0]})`;
    detector = {
      detect: (events) =>
        events
          .filter((e) => e.resource === 'pods' && e.subresource === 'exec')
          .map((e) => ({
            rule: 'bench.pod-exec',
            title: 'Exec into a pod',
            severity: 'medium',
            tags: [],
            summary: `${e.user} exec ${e.namespace}/${e.name}`,
            cluster: e.cluster,
            auditID: e.auditID,
            stage: e.stage,
            time: e.time,
            timeMicros: e.timeMicros,
            user: e.user,
            sourceIP: e.sourceIP,
            verb: e.verb,
            objectRef: { resource: 'pods', subresource: 'exec', namespace: e.namespace, name: e.name },
            groupKey: `bench|${e.cluster}|${e.auditID}`,
          })),
    };
  }
}
const pipeline = new Pipeline({
  writer,
  detector,
  metrics,
  redaction: { enabled: true, key: writer.redactionKey },
  maxQueuedBatches: cfg.ingest.maxQueuedBatches,
});
// BENCH_COALESCE=off, or MAX_EVENTS[,IN_FLIGHT]: group-commit tuning for experiments (default: kaudit's defaults).
const co = process.env.BENCH_COALESCE;
const webhookCoalesce = co === 'off' ? false : co ? { maxEvents: Number(co.split(',')[0]), maxInFlight: Number(co.split(',')[1] ?? 2) } : undefined;
const { app, port } = await startApi({ config: cfg, store, sink: pipeline, bus: pipeline.bus, metrics, ready: () => true }, { webhookCoalesce });
process.stdout.write(JSON.stringify({ port, detector: detectorName ?? 'none' }) + '\n');
process.on('message', async (m) => {
  if (m === 'cpu') {
    process.send({ cpu: process.cpuUsage() });
    return;
  }
  if (m === 'stats') {
    process.send({ rss: process.memoryUsage().rss, metrics: metrics.render() });
    return;
  }
  if (m === 'stop') {
    await app.close();
    await pipeline.idle();
    await writer.close();
    store.close();
    process.exit(0);
  }
});
