// The real parts the console's tests, its benchmark and its screenshots share: a `kaudit serve` process on
// 127.0.0.1 (the built bin) and Debian's Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CHROMIUM = process.env.KAUDIT_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Chromium, headless, with a fresh temporary profile (playwright gives each launch one, removed on close). Without
 * the background-networking flags Chromium's calls home fail noisily on a closed network.
 */
export function launchChromium(chromium) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Starts `kaudit <args>` (a serve on 127.0.0.1:0 or a given port) and resolves once it says where it serves. The
 * demo's replay is slowed to once an hour unless `replayMs` says otherwise, so it adds no alerts while a page is
 * measured or photographed.
 */
export function startKaudit(args, opts = {}) {
  const env = { ...process.env, KAUDIT_DEMO_REPLAY_MS: String(opts.replayMs ?? 3_600_000) };
  const proc = spawn(process.execPath, ['bin/kaudit.js', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`kaudit serve did not start in 60 s:\n${out}`)), 60_000);
    const on = (d) => {
      out += d;
      const m = /kaudit serving on https?:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    };
    proc.stdout.on('data', on);
    proc.stderr.on('data', on);
    proc.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`kaudit serve exited (${code}):\n${out}`));
    });
  });
  return port.then((p) => ({
    port: p,
    proc,
    log: () => out,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await done;
    },
  }));
}
