import { KauditError } from '../errors.js';
import { BadInputError } from '../events/errors.js';
import { log } from '../log.js';
import { startWriterEarly } from '../store/writer.js';
import { UsageError } from './common.js';

type Run = (argv: string[]) => Promise<number>;

interface Command {
  summary: string;
  module: string;
  /** A literal import() each, so that the build's bundler (scripts/bundle.mjs) can follow it into a chunk. */
  load: () => Promise<Run>;
}

/** Each command lives in its own module, loaded only when run, so `kaudit query` does not load the detection engine. */
const COMMANDS: Record<string, Command> = {
  serve: { summary: 'run the API, webhook receiver, alert feed and log tails', module: './serve.js', load: async () => (await import('./serve.js')).runServe },
  ingest: {
    summary: 'import audit log files (plain, .gz, JSON lines, EventList, arrays)',
    module: './ingest.js',
    load: async () => (await import('./ingest.js')).runIngest,
  },
  query: {
    summary: 'ask the store: events, exec, secret-reads, rbac-changes, activity, top, alerts, psa-violations, posture, dead-letters',
    module: './query.js',
    load: async () => (await import('./query.js')).runQuery,
  },
  detect: {
    summary: 'run the detection rules over logs or stdin, no store; one alert a line',
    module: './detect.js',
    load: async () => (await import('./detect.js')).runDetect,
  },
  rules: { summary: 'list, lint and test the detection rules', module: './rules.js', load: async () => (await import('./rules.js')).runRules },
  alerts: {
    summary: 'print stored alerts, or follow the live alert feed (--follow)',
    module: './alerts.js',
    load: async () => (await import('./alerts.js')).runAlerts,
  },
  policy: {
    summary: 'check, evaluate, simulate and generate audit policies (CIS 3.2.1/3.2.2)',
    module: './policy.js',
    load: async () => (await import('./policy.js')).runPolicy,
  },
  'webhook-config': {
    summary: "write the kubeconfig for kube-apiserver's --audit-webhook-config-file",
    module: './webhook-config.js',
    load: async () => (await import('./webhook-config.js')).runWebhookConfig,
  },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return `kaudit: Kubernetes audit-log ingest, detection, query and audit-policy engine

Usage: kaudit COMMAND [options]   (kaudit COMMAND --help for each)

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}
`;
}

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(help());
    return cmd ? 0 : 2;
  }
  if (cmd === '--version') {
    process.stdout.write('kaudit 0.1.0\n');
    return 0;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    process.stderr.write(`kaudit: unknown command "${cmd}"; run kaudit --help\n`);
    return 2;
  }
  // An import's store writer starts its thread now, beside the loading of the command (see startWriterEarly).
  if (cmd === 'ingest' && !rest.includes('--help') && !rest.includes('-h')) startWriterEarly();
  try {
    const run = await c.load();
    return await run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`kaudit ${cmd}: ${e.message} (kaudit ${cmd} --help)\n`);
      return 2;
    }
    // kaudit's named errors say what to fix in one line (a config key, a query parameter, a rule file): no stack.
    if ((e instanceof KauditError && !e.retriable) || e instanceof BadInputError) {
      process.stderr.write(`kaudit ${cmd}: ${e.message}\n`);
      return 2;
    }
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(c.module.slice(2))) {
      process.stderr.write(`kaudit ${cmd}: not available in this build\n`);
      return 2;
    }
    const err = e as NodeJS.ErrnoException;
    log.error(`kaudit ${cmd}: ${err.message}`);
    return 1;
  }
}
