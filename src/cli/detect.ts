import type { Readable } from 'node:stream';
import { loadConfig } from '../config/config.js';
import { normalise } from '../events/normalise.js';
import { decoderFor } from '../events/decode.js';
import { FORMATS, isFormat } from '../events/envelopes/index.js';
import type { RawRecord } from '../events/record.js';
import { readFileRecords } from '../sources/file-read.js';
import { newRedactionKey } from '../events/redact.js';
import type { NormalisedEvent } from '../events/types.js';
import { SEVERITIES, severityRank, type Alert, type Severity } from '../detect/alert.js';
import { AlertGrouper } from '../detect/grouping.js';
import { createDetector } from '../detect/index.js';
import { RuleLoadError } from '../detect/rule.js';
import { ConfigError } from '../errors.js';
import { LineSplitter } from '../sources/lines.js';
import { parse, table, UsageError } from './common.js';

export const DETECT_HELP = `Usage: kaudit detect [FILE...] [options]

Runs the detection rules over audit logs (stdin when no FILE) with no store, and prints one alert a line as JSON
(rule, severity, title, summary, auditID, stage, time, user, objectRef, tags, mitre, groupKey, details).
Accepts what ingest accepts: JSON lines, an EventList or a JSON array, plain or gzipped, and the managed clusters'
exports. Bad input is reported on
stderr, one line per record, and skipped.

  --rules DIR            rules directory or file (default: the bundled detections/)
  --config FILE          kaudit config file: cluster, redaction, and detection tuning (detection: key)
  --cluster NAME         cluster name stamped on events (default: the one the envelope names, else config cluster,
                         "default"); given, it wins over the envelope's
  --format F             auto (default: EKS, GKE, AKS and forwarder records unwrapped by shape), native, eks, gke,
                         aks or forwarder
  --min-severity SEV     print only alerts at or above SEV (${SEVERITIES.join(', ')})
  --fail-on SEV          exit 1 when any alert is at or above SEV (for CI)
  --max-line SIZE        longest accepted line in bytes (default 1048576)
  --no-group             print every firing; by default repeats of one rule for the same identity and object
                         within the config's store.alertGroupWindow (default 10m) of event time are one alert
                         with count, firstTime, lastTime and lastAuditID, as the store keeps them; a group is
                         printed once it closes (a window of event time passes) or at the end of the input
  --stats                print per-rule evaluation counts on stderr at the end
  --quiet                no summary line on stderr
`;

interface Io {
  stdin: Readable | NodeJS.ReadableStream;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

function severityArg(v: string | undefined, flag: string): Severity | undefined {
  if (v === undefined) return undefined;
  if (!(SEVERITIES as readonly string[]).includes(v)) throw new UsageError(`${flag} must be one of ${SEVERITIES.join(', ')}`);
  return v as Severity;
}

const MAX_STDIN_DOCUMENT = 256 << 20;

/**
 * Records from stdin: JSON lines, or (when the input starts with `[` or is a pretty-printed object) one document
 * read whole, up to 256 MiB.
 */
async function* stdinRecords(input: Io['stdin'], maxLine: number): AsyncGenerator<RawRecord[]> {
  const splitter = new LineSplitter(maxLine);
  let mode: 'lines' | 'document' | undefined;
  const head: Buffer[] = [];
  let headLen = 0;
  let out: RawRecord[] = [];
  const push = (l: { text?: string; tooLong?: true; bytes?: number; lineNo: number }) => {
    if (l.tooLong) out.push({ error: `line is ${l.bytes} bytes, over the ${maxLine}-byte limit`, where: `stdin:${l.lineNo}` });
    else if (l.text!.trim().length > 0) out.push({ text: l.text, where: `stdin:${l.lineNo}` });
  };
  for await (const raw of input as AsyncIterable<Buffer | string>) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    if (mode === undefined) {
      head.push(chunk);
      headLen += chunk.length;
      const buf = Buffer.concat(head);
      const text = buf.toString('utf8');
      const first = text.search(/\S/);
      if (first < 0) continue;
      if (text[first] === '[') mode = 'document';
      else {
        const nl = text.indexOf('\n', first);
        if (nl < 0 && headLen < maxLine) continue;
        let whole: boolean;
        try {
          JSON.parse(text.slice(first, nl < 0 ? undefined : nl));
          whole = true;
        } catch {
          whole = false;
        }
        mode = whole || text[first] !== '{' ? 'lines' : 'document';
      }
      if (mode === 'lines') {
        splitter.push(buf, push);
        head.length = 0;
      }
    } else if (mode === 'lines') splitter.push(chunk, push);
    else {
      head.push(chunk);
      headLen += chunk.length;
      if (headLen > MAX_STDIN_DOCUMENT) {
        yield [{ error: `document on stdin is over ${MAX_STDIN_DOCUMENT} bytes; pass it as a FILE instead`, where: 'stdin' }];
        return;
      }
    }
    if (out.length > 0) {
      yield out;
      out = [];
    }
  }
  if (mode === 'document' || (mode === undefined && headLen > 0)) {
    const text = Buffer.concat(head).toString('utf8');
    if (text.trim()) yield [{ text, where: 'stdin' }];
    return;
  }
  splitter.flush(push);
  if (out.length > 0) yield out;
}

export async function runDetect(argv: string[], io: Io = process): Promise<number> {
  const { values, positionals } = parse(argv, {
    rules: { type: 'string' },
    config: { type: 'string' },
    cluster: { type: 'string' },
    format: { type: 'string' },
    'min-severity': { type: 'string' },
    'fail-on': { type: 'string' },
    'max-line': { type: 'string' },
    stats: { type: 'boolean' },
    'no-group': { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout.write(DETECT_HELP);
    return 0;
  }
  const minSeverity = severityArg(values['min-severity'], '--min-severity');
  const failOn = severityArg(values['fail-on'], '--fail-on');
  const maxLine = values['max-line'] ? Number(values['max-line']) : undefined;
  if (maxLine !== undefined && !(Number.isInteger(maxLine) && maxLine > 0)) throw new UsageError('--max-line must be a number of bytes');
  const format = values.format ?? 'auto';
  if (!isFormat(format)) throw new UsageError(`--format must be one of ${FORMATS.join(', ')}`);
  // A --cluster is fixed (see RawBatch.clusterFixed): an envelope's cluster does not override it.
  const clusterFixed = values.cluster !== undefined;
  const decoder = decoderFor(format);
  let engine;
  let cluster: string;
  let redaction: { enabled: boolean; key: Buffer };
  let groupWindowMs: number;
  try {
    const cfg = loadConfig(values.config);
    groupWindowMs = cfg.store.alertGroupWindow;
    cluster = values.cluster ?? cfg.cluster;
    redaction = { enabled: cfg.redaction.enabled, key: newRedactionKey() };
    engine = await createDetector({ rulesDir: values.rules, config: cfg.detection, onWarning: (m) => io.stderr.write(`kaudit detect: ${m}\n`) });
  } catch (e) {
    if (e instanceof RuleLoadError || e instanceof ConfigError) {
      io.stderr.write(`kaudit detect: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const minRank = minSeverity ? severityRank(minSeverity) : 0;
  const failRank = failOn ? severityRank(failOn) : Infinity;
  let events = 0;
  let bad = 0;
  let printed = 0;
  let failed = false;
  let batch: NormalisedEvent[] = [];
  const print = (a: Alert) => {
    if (severityRank(a.severity) < minRank) return;
    const { id: _id, timeMicros: _t, ...out } = a;
    io.stdout.write(JSON.stringify(out) + '\n');
    printed++;
  };
  const grouper = values['no-group'] ? undefined : new AlertGrouper(groupWindowMs * 1000, print);
  const flush = async () => {
    if (batch.length === 0) return;
    const alerts = await engine.detect(batch);
    batch = [];
    for (const a of alerts) {
      if (severityRank(a.severity) >= failRank) failed = true;
      if (grouper) grouper.add(a);
      else print(a);
    }
  };
  const sources: AsyncIterable<RawRecord[]>[] =
    positionals.length > 0 ? positionals.map((p) => readFileRecords(p, maxLine ? { maxLine } : {})) : [stdinRecords(io.stdin, maxLine ?? 1 << 20)];
  for (const [i, src] of sources.entries()) {
    try {
      for await (const recs of src) {
        for (const r of recs) {
          for (const d of decoder.decode(r)) {
            if ('error' in d) {
              bad++;
              io.stderr.write(`kaudit detect: bad input at ${d.where === undefined ? r.where : `${r.where} ${d.where}`}: ${d.error}\n`);
              continue;
            }
            events++;
            batch.push(normalise(d.event, clusterFixed ? cluster : (d.cluster ?? cluster), redaction, d.text));
            if (batch.length >= 512) await flush();
          }
        }
      }
    } catch (e) {
      bad++;
      const where = positionals[i] ?? 'stdin';
      io.stderr.write(`kaudit detect: cannot read ${where}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    }
  }
  await flush();
  grouper?.flush();
  if (values.stats) {
    const rows = engine.stats().filter((s) => s.candidates > 0);
    io.stderr.write(
      table(rows as unknown as Record<string, unknown>[], ['rule', 'candidates', 'checked', 'conditionEvaluations', 'matched', 'alerts', 'errors', 'sharedBy']),
    );
  }
  if (!values.quiet) {
    const grouped =
      grouper && grouper.firings > printed ? `; ${grouper.firings} firings grouped by rule, identity and object within ${groupWindowMs / 1000}s` : '';
    io.stderr.write(`kaudit detect: ${events} events, ${printed} alerts printed, ${bad} bad records, ${engine.rules.length} rules${grouped}\n`);
  }
  return failed ? 1 : 0;
}
