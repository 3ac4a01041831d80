/**
 * A real size-limited file system for store-fault tests: a tmpfs mounted by the test (root only), grown later with a
 * remount to "free space" under a running process.
 *
 *   describeWithTmpfs('full disk', (fs) => { ... fs().dir ... fs().resize(64 << 20) ... })
 *
 * Not root (a developer's machine): the suite is skipped with the reason printed. Under CI (CI=true, or
 * KAUDIT_REQUIRE_TMPFS=1, which .ci/run sets) a mount that fails is a failure, never a skip. Every mount is undone in
 * afterAll, even when a test failed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';

export interface Tmpfs {
  dir: string;
  /** Mounted size in bytes. */
  size: number;
  /** Grows (or shrinks) the file system in place: files and open descriptors stay. */
  resize(bytes: number): void;
  unmount(): void;
}

export const tmpfsRequired = process.env.KAUDIT_REQUIRE_TMPFS === '1' || process.env.CI === 'true';

export function mountTmpfs(bytes: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), 'kaudit-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mount -t tmpfs on ${dir} failed: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`);
  }
  let mounted = true;
  const fs: Tmpfs = {
    dir,
    size: bytes,
    resize(n: number) {
      execFileSync('mount', ['-o', `remount,size=${n}`, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
      fs.size = n;
    },
    unmount() {
      if (!mounted) return;
      // Lazy: a process the test killed may still be releasing its descriptors.
      spawnSync('umount', ['-l', dir]);
      mounted = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fs;
}

/** Why this machine cannot mount a tmpfs, or undefined when it can (checked once). */
let unavailable: string | undefined | null = null;
function tmpfsUnavailable(): string | undefined {
  if (unavailable !== null) return unavailable;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return (unavailable = 'not running as root, so no tmpfs can be mounted');
  try {
    mountTmpfs(1 << 20).unmount();
    unavailable = undefined;
  } catch (e) {
    unavailable = (e as Error).message;
  }
  return unavailable;
}

/**
 * `describe` for suites that need size-limited file systems. `mount(bytes)` mounts one for the suite (unmounted in
 * afterAll). Skips with the reason printed where no tmpfs can be mounted; fails instead under CI.
 */
export function describeWithTmpfs(name: string, fn: (mount: (bytes: number) => Tmpfs) => void): void {
  const why = tmpfsUnavailable();
  if (why === undefined) {
    describe(name, () => {
      const mounts: Tmpfs[] = [];
      afterAll(() => {
        for (const m of mounts) m.unmount();
      });
      fn((bytes) => {
        const m = mountTmpfs(bytes);
        mounts.push(m);
        return m;
      });
    });
  } else if (tmpfsRequired) {
    describe(name, () => {
      it('needs a size-limited file system (tmpfs)', () => {
        throw new Error(`CI requires the store-fault tests to run, but no tmpfs can be mounted here: ${why}`);
      });
    });
  } else {
    process.stderr.write(`skipping store-fault tests "${name}": ${why}\n`);
    describe.skip(name, () => fn(() => mountTmpfs(0)));
  }
}
