import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runDetect } from '../../src/cli/detect.js';

// Parity with the peer suite: real captured audit events from Falco's k8s-audit regression traces, with the rule ids
// that must fire (exact counts) or stay quiet. Read from ../shared/peer next to the repo; never copied in.
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const peer = resolve(repo, '../shared/peer/falco-k8s-audit');
const present = existsSync(join(peer, 'expectations.yaml'));

interface Case {
  trace: string;
  fire?: Record<string, number>;
  quiet?: string[];
  invalid?: boolean;
}

function sink() {
  let text = '';
  return {
    write: (s: string) => ((text += s), true),
    get text() {
      return text;
    },
  };
}

async function detect(file: string) {
  const out = sink();
  const err = sink();
  const code = await runDetect([file, '--quiet'], { stdin: process.stdin, stdout: out, stderr: err });
  const alerts = out.text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { rule: string; summary: string; count: number });
  return { code, alerts, stderr: err.text };
}

describe.skipIf(!present)('peer parity: falco-k8s-audit traces', () => {
  const cases = present ? (parse(readFileSync(join(peer, 'expectations.yaml'), 'utf8')) as { cases: Case[] }).cases : [];
  it('has cases', () => expect(cases.length).toBeGreaterThan(40));
  for (const c of cases) {
    it(`${c.trace}${c.invalid ? ' is rejected as bad input' : ''}`, { timeout: 30_000 }, async () => {
      const r = await detect(join(peer, 'traces', c.trace));
      if (c.invalid) {
        expect(r.code).toBe(0);
        expect(r.alerts).toEqual([]);
        expect(r.stderr).toMatch(/bad input at .*fal_01_003\.json.*: not an audit event/);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        return;
      }
      expect(r.stderr).toBe('');
      const counts: Record<string, number> = {};
      // Falco raises one alert per firing; kaudit detect groups repeats of a rule for one identity and object, with
      // their count: the firings are what compare.
      for (const a of r.alerts) counts[a.rule] = (counts[a.rule] ?? 0) + a.count;
      for (const [rule, n] of Object.entries(c.fire ?? {})) expect(counts[rule] ?? 0, `${rule} on ${c.trace}; got ${JSON.stringify(counts)}`).toBe(n);
      for (const rule of c.quiet ?? []) expect(counts[rule] ?? 0, `${rule} must stay quiet on ${c.trace}`).toBe(0);
    });
  }
});
