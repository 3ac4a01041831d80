import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/**
 * Real parts for the console's tests: a `kaudit serve` process on 127.0.0.1 (the built bin, its own store) and
 * Debian's Chromium driven by playwright-core. In CI (CI=true or KAUDIT_REQUIRE_BROWSER=1) a missing Chromium fails
 * the tests instead of skipping them.
 */

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CHROMIUM = process.env.KAUDIT_CHROMIUM ?? '/usr/bin/chromium';
export const browserRequired = process.env.CI === 'true' || process.env.KAUDIT_REQUIRE_BROWSER === '1';
export const haveBrowser = existsSync(CHROMIUM);
/** Skip only on a developer machine without Chromium; in CI a missing browser is a failure. */
export const skipBrowser = !haveBrowser && !browserRequired;

export interface Served {
  url: string;
  port: number;
  dir: string;
  db: string;
  proc: ChildProcess;
  log: () => string;
  stop(): Promise<void>;
}

export async function serve(opts: { demo?: boolean; tokens?: string; replayMs?: number; dir?: string; port?: number; extra?: string[] } = {}): Promise<Served> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'kaudit-console-'));
  const db = join(dir, 'kaudit.db');
  const args = ['bin/kaudit.js', 'serve', '--db', db, '--listen', `127.0.0.1:${opts.port ?? 0}`, ...(opts.demo ? ['--demo'] : []), ...(opts.extra ?? [])];
  if (opts.tokens) {
    const f = join(dir, 'tokens.txt');
    writeFileSync(f, opts.tokens);
    chmodSync(f, 0o600);
    args.push('--tokens-file', f);
  }
  const env = { ...process.env, KAUDIT_DEMO_REPLAY_MS: String(opts.replayMs ?? 3_600_000) };
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`kaudit serve did not start in 60 s:\n${out}`)), 60_000);
    const check = () => {
      const m = /kaudit serving on https?:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    };
    proc.stdout!.on('data', check);
    proc.stderr!.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`kaudit serve exited (${code}):\n${out}`));
    });
  });
  const scheme = args.includes('--tls-cert') ? 'https' : 'http';
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    dir,
    db,
    proc,
    log: () => out,
    async stop() {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await done;
    },
  };
}

export async function launch(): Promise<Browser> {
  if (!haveBrowser) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium), as .ci/run does`);
  // playwright gives each launch a fresh temporary profile (a fresh --user-data-dir, removed on close).
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Without the background-networking flags Chromium's calls home fail noisily on a closed network.
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

/** A page that records console errors, CSP violations and any request that leaves the server's origin. */
export async function openPage(
  b: Browser,
  base: string,
  width = 1280,
  opts: { ignoreHTTPSErrors?: boolean } = {},
): Promise<{ ctx: BrowserContext; page: Page; problems: string[]; outside: string[] }> {
  const ctx = await b.newContext({ viewport: { width, height: 900 }, acceptDownloads: true, ...opts });
  const page = await ctx.newPage();
  const problems: string[] = [];
  const outside: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(base) && !u.startsWith(base.replace('http', 'ws')) && !u.startsWith('blob:') && !u.startsWith('data:')) outside.push(u);
  });
  return { ctx, page, problems, outside };
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
