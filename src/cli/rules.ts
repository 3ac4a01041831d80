import { loadConfig } from '../config/config.js';
import { SEVERITIES } from '../detect/alert.js';
import { DetectionEngine } from '../detect/engine.js';
import { runExamples } from '../detect/examples.js';
import { defaultRulesDir } from '../detect/index.js';
import { lintRuleSet } from '../detect/lint.js';
import { compilePatterns } from '../detect/patterns.js';
import { activeShippedExceptions } from '../detect/exceptions.js';
import { explainEvent, explainRule } from '../detect/explain.js';
import { normalise } from '../events/normalise.js';
import { decodeRecord } from '../events/decode.js';
import { readFileRecords } from '../sources/file-read.js';
import { newRedactionKey } from '../events/redact.js';
import type { AuditEvent } from '../events/types.js';
import { formatIssue, loadRuleSet } from '../detect/rule.js';
import { parse, table, UsageError } from './common.js';

export const RULES_HELP = `Usage: kaudit rules COMMAND [--rules DIR] [--config FILE] [options]

  list   print the catalog: id, severity, kind, audit level needed, MITRE tags, title
         --json            one JSON object a line instead of a table
  lint   check every rule file: ids, shapes, match fields, JSONata expressions (fields read, functions
         called, lists named), summary placeholders, examples present; exit 1 on errors
         --strict          warnings fail too
  explain ID   one rule in full: what it matches, its condition, its outcome gate, the routine traffic it is
         quiet on (shipped exceptions, with the lists they use), the config's exceptions, and whether it runs
         --event FILE      instead: why the first audit event of FILE does or does not raise the rule (which
                           match keys fail, the exception it falls under, the condition, the alert)
  test   run every rule's examples (events that must fire and must not); exit 1 on a failure
         --rule ID         only these rules (repeatable; globs allowed)
         --verbose         print passing examples too

  --rules DIR    rules directory or file (default: the bundled detections/)
  --config FILE  kaudit config file; its detection: key tunes the catalog (list shows the effect)
`;

interface Io {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

export async function runRules(argv: string[], io: Io = process): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout.write(RULES_HELP);
    return sub ? 0 : 2;
  }
  const { values, positionals } = parse(
    rest,
    {
      rules: { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean' },
      strict: { type: 'boolean' },
      rule: { type: 'string', multiple: true },
      verbose: { type: 'boolean', short: 'v' },
      event: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    sub === 'explain',
  );
  if (values.help) {
    io.stdout.write(RULES_HELP);
    return 0;
  }
  // Only the file's detection: key matters here; the environment's settings are for the running service.
  const config = values.config ? loadConfig(values.config).detection : {};
  const dir = values.rules ?? config.rulesDir ?? defaultRulesDir();
  const set = loadRuleSet(dir);
  switch (sub) {
    case 'lint': {
      const issues = lintRuleSet(set, config);
      for (const i of issues) io.stdout.write(formatIssue(i) + '\n');
      const errors = issues.filter((i) => i.level === 'error').length;
      const warnings = issues.length - errors;
      io.stdout.write(`${set.rules.length} rules, ${set.lists.size} lists: ${errors} errors, ${warnings} warnings\n`);
      return errors > 0 || (values.strict && warnings > 0) ? 1 : 0;
    }
    case 'test': {
      const loadErrors = set.issues.filter((i) => i.level === 'error');
      for (const i of loadErrors) io.stderr.write(formatIssue(i) + '\n');
      const only = values.rule ? compilePatterns(values.rule) : undefined;
      const results = await runExamples(set, only);
      let failed = 0;
      for (const r of results) {
        const label = `${r.file}:${r.line}: ${r.rule} ${r.kind}[${r.index}]${r.name ? ` (${r.name})` : ''}`;
        if (r.ok) {
          if (values.verbose) io.stdout.write(`ok    ${label}\n`);
          continue;
        }
        failed++;
        const why = r.error ? r.error : `expected ${r.expected} alert(s), got ${r.got}`;
        io.stdout.write(`FAIL  ${label}: ${why}\n`);
      }
      const rules = new Set(results.map((r) => r.rule)).size;
      io.stdout.write(`${results.length - failed}/${results.length} examples passed (${rules} rules)\n`);
      return failed > 0 || loadErrors.length > 0 || results.length === 0 ? 1 : 0;
    }
    case 'list': {
      const errors = set.issues.filter((i) => i.level === 'error');
      if (errors.length > 0) {
        for (const i of errors) io.stderr.write(formatIssue(i) + '\n');
        return 1;
      }
      const engine = new DetectionEngine({ rules: set.rules, lists: set.lists, config, onWarning: () => {} });
      const inactive = new Map(engine.inactive.map((i) => [i.id, i.reason]));
      const running = new Map(engine.rules.map((r) => [r.id, r]));
      const rows = set.rules.map((s) => {
        const r = running.get(s.id);
        return {
          id: s.id,
          severity: r?.severity ?? s.severity,
          kind: s.threshold ? 'threshold' : s.sequence ? 'sequence' : 'event',
          level: r?.level ?? '',
          mitre: s.tags.filter((t) => /^T\d{4}/.test(t)),
          status: inactive.get(s.id) ?? 'on',
          exceptions:
            activeShippedExceptions(s.exceptions, config.rules?.[s.id] ?? {})
              .map((x) => x.name)
              .join(',') || '-',
          title: s.title,
        };
      });
      rows.sort((a, b) => SEVERITIES.indexOf(b.severity) - SEVERITIES.indexOf(a.severity) || a.id.localeCompare(b.id));
      if (values.json) for (const r of rows) io.stdout.write(JSON.stringify(r) + '\n');
      else io.stdout.write(table(rows, ['id', 'severity', 'kind', 'level', 'mitre', 'status', 'exceptions', 'title']));
      return 0;
    }
    case 'explain': {
      const id = positionals[0];
      const spec = set.rules.find((r) => r.id === id);
      if (!spec) throw new UsageError(id ? `no rule "${id}" (kaudit rules list)` : 'kaudit rules explain ID');
      if (values.event) {
        const ev = await firstEvent(values.event);
        io.stdout.write(await explainEvent(spec, set, config, normalise(ev, 'explain', { enabled: true, key: newRedactionKey() })));
        return 0;
      }
      io.stdout.write(explainRule(spec, set, config));
      return 0;
    }
    default:
      throw new UsageError(`unknown rules command "${sub}" (list, lint, test)`);
  }
}

/** The first audit event of a file (JSON lines, an EventList or an array), for `rules explain --event`. */
async function firstEvent(path: string): Promise<AuditEvent> {
  for await (const recs of readFileRecords(path)) {
    for (const r of recs) {
      for (const d of decodeRecord(r)) {
        if ('error' in d) throw new UsageError(`--event ${path}: ${d.error}`);
        return d.event;
      }
    }
  }
  throw new UsageError(`--event ${path}: no audit event in the file`);
}
