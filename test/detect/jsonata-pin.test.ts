import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { INSTALLED_JSONATA_VERSION, MIRRORED_JSONATA_VERSION } from '../../src/detect/jsonata-sync.js';

const json = (path: string) => JSON.parse(readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8'));

describe('jsonata version', () => {
  // The synchronous evaluator follows one jsonata release step for step: another release may evaluate differently.
  it('is installed, declared and locked at exactly the release the synchronous evaluator follows', () => {
    expect(INSTALLED_JSONATA_VERSION).toBe(MIRRORED_JSONATA_VERSION);
    expect(json('package.json').dependencies.jsonata).toBe(MIRRORED_JSONATA_VERSION);
    const lock = json('package-lock.json');
    expect(lock.packages[''].dependencies.jsonata).toBe(MIRRORED_JSONATA_VERSION);
    expect(lock.packages['node_modules/jsonata'].version).toBe(MIRRORED_JSONATA_VERSION);
  });
});
