/**
 * `kaudit serve` as a real process (bin/kaudit.js from the built dist/), for tests of a fleet of nodes: started with a
 * YAML config on a free 127.0.0.1 port, stopped with SIGTERM (a graceful stop) or killed with SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/kaudit.js', import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface ServeProcess {
  name: string;
  child: ChildProcess;
  url: string;
  /** The last 50 kB of its stderr (its log). */
  log(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  get(path: string): Promise<unknown>;
  /** A metric's value (summed over its label sets), or undefined when /metrics does not have it. */
  metric(name: string): Promise<number | undefined>;
  /** SIGTERM: finish the batches in hand, leave the group, exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL: no commit, no LeaveGroup. */
  kill(): Promise<void>;
  alive(): boolean;
}

/**
 * Writes `config` (an object, written as JSON: YAML reads it) to `dir/<name>.yaml` and starts `kaudit serve` with it;
 * resolves once /healthz answers. `server.listen` is set to a free port.
 */
export async function startServeProcess(dir: string, name: string, config: Record<string, unknown>, args: string[] = []): Promise<ServeProcess> {
  const port = await freePort();
  const file = join(dir, `${name}.yaml`);
  const server = { ...((config.server as Record<string, unknown> | undefined) ?? {}), listen: `127.0.0.1:${port}` };
  writeFileSync(file, JSON.stringify({ ...config, server }, null, 2));
  const child = spawn(process.execPath, [BIN, 'serve', '--config', file, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, KAUDIT_LOG_LEVEL: process.env.KAUDIT_LOG_LEVEL ?? 'info' },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-50_000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = `http://127.0.0.1:${port}`;
  const alive = () => child.exitCode === null && child.signalCode === null;
  const p: ServeProcess = {
    name,
    child,
    url,
    log: () => stderr,
    exited,
    alive,
    async get(path) {
      const r = await fetch(url + path);
      if (!r.ok) throw new Error(`${name} GET ${path}: ${r.status} ${await r.text()}`);
      return r.headers.get('content-type')?.includes('json') ? r.json() : r.text();
    },
    async metric(metric) {
      const text = (await p.get('/metrics')) as string;
      let sum: number | undefined;
      for (const line of text.split('\n')) {
        if (!line.startsWith(metric)) continue;
        const rest = line.slice(metric.length);
        if (rest[0] !== ' ' && rest[0] !== '{') continue;
        sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
    async stop() {
      if (alive()) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!alive()) throw new Error(`kaudit serve ${name} exited before it answered: ${stderr.slice(-3000)}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`kaudit serve ${name} did not answer within 60 s: ${stderr.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return p;
}
