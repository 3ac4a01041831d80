/**
 * A real OpenSearch node for vitest: starts scripts/opensearch/opensearch.sh (single node, 127.0.0.1, a free port)
 * and stops it.
 *
 *   const node = await startOpenSearch();          // ~5-40 s; the first run also fetches the jars (~20 s)
 *   await fetch(`${node.url}/_cluster/health`)
 *   await node.restart({ hard: true });             // same port, same data
 *   await node.stop();
 *
 * Where Java or Maven is missing, `describeWithOpenSearch` skips its suite with a printed reason; with
 * KAUDIT_REQUIRE_OPENSEARCH=1 (set by .ci/run) the same suite fails instead, so CI cannot pass without running it.
 */
import { execFile, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../../scripts/opensearch/opensearch.sh', import.meta.url));

export interface OpenSearchNode {
  /** `http://127.0.0.1:PORT` */
  url: string;
  version: string;
  /** The node's directory: config/, data/, logs/node.log. */
  dir: string;
  /** Stops the node (SIGTERM, or SIGKILL with `hard`) and starts it again on the same port with the same data. */
  restart(opts?: { hard?: boolean }): Promise<void>;
  /** Stops the node but keeps its data, for a later `start()`. */
  halt(opts?: { hard?: boolean }): Promise<void>;
  start(): Promise<void>;
  /** Stops the node and removes its directory. */
  stop(): Promise<void>;
}

type Availability = { ok: true } | { ok: false; reason: string; broken?: boolean };
let availability: Availability | undefined;

/** Whether this machine can run a node (Java 17+, Maven unless cached, setpriv as root). Checked once. */
export function openSearchAvailability(): Availability {
  if (!availability) {
    const r = spawnSync('bash', [SCRIPT, 'check'], { encoding: 'utf8' });
    const reason = (r.stderr || r.error?.message || '').trim() || `opensearch.sh check exited ${r.status ?? r.signal}`;
    availability = r.status === 0 ? { ok: true } : { ok: false, reason, broken: r.status !== 3 };
  }
  return availability;
}

export const openSearchRequired = process.env.KAUDIT_REQUIRE_OPENSEARCH === '1';

/** `describe` for suites that need a node: skipped with a printed reason where none can run, failed under CI. */
export function describeWithOpenSearch(name: string, fn: () => void): void {
  const a = openSearchAvailability();
  if (a.ok) describe(name, fn);
  else if (openSearchRequired || a.broken) {
    describe(name, () => {
      it('needs an OpenSearch node', () => {
        throw new Error(a.broken ? `checking for Java and Maven failed: ${a.reason}` : `KAUDIT_REQUIRE_OPENSEARCH=1 but no node can run here: ${a.reason}`);
      });
    });
  } else {
    process.stderr.write(`skipping OpenSearch tests "${name}": ${a.reason}\n`);
    describe.skip(name, fn);
  }
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`opensearch.sh ${args[0]} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

function parse(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (line.startsWith('OPENSEARCH_') && eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

export async function startOpenSearch(): Promise<OpenSearchNode> {
  const a = openSearchAvailability();
  if (!a.ok) throw new Error(`cannot start OpenSearch: ${a.reason}`);
  let env: Record<string, string>;
  for (let attempt = 1; ; attempt++) {
    try {
      env = parse(await run(['start', '--watch-pid', String(process.pid)]));
      break;
    } catch (e) {
      // Free ports are chosen before the node binds them: another test's server may take one in between.
      if (attempt >= 3 || !/port in use/.test((e as Error).message)) throw e;
    }
  }
  const dir = env.OPENSEARCH_DIR!;
  let running = true;
  const halt = async ({ hard = false }: { hard?: boolean } = {}) => {
    if (!running) return;
    if (hard) {
      try {
        process.kill(Number(env.OPENSEARCH_PID), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await run(['stop', '--dir', dir, '--keep']);
    running = false;
  };
  const start = async () => {
    if (running) return;
    env.OPENSEARCH_PID = parse(await run(['start', '--dir', dir, '--watch-pid', String(process.pid)])).OPENSEARCH_PID!;
    running = true;
  };
  return {
    url: env.OPENSEARCH_URL!,
    version: env.OPENSEARCH_VERSION!,
    dir,
    halt,
    start,
    async restart(opts = {}) {
      await halt(opts);
      await start();
    },
    async stop() {
      await run(['stop', '--dir', dir]);
      running = false;
    },
  };
}
