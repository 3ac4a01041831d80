import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM, ROOT, launchChromium, startKaudit } from '../../scripts/console-parts.mjs';

/**
 * Real parts for the console's tests: a `kaudit serve` process on 127.0.0.1 (the built bin, its own store) and
 * Debian's Chromium driven by playwright-core. In CI (CI=true or KAUDIT_REQUIRE_BROWSER=1) a missing Chromium fails
 * the tests instead of skipping them.
 */

export { ROOT, CHROMIUM };
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
  const args = ['serve', '--db', db, '--listen', `127.0.0.1:${opts.port ?? 0}`, ...(opts.demo ? ['--demo'] : []), ...(opts.extra ?? [])];
  if (opts.tokens) {
    const f = join(dir, 'tokens.txt');
    writeFileSync(f, opts.tokens);
    chmodSync(f, 0o600);
    args.push('--tokens-file', f);
  }
  const k = await startKaudit(args, { replayMs: opts.replayMs });
  const scheme = args.includes('--tls-cert') ? 'https' : 'http';
  return {
    url: `${scheme}://127.0.0.1:${k.port}`,
    port: k.port,
    dir,
    db,
    proc: k.proc,
    log: k.log,
    stop: k.stop,
  };
}

export async function launch(): Promise<Browser> {
  if (!haveBrowser) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium), as .ci/run does`);
  return launchChromium(chromium);
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
