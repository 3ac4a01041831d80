import type { Browser } from 'playwright-core';
export const PAGES: { name: string; hash: string | null; ready: string }[];
export function takeScreenshots(browser: Browser, base: string, out: string, widths?: number[]): Promise<string[]>;
