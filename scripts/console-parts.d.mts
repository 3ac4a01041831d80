import type { ChildProcess } from 'node:child_process';
import type { Browser, BrowserType } from 'playwright-core';
export const ROOT: string;
export const CHROMIUM: string;
export function launchChromium(chromium: BrowserType): Promise<Browser>;
export interface Started {
  port: number;
  proc: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}
export function startKaudit(args: string[], opts?: { replayMs?: number }): Promise<Started>;
