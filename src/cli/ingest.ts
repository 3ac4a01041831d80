import { setFlagsFromString } from 'node:v8';
import { loadConfig, setStore } from '../config/config.js';
import { bytes } from '../config/values.js';
import { FORMATS, isFormat } from '../events/envelopes/index.js';
import type { Detector } from '../detect/alert.js';
import { Metrics } from '../metrics.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { ImportFailed, importFiles, type ImportProgress } from '../sources/file-import.js';
import { FAULT_ADVICE, innerCause, storeFaultOf } from '../store/write-error.js';
import { describeStore, openStoreWriter } from '../store/open.js';
import { loadDetector, parse, UsageError } from './common.js';

export const INGEST_HELP = `Usage: kaudit ingest [--store PATH|URL] [--config FILE] [--cluster NAME] [--format F] [--no-detect] [--no-redact] FILE...

Imports audit log files once: plain or .gz; JSON lines (--audit-log-format=json), an EventList, or a JSON array.
Managed clusters' exports are unwrapped by their shape: EKS CloudWatch Logs (filter-log-events, get-log-events,
subscription payloads, Firehose deliveries), GKE Cloud Logging entries, AKS diagnostic records, log forwarders'
records. Runs detection and stores events and alerts. Importing a file again adds nothing twice.

  --store PATH|URL  a SQLite file (default ./data/kaudit.db, or the config's store), or an OpenSearch URL
                    (http(s)://host:port; auth and TLS from the config's store.opensearch); --db is the same
  --config FILE     kaudit config file (YAML)
  --cluster NAME    cluster name for these events (default: the one the envelope names, else config cluster,
                    "default"); given, it wins over the envelope's
  --format F        auto (default: by each record's shape), native, eks, gke, aks or forwarder
  --rules DIR       detection rules directory (default: the bundled detections/)
  --no-detect       store only, no detection
  --no-redact       store Secret values as logged (not recommended; see README)
  --max-line SIZE   longest accepted line (default 1MiB)
  --quiet           no progress bar or summary

Exit codes: 0 imported; 1 an unexpected error; 2 bad usage, config or rules; 3 the store could not write (disk
full, I/O error, read-only): the line printed says how many events were stored, and running the same command again
once the cause is fixed stores the rest, none twice.
`;

/** `kaudit ingest`'s exit code when the store could not write (see INGEST_HELP). */
export const EXIT_STORE_FAILED = 3;

function bar(p: ImportProgress, started: number): string {
  const secs = (Date.now() - started) / 1000;
  const frac = p.bytesTotal > 0 ? Math.min(1, p.bytesRead / p.bytesTotal) : 0;
  const width = 24;
  const filled = Math.round(frac * width);
  const rate = secs > 0 ? Math.round(p.events / secs) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${p.events} events  ${rate} events/s  ${p.bad} bad`;
}

/**
 * An import lets V8's old generation grow to three times what is live before a full collection, where the command's
 * old-space cap (bin/kaudit.js) would allow 1.6 times: an import's old generation is mostly parsed events that
 * waited for their batch's insert, dead by the next full collection, and collecting it half as often took 4.7% fewer
 * instructions for 18-22 MB more peak resident memory (benchmarks/NOTES.md). `kaudit serve` keeps the tighter
 * growth: its old generation holds the detection state, which lives. Not when the user set the flag themselves.
 */
function importHeapGrowth(): void {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('heap-growing-percent'));
  if (!given) setFlagsFromString('--heap-growing-percent=200');
}

export async function runIngest(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    db: { type: 'string' },
    store: { type: 'string' },
    config: { type: 'string' },
    cluster: { type: 'string' },
    format: { type: 'string' },
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
  importHeapGrowth();
  if (values.format !== undefined && !isFormat(values.format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}`);
  const cfg = loadConfig(values.config);
  const target = values.store ?? values.db;
  if (target) setStore(cfg, target, values.store ? '--store' : '--db');
  if (values['no-redact']) cfg.redaction.enabled = false;
  if (values['max-line']) cfg.maxLineBytes = bytes(values['max-line'], '--max-line', 1024);
  // The writer thread starts and opens the store while this thread loads the rules (~70 and ~130 ms, one after the
  // other before).
  const opening = openStoreWriter(cfg.store, { alertGroupWindowMs: cfg.store.alertGroupWindow });
  opening.catch(() => {});
  let detector: Detector | undefined;
  try {
    detector = values['no-detect'] ? undefined : await loadDetector({ rulesDir: values.rules, config: cfg.detection });
  } catch (e) {
    await opening.then(
      (w) => w.close(),
      () => {},
    );
    throw e;
  }
  const writer = await opening;
  let closed = false;
  try {
    const pipeline = new Pipeline({
      writer,
      detector,
      metrics: new Metrics(),
      redaction: { enabled: cfg.redaction.enabled, key: writer.redactionKey },
      maxQueuedBatches: 16,
      logFailures: false,
    });
    const started = Date.now();
    const tty = !values.quiet && process.stderr.isTTY;
    let lastDraw = 0;
    let result: ImportProgress;
    try {
      result = await importFiles(positionals, {
        sink: pipeline,
        cluster: values.cluster ?? cfg.cluster,
        format: values.format,
        clusterFixed: values.cluster !== undefined,
        maxLine: cfg.maxLineBytes,
        batchSize: cfg.ingest.batchSize,
        onProgress: (p) => {
          if (!tty || Date.now() - lastDraw < 200) return;
          lastDraw = Date.now();
          process.stderr.write(`\r${bar(p, started)}`);
        },
      });
    } catch (e) {
      if (!(e instanceof ImportFailed)) throw e;
      if (tty) process.stderr.write('\n');
      closed = true;
      await Promise.resolve(writer.close()).catch(() => undefined);
      return reportFailure(e, describeStore(cfg.store));
    }
    if (tty) process.stderr.write(`\r${bar({ ...result, bytesRead: result.bytesTotal }, started)}\n`);
    const secs = (Date.now() - started) / 1000;
    if (!values.quiet) {
      process.stderr.write(
        `stored ${result.events} events, skipped ${result.duplicates} duplicates, ${result.bad} bad records (see dead letters: kaudit query dead-letters), ${result.alerts} alerts, in ${secs.toFixed(1)} s (${Math.round((result.events + result.duplicates) / Math.max(secs, 0.001))} events/s)\n`,
      );
    }
    return 0;
  } finally {
    if (!closed) await writer.close();
  }
}

/**
 * The one line an import that could not store ends with: what failed, where, how much was stored, what to do, and
 * that running the same command again stores the rest exactly once (events are keyed by cluster, auditID and stage;
 * batches stored but not yet detected when it stopped are detected at the next start).
 */
function reportFailure(e: ImportFailed, path: string): number {
  const p = e.progress;
  const cause = e.cause as Error & { code?: string };
  const fault = storeFaultOf(cause);
  const stored = `at least ${p.events} events were stored${p.duplicates ? ` (${p.duplicates} already there were skipped)` : ''}`;
  if (!fault) {
    process.stderr.write(
      `kaudit ingest: import of ${p.file} stopped: ${cause.message}; ${stored}. Running the same command again stores the rest, none twice.\n`,
    );
    return 1;
  }
  process.stderr.write(
    `kaudit ingest: the store ${path} could not write (${fault}: ${cause.code}, ${innerCause(cause.message)}) while importing ${p.file}; ${stored}. ` +
      `To finish: ${FAULT_ADVICE[fault]}, then run the same command again: events already stored are recognised and skipped, the rest is stored once.\n`,
  );
  return EXIT_STORE_FAILED;
}
