#!/usr/bin/env node
// Screenshots of every console page at 1280 and 390 px wide, over the demo: `node scripts/console-screenshots.mjs
// [OUT_DIR]` (default docs/console). Starts its own `kaudit serve --demo` on a free loopback port with a throwaway
// store, drives Debian's Chromium (playwright-core, /usr/bin/chromium or $KAUDIT_CHROMIUM). The browser tests call
// takeScreenshots() too, so the README's pictures and the tests' come from the same steps.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PAGES = [
  { name: 'alerts', hash: '#/alerts', ready: '.alert-item' },
  { name: 'alert-detail', hash: null, ready: '.alert-detail .stages li' },
  { name: 'investigate-exec', hash: '#/investigate/exec', ready: '.vt-row' },
  { name: 'investigate-top', hash: '#/investigate/top', ready: '.bars li meter' },
  { name: 'charts', hash: '#/charts', ready: '.chart canvas' },
  { name: 'policy', hash: '#/policy', ready: 'form[aria-label="Check a policy"]' },
  { name: 'status', hash: '#/status', ready: '.status .card' },
];

/** Visits each page at each width and writes OUT/<page>-<width>.png; returns the files written. */
export async function takeScreenshots(browser, base, out, widths = [1280, 390]) {
  mkdirSync(out, { recursive: true });
  const files = [];
  for (const width of widths) {
    const ctx = await browser.newContext({ viewport: { width, height: width > 500 ? 860 : 844 }, deviceScaleFactor: 1 });
    const page = await ctx.newPage();
    for (const p of PAGES) {
      if (p.hash === null) {
        // The detail of the first high-severity alert.
        await page.goto(`${base}/#/alerts?severity=high`);
        await page.waitForSelector('.alert-item');
        await page.locator('.alert-item a').first().click();
      } else {
        await page.goto(`${base}/${p.hash}`);
      }
      if (p.name === 'policy') {
        await page.locator('form[aria-label="Generate a policy"] button[type=submit]').click();
        await page.waitForSelector('.generated pre');
        await page.locator('form[aria-label="Generate a policy"] button', { hasText: 'Check it' }).click();
        await page.locator('form[aria-label="Check a policy"] button[type=submit]').click();
        await page.waitForSelector('.report .finding');
      }
      await page.waitForSelector(p.ready, { timeout: 15_000 });
      // Let charts and relative times settle.
      await page.waitForTimeout(300);
      const file = join(out, `${p.name}-${width}.png`);
      await page.screenshot({ path: file });
      files.push(file);
    }
    await ctx.close();
  }
  return files;
}

async function main() {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const out = process.argv[2] ?? join(root, 'docs', 'console');
  const { chromium } = await import('playwright-core');
  const dir = mkdtempSync(join(tmpdir(), 'kaudit-shots-'));
  const proc = spawn(process.execPath, ['bin/kaudit.js', 'serve', '--demo', '--db', join(dir, 'k.db'), '--listen', '127.0.0.1:0'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KAUDIT_DEMO_REPLAY_MS: '3600000' },
  });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const on = (d) => {
      log += d;
      const m = /serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    };
    proc.stdout.on('data', on);
    proc.stderr.on('data', on);
    proc.on('exit', (c) => reject(new Error(`kaudit serve exited (${c}):\n${log}`)));
  });
  const browser = await chromium.launch({
    executablePath: process.env.KAUDIT_CHROMIUM ?? '/usr/bin/chromium',
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
    // playwright gives each launch a fresh temporary profile (it refuses --user-data-dir with launch()).
  });
  try {
    const files = await takeScreenshots(browser, `http://127.0.0.1:${port}`, out);
    for (const f of files) console.log(f);
  } finally {
    await browser.close();
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
