/** `kaudit policy`: check, evaluate, tabulate, simulate and generate kube-apiserver audit policies. */
import { access, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../config/config.js';
import { readEventFiles } from '../sources/file-read.js';
import { checkPolicy, severityAtLeast, type Severity } from '../policy/checks.js';
import { decisionJson, evaluatePolicy } from '../policy/evaluate.js';
import { generatePolicy, PROFILES, type Profile } from '../policy/generate.js';
import { loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import { checkApiserverFlags, loadApiserverManifest } from '../policy/manifest.js';
import { buildMatrix, formatMatrix } from '../policy/matrix.js';
import { formatJson, formatSarif, formatText, type FullReport } from '../policy/report.js';
import {
  DetectionCatalogUnavailable,
  loadDetectionRequirements,
  parseRequirements,
  type DetectionCatalogOptions,
  type RuleRequirement,
} from '../policy/requirements.js';
import { formatSimulation, simulatePolicy } from '../policy/simulate.js';
import type { RequestAttributes } from '../policy/types.js';
import { validatePolicy } from '../policy/validate.js';

export const POLICY_HELP = `Usage: kaudit policy COMMAND [options]

Commands:
  check FILE       judge a policy: validity, unknown fields, CIS 3.2.1/3.2.2, detection blind spots, shadowed rules,
                   noise; with --apiserver-manifest also the kube-apiserver audit flags (kube-bench ids)
  eval             read request attributes (JSON, one a line) on stdin, print the level and stages of each
  matrix FILE      table of resource x verb with the level each gets, and key identities that differ
  simulate         replay a captured log through a policy: volume per rule, detections that would go blind
  generate         write an audit policy (minimal, recommended, strict), optionally tuned on a captured log

kaudit policy COMMAND --help for the options of each.
`;

const CHECK_HELP = `Usage: kaudit policy check [FILE] [--apiserver-manifest FILE] [--format text|json|sarif] [options]

FILE defaults to the --audit-policy-file named in the manifest (on a control-plane node).

Exit code 1 when a check fails (an error finding), 0 otherwise; 2 for unreadable input.

  --apiserver-manifest FILE  kube-apiserver static pod manifest: check the audit flags as kube-bench does
  --cis-version NAME         CIS benchmark for the flag ids (e.g. cis-1.10); default: from the manifest's image
  --format FORMAT            text (default), json or sarif
  --fail-on SEVERITY         error (default), warning or note: the least severity that fails
  --requirements FILE        detection requirements (YAML/JSON list) instead of the detection engine's
  --rules DIR                detection rules directory for the detection engine
  --detect-config FILE       detection config file (enabled rules) for the detection engine
  --no-detections            skip the detection-blind-spot check
  --posture-namespaces NS,.. the namespaces whose pod and workload writes the posture checks need at Request
                             (workload-bodies; default: every namespace)
`;

const EVAL_HELP = `Usage: kaudit policy eval --policy FILE < requests.jsonl

Each input line: {"user": {"name": "...", "groups": ["..."]} or null, "verb": "get", "resourceRequest": true,
"apiGroup": "", "apiVersion": "v1", "namespace": "default", "resource": "pods", "subresource": "log",
"name": "busybox", "path": "/api/v1/namespaces/default/pods/busybox/log"}
Each output line: {"level": "...", "omitStages": [sorted], "omitManagedFields": false, "rule": index or null}
A bad input line prints {"error": "..."} in its place (and a line on stderr); the exit code is then 1.
`;

const MATRIX_HELP = `Usage: kaudit policy matrix FILE [--user NAME] [--group GROUP]... [--namespace NS] [--format text|json]

  --user NAME        identity of the main table (default: an ordinary authenticated user)
  --group GROUP      groups of that identity (repeatable; default system:authenticated)
  --unauthenticated  evaluate as a request that failed authentication (no user)
  --namespace NS     namespace of namespaced requests (default "default")
`;

const SIMULATE_HELP = `Usage: kaudit policy simulate --policy FILE [--format text|json] LOG...

Replays captured audit logs (plain or .gz; JSON lines, EventList or arrays), ideally captured at RequestResponse with
no stage omitted, through the policy: events and bytes kept per rule, total against the input, and which detections
would have gone blind on this traffic.

  --requirements FILE / --rules DIR / --detect-config FILE / --no-detections   as for check
`;

const GENERATE_HELP = `Usage: kaudit policy generate [--profile minimal|recommended|strict] [--from-log LOG...]

Writes an audit-policy.yaml to stdout that passes \`kaudit policy check\` with no failures.
  minimal       CIS 3.2.1 and 3.2.2: everything at Metadata, secrets never above it, known noise dropped
  recommended   (default) also request bodies of every change, so that no enabled detection is blind
  strict        request and response bodies of every change
  --from-log LOG...  tune the recommended profile on captured traffic: drop what only system identities read at high
                     volume, keep everything a detection needs; prints the expected volume reduction on stderr
  --min-share F      least share of all events for a read pattern to be dropped (default 0.01)
  --min-events N     least number of events for a read pattern to be dropped (default 10)
  --requirements FILE / --rules DIR / --detect-config FILE / --no-detections   as for check
`;

/** Where the commands read and write; tests pass their own streams. */
export interface PolicyIo {
  stdin: NodeJS.ReadableStream;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

let io: PolicyIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };

class CliError extends Error {
  constructor(
    message: string,
    readonly code = 2,
  ) {
    super(message);
  }
}

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function args(argv: string[], options: NonNullable<ParseArgsConfig['options']>): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (e) {
    throw new CliError(`${(e as Error).message}`);
  }
}

async function loadPolicyOrFail(path: string | undefined, what = 'policy'): Promise<LoadedPolicy> {
  if (!path) throw new CliError(`a ${what} file is required`);
  try {
    return await loadPolicyFile(path);
  } catch (e) {
    throw new CliError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** A policy that must evaluate like the apiserver's: refuse what the apiserver refuses. */
async function loadUsablePolicy(path: string | undefined): Promise<LoadedPolicy & { policy: NonNullable<LoadedPolicy['policy']> }> {
  const l = await loadPolicyOrFail(path);
  const first = l.decodeErrors[0];
  if (!l.policy || first)
    throw new CliError(`${path}${first?.line ? `:${first.line}` : ''}: ${first?.path ? `${first.path}: ` : ''}${first?.message ?? 'cannot be decoded'}`);
  const v = validatePolicy(l.policy);
  if (v.length > 0) {
    const line = l.lineOf(v[0]!.path);
    throw new CliError(
      `${path}${line ? `:${line}` : ''}: kube-apiserver would refuse this policy: ${v[0]!.path}: ${v[0]!.message}${v.length > 1 ? ` (and ${v.length - 1} more; run kaudit policy check)` : ''}`,
    );
  }
  for (const u of l.unknownFields)
    io.stderr.write(`kaudit policy: warning: ${path}${u.line ? `:${u.line}` : ''}: ${u.path ? `${u.path}: ` : ''}${u.message}\n`);
  return l as LoadedPolicy & { policy: NonNullable<LoadedPolicy['policy']> };
}

interface RequirementSource {
  requirements?: RuleRequirement[];
  note?: string;
}

async function requirementsFrom(values: Record<string, unknown>): Promise<RequirementSource> {
  if (values['no-detections']) return { note: 'skipped (--no-detections)' };
  const file = values.requirements as string | undefined;
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    let v: unknown;
    try {
      v = parseYaml(text);
    } catch (e) {
      throw new CliError(`${file}: not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
    }
    try {
      return { requirements: parseRequirements(v, file) };
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  }
  try {
    const opts: DetectionCatalogOptions = {};
    if (typeof values.rules === 'string') opts.rulesDir = values.rules;
    if (typeof values['detect-config'] === 'string') opts.config = loadConfig(values['detect-config']).detection;
    return { requirements: await loadDetectionRequirements(opts) };
  } catch (e) {
    if (e instanceof DetectionCatalogUnavailable) return { note: `${e.message}; pass --requirements FILE or --no-detections` };
    const why = `loading the detection rules: ${(e as Error).message.split('\n')[0]}`;
    // Rules the user named must load; a broken bundled catalog only costs the blind-spot check.
    if (typeof values.rules === 'string' || typeof values['detect-config'] === 'string') throw new CliError(why);
    return { note: `${why}; pass --rules DIR, --requirements FILE or --no-detections` };
  }
}

const DETECTION_OPTIONS = {
  requirements: { type: 'string' },
  rules: { type: 'string' },
  'detect-config': { type: 'string' },
  'no-detections': { type: 'boolean' },
} as const;

async function runCheck(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {
    'apiserver-manifest': { type: 'string' },
    'cis-version': { type: 'string' },
    format: { type: 'string', default: 'text' },
    'fail-on': { type: 'string', default: 'error' },
    'posture-namespaces': { type: 'string' },
    ...DETECTION_OPTIONS,
  });
  if (values.help) return help(CHECK_HELP);
  const manifestPath = values['apiserver-manifest'] as string | undefined;
  if (positionals.length > 1 || (positionals.length === 0 && !manifestPath))
    throw new CliError('expected exactly one policy FILE (or --apiserver-manifest naming it)');
  const format = values.format as string;
  if (!['text', 'json', 'sarif'].includes(format)) throw new CliError(`--format must be text, json or sarif, not ${JSON.stringify(format)}`);
  const failOn = values['fail-on'] as string;
  if (!['error', 'warning', 'note'].includes(failOn)) throw new CliError('--fail-on must be error, warning or note');
  let flags;
  if (manifestPath) {
    try {
      flags = await loadApiserverManifest(manifestPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new CliError(code ? `cannot read ${manifestPath}: ${code}` : (e as Error).message);
    }
  }
  // On a control-plane node the manifest names the policy file.
  const policyPath = positionals[0] ?? flags?.flags.get('audit-policy-file');
  if (!policyPath) throw new CliError(`${manifestPath} sets no --audit-policy-file: give the policy FILE`);
  const loaded = await loadPolicyOrFail(policyPath);
  const reqs = await requirementsFrom(values);
  const report: FullReport = checkPolicy(loaded, {
    ...(reqs.requirements ? { requirements: reqs.requirements } : {}),
    ...(reqs.note ? { requirementsUnavailable: reqs.note } : {}),
    ...(values['posture-namespaces'] ? { postureNamespaces: (values['posture-namespaces'] as string).split(',').filter(Boolean) } : {}),
  });
  if (manifestPath && flags) {
    let m;
    try {
      m = checkApiserverFlags(flags, manifestPath, values['cis-version'] as string | undefined);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    report.findings.push(...m.findings);
    // cis-3.2.1 may already have failed on the policy itself; a pass from the flag does not hide that.
    const failed = new Set(report.findings.map((f) => f.id));
    for (const id of m.passed) if (!failed.has(id) && !report.passed.includes(id)) report.passed.push(id);
    report.passed = report.passed.filter((id) => !failed.has(id));
    report.manifest = { file: manifestPath, benchmark: m.benchmark };
  }
  const text = format === 'json' ? formatJson(report) : format === 'sarif' ? formatSarif(report) : formatText(report);
  io.stdout.write(text);
  return report.findings.some((f) => severityAtLeast(f.severity, failOn as Severity)) ? 1 : 0;
}

function str(v: unknown, field: string, where: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new Error(`${where}: ${field} must be a string`);
  return v;
}

/** Parses one `eval` input line into request attributes; throws with what is wrong. */
export function parseAttributes(line: string, where: string): RequestAttributes {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw new Error(`${where}: not JSON (${(e as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${where}: expected a JSON object of request attributes`);
  const o = v as Record<string, unknown>;
  let user: RequestAttributes['user'] = null;
  if (o.user !== undefined && o.user !== null) {
    const u = o.user as Record<string, unknown>;
    if (typeof u !== 'object' || Array.isArray(u)) throw new Error(`${where}: user must be an object {name, groups} or null`);
    const groups = u.groups ?? [];
    if (!Array.isArray(groups) || groups.some((g) => typeof g !== 'string')) throw new Error(`${where}: user.groups must be a list of strings`);
    user = { name: str(u.name ?? u.username, 'user.name', where), groups: groups as string[] };
  }
  if (o.resourceRequest !== undefined && typeof o.resourceRequest !== 'boolean') throw new Error(`${where}: resourceRequest must be true or false`);
  const verb = str(o.verb, 'verb', where);
  if (verb === '') throw new Error(`${where}: verb is required`);
  return {
    user,
    verb,
    resourceRequest: (o.resourceRequest as boolean | undefined) ?? false,
    apiGroup: str(o.apiGroup, 'apiGroup', where),
    apiVersion: str(o.apiVersion, 'apiVersion', where),
    namespace: str(o.namespace, 'namespace', where),
    resource: str(o.resource, 'resource', where),
    subresource: str(o.subresource, 'subresource', where),
    name: str(o.name, 'name', where),
    path: str(o.path, 'path', where),
  };
}

async function runEval(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { policy: { type: 'string' } });
  if (values.help) return help(EVAL_HELP);
  if (positionals.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(positionals[0])}; requests are read from stdin`);
  const l = await loadUsablePolicy(values.policy as string | undefined);
  const rl = createInterface({ input: io.stdin, crlfDelay: Infinity });
  let n = 0;
  let bad = 0;
  const out: string[] = [];
  const flush = () => {
    if (out.length > 0) {
      io.stdout.write(out.join(''));
      out.length = 0;
    }
  };
  for await (const line of rl) {
    n++;
    if (line.trim() === '') continue;
    try {
      const a = parseAttributes(line, `stdin:${n}`);
      out.push(JSON.stringify(decisionJson(evaluatePolicy(l.policy, a))) + '\n');
    } catch (e) {
      bad++;
      io.stderr.write(`kaudit policy eval: ${(e as Error).message}\n`);
      out.push(JSON.stringify({ error: (e as Error).message }) + '\n');
    }
    if (out.length >= 256) flush();
  }
  flush();
  return bad > 0 ? 1 : 0;
}

async function runMatrix(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {
    user: { type: 'string' },
    group: { type: 'string', multiple: true },
    unauthenticated: { type: 'boolean' },
    namespace: { type: 'string' },
    format: { type: 'string', default: 'text' },
  });
  if (values.help) return help(MATRIX_HELP);
  if (positionals.length !== 1) throw new CliError('expected exactly one policy FILE');
  const l = await loadUsablePolicy(positionals[0]);
  const user = values.unauthenticated
    ? null
    : values.user || values.group
      ? { name: (values.user as string | undefined) ?? 'kaudit-probe-user', groups: (values.group as string[] | undefined) ?? ['system:authenticated'] }
      : undefined;
  const m = buildMatrix(l.policy, { ...(user !== undefined ? { user } : {}), ...(values.namespace ? { namespace: values.namespace as string } : {}) });
  if (values.format === 'json') io.stdout.write(JSON.stringify(m, null, 2) + '\n');
  else if (values.format === 'text') io.stdout.write(formatMatrix(m));
  else throw new CliError('--format must be text or json');
  return 0;
}

async function runSimulate(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, { policy: { type: 'string' }, format: { type: 'string', default: 'text' }, ...DETECTION_OPTIONS });
  if (values.help) return help(SIMULATE_HELP);
  if (positionals.length === 0) throw new CliError('give at least one LOG file to replay');
  if (!['text', 'json'].includes(values.format as string)) throw new CliError('--format must be text or json');
  const l = await loadUsablePolicy(values.policy as string | undefined);
  await assertReadable(positionals);
  const reqs = await requirementsFrom(values);
  if (reqs.note) io.stderr.write(`kaudit policy simulate: detections not checked: ${reqs.note}\n`);
  let report;
  try {
    report = await simulatePolicy(l.policy, readEventFiles(positionals), reqs.requirements ? { requirements: reqs.requirements } : {});
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CliError(err.code === 'ENOENT' ? `cannot read ${err.path ?? 'a log file'}: ENOENT` : `reading the logs: ${err.message}`);
  }
  if (values.format === 'json') io.stdout.write(JSON.stringify({ policy: l.source, ...report }, null, 2) + '\n');
  else io.stdout.write(formatSimulation(report, l.source, l.policy));
  return 0;
}

async function runGenerate(argv: string[]): Promise<number> {
  const { values, positionals } = args(argv, {
    profile: { type: 'string', default: 'recommended' },
    'from-log': { type: 'string', multiple: true },
    'min-share': { type: 'string' },
    'min-events': { type: 'string' },
    ...DETECTION_OPTIONS,
  });
  if (values.help) return help(GENERATE_HELP);
  const profile = values.profile as string;
  if (!(PROFILES as readonly string[]).includes(profile)) throw new CliError(`--profile must be one of ${PROFILES.join(', ')}`);
  // `--from-log a.log b.log`: the words after the first log are logs too.
  const logs = [...((values['from-log'] as string[] | undefined) ?? []), ...positionals];
  if (positionals.length > 0 && !values['from-log']) throw new CliError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if (logs.length > 0 && profile === 'minimal') throw new CliError('--from-log tunes the recommended or strict profile, not minimal');
  await assertReadable(logs);
  const num = (name: string, v: unknown) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new CliError(`--${name} must be a non-negative number`);
    return n;
  };
  const reqs = await requirementsFrom(values);
  if (reqs.note) io.stderr.write(`kaudit policy generate: detection requirements not used: ${reqs.note}\n`);
  const minShare = num('min-share', values['min-share']);
  const minEvents = num('min-events', values['min-events']);
  let result;
  try {
    result = await generatePolicy({
      profile: profile as Profile,
      ...(reqs.requirements ? { requirements: reqs.requirements } : {}),
      ...(reqs.note ? { requirementsNote: reqs.note } : {}),
      ...(logs.length > 0 ? { fromLog: () => readEventFiles(logs) } : {}),
      ...(minShare !== undefined ? { minShare } : {}),
      ...(minEvents !== undefined ? { minEvents } : {}),
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new CliError(`cannot read ${err.path ?? 'a log file'}: ENOENT`);
    throw e;
  }
  io.stdout.write(result.yaml);
  if (result.volume) {
    const v = result.volume;
    const pct = (a: number, b: number) => (b === 0 ? '0.0' : ((100 * (b - a)) / b).toFixed(1));
    io.stderr.write(
      `kaudit policy generate: expected volume ${v.tunedBytes} bytes (${v.tunedEvents} events) instead of ${v.inputBytes} bytes (${v.inputEvents} events) captured: -${pct(v.tunedBytes, v.inputBytes)}%; tuning dropped ${v.droppedPatterns} system read pattern(s), -${pct(v.tunedBytes, v.untunedBytes)}% against the untuned profile\n`,
    );
  }
  if (profile === 'minimal' && result.uncovered.length > 0) {
    io.stderr.write(
      `kaudit policy generate: ${result.uncovered.length} detection(s) stay blind with the minimal profile (${[...new Set(result.uncovered.map((u) => u.rule))].join(', ')}); use --profile recommended\n`,
    );
  } else for (const u of result.uncovered) io.stderr.write(`kaudit policy generate: detection ${u.rule} stays blind: ${u.reason}\n`);
  return 0;
}

/** Fails early, in one line, on a log that cannot be opened (before any stream is created for it). */
async function assertReadable(paths: string[]): Promise<void> {
  for (const p of paths) {
    try {
      await access(p);
    } catch (e) {
      throw new CliError(`cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
}

function help(text: string): number {
  io.stdout.write(text);
  return 0;
}

/** Entry point: argv are the words after `kaudit policy`; returns the exit code. */
export async function runPolicy(argv: string[], streams?: Partial<PolicyIo>): Promise<number> {
  const saved = io;
  io = { ...io, ...streams };
  try {
    return await dispatch(argv);
  } finally {
    io = saved;
  }
}

async function dispatch(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const commands: Record<string, (a: string[]) => Promise<number>> = {
    check: runCheck,
    eval: runEval,
    matrix: runMatrix,
    simulate: runSimulate,
    generate: runGenerate,
  };
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout.write(POLICY_HELP);
    return sub ? 0 : 2;
  }
  const run = commands[sub];
  if (!run) {
    io.stderr.write(`kaudit policy: unknown command ${JSON.stringify(sub)}; use check, eval, matrix, simulate or generate\n`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof CliError) {
      io.stderr.write(`kaudit policy ${sub}: ${e.message}\n`);
      return e.code;
    }
    io.stderr.write(`kaudit policy ${sub}: ${(e as Error).message.split('\n')[0]}\n`);
    return 1;
  }
}
