import { readFileSync } from 'node:fs';
// One detector node for benchmarks/kafka.mjs and opensearch.mjs: KafkaSource -> Pipeline (detection rules) -> the
// store: WriterThread -> SQLite (settings.db), or the OpenSearch store (settings.opensearch, shared by the detectors).
// Settings as JSON in KAUDIT_BENCH_NODE; reports its counters to the parent over IPC; 'stop' ends it.
const s = JSON.parse(process.env.KAUDIT_BENCH_NODE);
const dist = new URL(s.dist, 'file:///');
const { defaultKafkaConfig } = await import(new URL('config/kafka.js', dist));
const { Pipeline } = await import(new URL('pipeline/pipeline.js', dist));
const { KafkaSource } = await import(new URL('sources/kafka.js', dist));
const { WriterThread } = await import(new URL('store/writer.js', dist));
const { loadDetector } = await import(new URL('cli/common.js', dist));

const d = defaultKafkaConfig();
const config = { ...d, ...s.kafka, topics: { ...d.topics, ...s.kafka.topics } };
// Request-id sets reserved at their first id, as `kaudit serve` (which runs Kafka detectors) makes them.
const detector = s.detect ? await loadDetector({ rulesDir: s.rulesDir, reserveState: true }) : undefined;
const writer = s.opensearch
  ? await (await import(new URL('store/opensearch/store.js', dist))).OpenSearchStore.open(s.opensearch)
  : await WriterThread.open(s.db);
const pipeline = new Pipeline({ writer, detector, redaction: { enabled: true, key: writer.redactionKey } });
const source = new KafkaSource({ config, sink: pipeline, cluster: 'bench' });
await source.start();
const report = () =>
  process.send({
    type: 'stats',
    cpu: process.cpuUsage(),
    maxRss: vmHwmKb(),
    stats: source.stats,
    assigned: source.assignment.length,
    rules: detector?.rules?.length ?? 0,
  });
const timer = setInterval(report, 100);
report();
process.on('message', async (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  await source.stop();
  await pipeline.idle();
  await writer.close();
  process.exit(0);
});
process.on('disconnect', () => process.exit(0));

/** Peak resident memory of this process in KiB (VmHWM: resourceUsage().maxRSS keeps the parent's across fork and exec). */
function vmHwmKb() {
  const m = /VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
}
