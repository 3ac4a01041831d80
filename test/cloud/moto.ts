/**
 * A real CloudWatch Logs API server for vitest: moto's server mode, started by scripts/moto/moto.sh (installed from
 * PyPI into a cache once) on 127.0.0.1. Where python3 cannot make a virtualenv, `describeWithMoto` skips its suite
 * with the reason; with KAUDIT_REQUIRE_MOTO=1 (set by .ci/run) it fails instead.
 */
import { execFile, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../../scripts/moto/moto.sh', import.meta.url));

export interface Moto {
  endpoint: string;
  stop(): Promise<void>;
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT, ...args], { encoding: 'utf8', timeout: 600_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`moto.sh ${args[0]} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

export function describeWithMoto(name: string, fn: () => void): void {
  const r = spawnSync('bash', [SCRIPT, 'check'], { encoding: 'utf8' });
  if (r.status === 0) describe(name, fn);
  else if (process.env.KAUDIT_REQUIRE_MOTO === '1' || r.status !== 3) {
    describe(name, () => {
      it('needs a CloudWatch Logs API server (moto)', () => {
        throw new Error(`moto cannot run here: ${r.stderr.trim() || r.status}`);
      });
    });
  } else {
    process.stderr.write(`skipping "${name}": ${r.stderr.trim()}\n`);
    describe.skip(name, fn);
  }
}

export async function startMoto(): Promise<Moto> {
  const out = await run(['start', '--watch-pid', String(process.pid)]);
  const env = Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return {
    endpoint: env.MOTO_ENDPOINT!,
    stop: async () => void (await run(['stop', '--pid', env.MOTO_PID!])),
  };
}
