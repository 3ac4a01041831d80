/**
 * Builds once before any test runs (package.json's build script: tsc, then the rule cache), so that the tests which
 * run compiled code (the store's writer thread, child processes, the rule cache) never run a stale dist/.
 */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export default function build(): void {
  const root = fileURLToPath(new URL('../', import.meta.url));
  const script = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { build: string } }).scripts.build;
  // As npm runs it: the package's own tools first on the PATH.
  const env = { ...process.env, PATH: `${join(root, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}` };
  execSync(script, { cwd: root, env, stdio: 'inherit' });
}
