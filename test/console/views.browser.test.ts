import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { takeScreenshots, PAGES } from '../../scripts/console-screenshots.mjs';
import { makeCerts, type Certs } from '../api/helpers.js';
import { cleanup, launch, openPage, ROOT, serve, skipBrowser, type Served } from './harness.js';

/**
 * Investigate, policy, status and charts in a real Chromium over the demo; a bookmarked URL reloads to the same
 * view; screenshots of every page at 1280 and 390 px; axe-core finds no serious accessibility violation.
 */

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

async function axeSerious(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (the console itself has no eval).
  await page.evaluate(AXE);
  const result = (await page.evaluate(`axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })`)) as {
    violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[];
  };
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map(
      (v) =>
        `${v.id} (${v.impact}): ${v.help} at ${v.nodes
          .slice(0, 3)
          .map((n) => n.target.join(' '))
          .join(', ')}`,
    );
}

describe.skipIf(skipBrowser)('console: investigate, policy, status, charts (Chromium)', () => {
  let srv: Served;
  let browser: Browser;
  beforeAll(async () => {
    [srv, browser] = await Promise.all([serve({ demo: true }), launch()]);
  });
  afterAll(async () => {
    await browser?.close();
    await srv?.stop();
    if (srv) cleanup(srv.dir);
  });

  it('runs the exec view with a filter, keeps it in the URL, and reloads to the same view; exports what is shown', async () => {
    const { ctx, page, problems } = await openPage(browser, srv.url);
    await page.goto(`${srv.url}/#/investigate/exec`);
    await page.locator('.vt-row').first().waitFor();
    const all = await page.locator('.vt-scroll').getAttribute('data-rows');
    await page.fill('input[name=user]', 'carol*');
    await page.fill('input[name=namespace]', 'kube-system');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/#\/investigate\/exec\?user=carol\*&namespace=kube-system/);
    // The table empties while the filtered query runs (data-rows 0), then holds its answer: wait for that.
    await expect.poll(async () => page.locator('.vt-scroll').getAttribute('data-rows'), { timeout: 30_000 }).toSatisfy((n) => n !== all && n !== '0');
    await page.locator('.vt-row').first().waitFor();
    const rows = await page.locator('.vt-row').allInnerTexts();
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(r).toContain('carol@example.com');
      expect(r).toContain('kube-system');
    }
    const url = page.url();
    await page.reload();
    await page.locator('.vt-row').first().waitFor();
    expect(page.url()).toBe(url);
    expect(await page.locator('input[name=user]').inputValue()).toBe('carol*');
    expect(await page.locator('.vt-row').allInnerTexts()).toEqual(rows);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const csv = readFileSync((await dl.path())!, 'utf8')
      .trim()
      .split('\r\n');
    expect(csv.length).toBe(rows.length + 1);
    expect(csv[0]).toContain('"command"');
    expect(problems).toEqual([]);
    await ctx.close();
  });

  it('checks a pasted policy (CIS 3.2.2 fails on a RequestResponse catch-all) and downloads a generated one that passes', async () => {
    const { ctx, page, problems } = await openPage(browser, srv.url);
    await page.goto(`${srv.url}/#/policy`);
    await page.fill('#policy-text', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n');
    await page.locator('form[aria-label="Check a policy"] button[type=submit]').click();
    const report = page.locator('.report');
    await report.locator('.finding').first().waitFor();
    expect(await report.locator('.finding-error', { hasText: 'cis-3.2.2-secrets-metadata-only' }).count()).toBe(1);
    await page.selectOption('select[name=profile]', 'minimal');
    await page.locator('form[aria-label="Generate a policy"] button[type=submit]').click();
    await page.waitForSelector('.generated pre');
    const [dl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download audit-policy.yaml' }).click()]);
    expect(dl.suggestedFilename()).toBe('audit-policy-minimal.yaml');
    const yaml = readFileSync((await dl.path())!, 'utf8');
    expect(yaml).toContain('kind: Policy');
    await page.getByRole('button', { name: 'Check it' }).click();
    await page.locator('form[aria-label="Check a policy"] button[type=submit]').click();
    await expect.poll(() => report.locator('h2').innerText(), { timeout: 30_000 }).toMatch(/^Report: 0 failed/);
    expect(problems).toEqual([]);
    await ctx.close();
  });

  it('shows status (store, dead letters) and charts; brushing a chart narrows the window in the URL', async () => {
    const { ctx, page, problems } = await openPage(browser, srv.url);
    await page.goto(`${srv.url}/#/status`);
    await page.locator('.status .card', { hasText: 'Store' }).waitFor();
    expect(await page.locator('.status').innerText()).toMatch(/Dead letters \(\d+\)/);
    await page.goto(`${srv.url}/#/charts?since=2026-11-01T00:00:00Z&until=2026-11-01T00:10:00Z`);
    const canvas = page.locator('.chart canvas').first();
    await canvas.waitFor();
    expect(await page.locator('.chart canvas').count()).toBe(2);
    const over = page.locator('.chart .u-over').first();
    const box = (await over.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    const sinceOf = (u: URL) => new URLSearchParams(u.hash.split('?')[1] ?? '').get('since');
    await page.waitForURL((u) => sinceOf(u) !== '2026-11-01T00:00:00Z');
    const q = new URLSearchParams(new URL(page.url()).hash.split('?')[1]);
    const since = new Date(q.get('since')!).getTime();
    const until = new Date(q.get('until')!).getTime();
    expect(since).toBeGreaterThan(Date.parse('2026-11-01T00:01:00Z'));
    expect(until).toBeLessThan(Date.parse('2026-11-01T00:06:00Z'));
    expect(problems).toEqual([]);
    await ctx.close();
  });

  // Fourteen pages drawn and saved: minutes on a loaded machine.
  it('takes screenshots of every page at 1280 and 390 px', { timeout: 300_000 }, async () => {
    const out = join(ROOT, 'test-results', 'console');
    const files = await takeScreenshots(browser, srv.url, out);
    expect(files.length).toBe(PAGES.length * 2);
    for (const f of files) expect(readFileSync(f).subarray(1, 4).toString()).toBe('PNG');
  });

  it('has no serious accessibility violation (axe-core, WCAG 2.1 A/AA) on any page', { timeout: 180_000 }, async () => {
    const { ctx, page } = await openPage(browser, srv.url);
    const found: Record<string, string[]> = {};
    for (const p of PAGES.filter((x) => x.hash)) {
      await page.goto(`${srv.url}/${p.hash}`);
      await page.waitForSelector(p.ready);
      const v = await axeSerious(page);
      if (v.length) found[p.name] = v;
    }
    expect(found).toEqual({});
    await ctx.close();
  });
});

describe.skipIf(skipBrowser)('console: behind TLS and tokens (Chromium)', () => {
  const READ = 'r'.repeat(20) + 'console-test-1234';
  const BOUND = 'b'.repeat(20) + 'console-test-5678';
  let srv: Served;
  let browser: Browser;
  let certs: Certs;
  beforeAll(async () => {
    certs = makeCerts();
    [srv, browser] = await Promise.all([
      serve({ demo: true, tokens: `${READ} read\n${BOUND} read demo\n`, extra: ['--tls-cert', certs.serverCert, '--tls-key', certs.serverKey] }),
      launch(),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await srv?.stop();
    if (srv) cleanup(srv.dir);
    if (certs) cleanup(certs.dir);
  });

  it('asks for a token, keeps it in session storage (never in a URL), and opens the feed with it', async () => {
    expect(srv.url).toMatch(/^https:/);
    // The test CA is not in Chromium's store; the connection is TLS all the same (wss for the feed).
    const { ctx, page } = await openPage(browser, srv.url, 1280, { ignoreHTTPSErrors: true });
    const urls: string[] = [];
    page.on('request', (r) => urls.push(r.url()));
    page.on('websocket', (w) => urls.push(w.url()));
    await page.goto(`${srv.url}/`);
    await page.locator('form[aria-label="Sign in"]').waitFor();
    await page.fill('#token', 'wrong-token-wrong-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor();
    await page.fill('#token', READ);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('.alert-item');
    await page.waitForSelector('[data-state="live"]');
    expect(await page.evaluate(() => sessionStorage.getItem('kaudit.token'))).toBe(READ);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(urls.some((u) => u.includes(READ) || u.includes(Buffer.from(READ).toString('base64url')))).toBe(false);
    expect(page.url()).not.toContain(READ);
    expect(urls.some((u) => u.startsWith('wss://127.0.0.1'))).toBe(true);
    // A new tab (new session) asks again.
    const other = await ctx.newPage();
    await other.goto(`${srv.url}/`);
    await other.locator('form[aria-label="Sign in"]').waitFor();
    await ctx.close();
  });

  it('works with a token bound to a cluster: reads that cluster (the server says which) and its live feed', async () => {
    const { ctx, page, problems } = await openPage(browser, srv.url, 1280, { ignoreHTTPSErrors: true });
    await page.goto(`${srv.url}/#/alerts`);
    await page.fill('#token', BOUND);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('.alert-item');
    await page.waitForSelector('[data-state="live"]');
    await page.goto(`${srv.url}/#/investigate/exec`);
    await page.locator('.vt-row').first().waitFor();
    // The 401 before signing in and the 403s that name the cluster are expected answers, logged by the browser.
    expect(problems.filter((p) => !/status of 40[13]/.test(p))).toEqual([]);
    await ctx.close();
  });
});
