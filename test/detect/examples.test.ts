import { describe, expect, it } from 'vitest';
import { runRuleExample } from '../../src/detect/examples.js';
import { defaultRulesDir, loadRules } from '../../src/detect/index.js';

// Every rule's examples, through the same code `kaudit rules test` runs: one test per example so a failure names it.
const set = loadRules(defaultRulesDir());

describe('rule examples', () => {
  for (const spec of set.rules) {
    describe(spec.id, () => {
      it('has at least one fire and one quiet example', () => {
        expect(spec.examples.fire.length).toBeGreaterThan(0);
        expect(spec.examples.quiet.length).toBeGreaterThan(0);
      });
      for (const kind of ['fire', 'quiet'] as const) {
        const list = kind === 'fire' ? spec.examples.fire : spec.examples.quiet;
        list.forEach((c, i) => {
          it(`${kind}[${i}]${c.name ? ` ${c.name}` : ''} (${spec.file.split('/').pop()}:${c.line})`, async () => {
            const r = await runRuleExample(set, spec, kind, i);
            expect(r.error).toBeUndefined();
            expect(r.got, `alerts: ${JSON.stringify(r.alerts.map((a) => a.summary))}`).toBe(r.expected);
          });
        });
      }
    });
  }
});
