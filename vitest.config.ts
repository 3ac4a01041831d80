import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds dist/ first (see test/global-setup.ts): `npx vitest` never tests stale compiled code.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: run files in two forks; each integration test uses its own temp dir, port and store.
    pool: 'forks',
    maxWorkers: 2,
  },
});
