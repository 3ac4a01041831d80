#!/usr/bin/env node
// Screenshots of every console page at 1280 and 390 px wide, over the demo: `node scripts/console-screenshots.mjs
// [OUT_DIR]` (default docs/console). Starts its own `kaudit serve --demo` on a free loopback port with a throwaway
// store, drives Debian's Chromium (playwright-core, /usr/bin/chromium or $KAUDIT_CHROMIUM). The browser tests call
// takeScreenshots() too, so the README's pictures and the tests' come from the same steps.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, launchChromium, startKaudit } from './console-parts.mjs';

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
  const out = process.argv[2] ?? join(ROOT, 'docs', 'console');
  const { chromium } = await import('playwright-core');
  const dir = mkdtempSync(join(tmpdir(), 'kaudit-shots-'));
  const server = await startKaudit(['serve', '--demo', '--db', join(dir, 'k.db'), '--listen', '127.0.0.1:0']);
  const browser = await launchChromium(chromium);
  try {
    const files = await takeScreenshots(browser, `http://127.0.0.1:${server.port}`, out);
    for (const f of files) console.log(f);
  } finally {
    await browser.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
