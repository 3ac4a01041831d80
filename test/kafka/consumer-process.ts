/**
 * One detector node in its own process, for the tests and the benchmark: a KafkaSource feeding a Pipeline with a
 * WriterThread on a SQLite store (several processes may share one store file: SQLite serialises their transactions).
 * Run from the transpiled build (see build.ts) with the settings as JSON in KAUDIT_TEST_NODE. Reports its counters to
 * the parent over IPC every 200 ms; the message 'stop' makes it finish its batch, leave the group and exit 0.
 */
import { defaultKafkaConfig, type KafkaConfig } from '../../src/config/kafka.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { KafkaSource } from '../../src/sources/kafka.js';
import { WriterThread } from '../../src/store/writer.js';
import { TestDetector } from './fixtures.js';

interface NodeSettings {
  db: string;
  cluster?: string;
  kafka: Partial<KafkaConfig> & { brokers: string[] };
  maxQueuedBatches?: number;
  /**
   * Crash at the worst moment: SIGKILL this process right after a batch is committed to the store, before its Kafka
   * offset is committed, once this many events are stored.
   */
  crashAfterStored?: number;
}

const settings = JSON.parse(process.env.KAUDIT_TEST_NODE ?? '{}') as NodeSettings;
const config: KafkaConfig = { ...defaultKafkaConfig(), ...settings.kafka, topics: { ...defaultKafkaConfig().topics, ...settings.kafka.topics } };
const writer = await WriterThread.open(settings.db);
const pipeline = new Pipeline({ writer, detector: new TestDetector(), maxQueuedBatches: settings.maxQueuedBatches ?? 8 });
let stored = 0;
const sink = {
  get overloaded() {
    return pipeline.overloaded;
  },
  async submit(batch: Parameters<Pipeline['submit']>[0]) {
    const outcome = await pipeline.submit(batch);
    stored += outcome.stored;
    if (settings.crashAfterStored !== undefined && stored >= settings.crashAfterStored) process.kill(process.pid, 'SIGKILL');
    return outcome;
  },
};
const source = new KafkaSource({ config, sink, cluster: settings.cluster ?? 'default' });
await source.start();

const report = () => process.send?.({ type: 'stats', pid: process.pid, stats: source.stats, assigned: source.assignment.length });
const timer = setInterval(report, 200);
process.send?.({ type: 'started', pid: process.pid });

async function stop(): Promise<void> {
  clearInterval(timer);
  await source.stop();
  await pipeline.idle();
  report();
  await writer.close();
  process.disconnect?.();
  process.exit(0);
}

process.on('message', (m) => {
  if (m !== 'stop') return;
  // A failed stop is this node's failure: say why and exit non-zero, for the test to see.
  stop().catch((e: unknown) => {
    console.error(`consumer ${process.pid}: stop failed: ${(e as Error).message}`);
    process.exit(1);
  });
});
process.on('disconnect', () => process.exit(0)); // the parent went away: do not linger
