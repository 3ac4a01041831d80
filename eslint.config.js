// ESLint (flat config) with typescript-eslint. The rules are chosen to catch defects, not to restyle: layout is
// Prettier's job (.prettierrc.json). Type-aware rules run on src/ and test/ (tsconfig.eslint.json), so a promise
// that nobody awaits or handles is an error: in kaudit that is an acknowledgement sent before its commit, or a test
// that passes without checking anything.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'data/', '**/*.d.ts'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    files: ['**/*.{js,mjs}'],
    languageOptions: { globals: globals.node },
  },
  {
    // The console runs in the browser; the console benchmark hands functions to the browser (page.evaluate).
    files: ['web/**', 'benchmarks/console.mjs', 'scripts/console-*.mjs'],
    languageOptions: { globals: { ...globals.browser, ...globals.node } },
  },
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'vitest.config.ts'],
    languageOptions: {
      parserOptions: { project: './tsconfig.eslint.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Every promise awaited, returned, or handed to `void` on purpose.
      '@typescript-eslint/no-floating-promises': 'error',
      // An async function where a callback's result is ignored (an event listener, forEach) loses its rejection.
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      // Rejecting with a caught `unknown` passes an error on; rejecting with a string or an object is the defect.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // Best-effort clean-ups (`.catch(() => {})`, `catch {}` around a stat) are deliberate here.
      'no-empty': ['error', { allowEmptyCatch: true }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-constant-condition': ['error', { checkLoops: false }],
      // Diagnostics go through src/log.ts (one line, rate-limited); commands print through their io.
      'no-console': 'error',
      // Style, not defects, in this code base: `!` after checks the compiler cannot follow (map and array lookups);
      // `require` through createRequire for lazily loaded CommonJS; a parent-chain walk that starts at `this`.
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-this-alias': 'off',
      // Error messages here are one line that carries the cause's own message (see errors.ts); `cause` is optional.
      'preserve-caught-error': 'off',
      // \x01 and other control characters are used on purpose as separators inside internal keys.
      'no-control-regex': 'off',
    },
  },
  {
    // Tests, benchmarks and scripts talk to the terminal and build odd values on purpose.
    files: ['test/**', 'benchmarks/**', 'scripts/**', 'bin/**'],
    rules: {
      'no-console': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    // TEMPORARY (issue #22): findings in files that parallel branches are rewriting (the ingest front, the engine and
    // store splits, jsonata typing). Fix them once those branches are merged, then delete this block.
    // Each entry names what it hides so that nothing else is hidden in these files meanwhile.
    files: [
      'src/api/openapi.ts',
      'src/detect/expression.ts',
      'src/detect/jsonata-sync.ts',
      'src/events/types.ts',
      'src/store/writer.ts',
      'web/src/pages/Investigate.tsx',
    ],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['src/sources/json-splitter.ts'],
    rules: { 'no-useless-assignment': 'off' },
  },
  {
    files: ['src/detect/engine.ts', 'src/detect/saved-state.ts', 'test/detect/benign.test.ts'],
    rules: { '@typescript-eslint/no-unused-expressions': 'off' },
  },
  {
    files: ['src/store/store.ts'],
    rules: { '@typescript-eslint/no-unused-vars': 'off' },
  },
);
