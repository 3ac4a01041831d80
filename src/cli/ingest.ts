import { loadConfig, parseBytes } from '../config/config.js';
import type { Detector } from '../detect/alert.js';
import { Metrics } from '../metrics.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { importFiles, type ImportProgress } from '../sources/file-import.js';
import { WriterThread } from '../store/writer.js';
import { loadDetector, parse, UsageError } from './common.js';

export const INGEST_HELP = `Usage: kaudit ingest [--db PATH] [--config FILE] [--cluster NAME] [--no-detect] [--no-redact] FILE...

Imports audit log files once: plain or .gz; JSON lines (--audit-log-format=json), an EventList, or a JSON array.
Runs detection and stores events and alerts. Importing a file again adds nothing twice.

  --db PATH         SQLite store (default ./data/kaudit.db, or store.path of the config)
  --config FILE     kaudit config file (YAML)
  --cluster NAME    cluster name for these events (default: config cluster, "default")
  --rules DIR       detection rules directory (default: the bundled detections/)
  --no-detect       store only, no detection
  --no-redact       store Secret values as logged (not recommended; see README)
  --max-line SIZE   longest accepted line (default 1MiB)
  --quiet           no progress bar or summary
`;

function bar(p: ImportProgress, started: number): string {
  const secs = (Date.now() - started) / 1000;
  const frac = p.bytesTotal > 0 ? Math.min(1, p.bytesRead / p.bytesTotal) : 0;
  const width = 24;
  const filled = Math.round(frac * width);
  const rate = secs > 0 ? Math.round(p.events / secs) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${p.events} events  ${rate} events/s  ${p.bad} bad`;
}

export async function runIngest(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    db: { type: 'string' },
    config: { type: 'string' },
    cluster: { type: 'string' },
    rules: { type: 'string' },
    'no-detect': { type: 'boolean' },
    'no-redact': { type: 'boolean' },
    'max-line': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(INGEST_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('ingest needs at least one FILE');
  const cfg = loadConfig(values.config);
  if (values.db) cfg.store.path = values.db;
  if (values['no-redact']) cfg.redaction.enabled = false;
  if (values['max-line']) cfg.maxLineBytes = parseBytes(values['max-line']);
  // The writer thread starts and opens the store while this thread loads the rules (~70 and ~130 ms, one after the
  // other before).
  const opening = WriterThread.open(cfg.store.path);
  opening.catch(() => {});
  let detector: Detector | undefined;
  try {
    detector = values['no-detect'] ? undefined : await loadDetector({ rulesDir: values.rules, config: cfg.detection });
  } catch (e) {
    await opening.then((w) => w.close(), () => {});
    throw e;
  }
  const writer = await opening;
  try {
    const pipeline = new Pipeline({ writer, detector, metrics: new Metrics(), redaction: { enabled: cfg.redaction.enabled, key: writer.redactionKey }, maxQueuedBatches: 16 });
    const started = Date.now();
    const tty = !values.quiet && process.stderr.isTTY;
    let lastDraw = 0;
    const result = await importFiles(positionals, {
      sink: pipeline,
      cluster: values.cluster ?? cfg.cluster,
      maxLine: cfg.maxLineBytes,
      batchSize: cfg.ingest.batchSize,
      onProgress: (p) => {
        if (!tty || Date.now() - lastDraw < 200) return;
        lastDraw = Date.now();
        process.stderr.write(`\r${bar(p, started)}`);
      },
    });
    if (tty) process.stderr.write(`\r${bar({ ...result, bytesRead: result.bytesTotal }, started)}\n`);
    const secs = (Date.now() - started) / 1000;
    if (!values.quiet) {
      process.stderr.write(
        `stored ${result.events} events, skipped ${result.duplicates} duplicates, ${result.bad} bad records (see dead letters: kaudit query dead-letters), ${result.alerts} alerts, in ${secs.toFixed(1)} s (${Math.round((result.events + result.duplicates) / Math.max(secs, 0.001))} events/s)\n`,
      );
    }
    return 0;
  } finally {
    await writer.close();
  }
}
