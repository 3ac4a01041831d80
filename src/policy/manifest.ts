/**
 * The kube-apiserver audit flags, read from its static pod manifest and judged as kube-bench judges them, with the
 * check ids of the CIS Kubernetes Benchmark version that matches the apiserver's version (kube-bench's own mapping).
 */
import { readFile } from 'node:fs/promises';
import { parseAllDocuments, LineCounter, isMap, isSeq, isScalar, type Node as YamlNode } from 'yaml';
import type { Finding } from './checks.js';

export interface ApiserverFlags {
  flags: Map<string, string>;
  /** Line of each flag in the manifest. */
  lines: Map<string, number>;
  /** Kubernetes minor version from the image tag, e.g. "1.30". */
  version?: string;
}

/** kube-bench's mapping from Kubernetes minor version to CIS benchmark, and that benchmark's audit flag ids. */
const BENCHMARKS: { name: string; from: number; to: number; ids: [string, string, string, string] }[] = [
  { name: 'cis-1.5', from: 15, to: 15, ids: ['1.2.22', '1.2.23', '1.2.24', '1.2.25'] },
  { name: 'cis-1.6', from: 16, to: 18, ids: ['1.2.22', '1.2.23', '1.2.24', '1.2.25'] },
  { name: 'cis-1.20', from: 19, to: 21, ids: ['1.2.21', '1.2.22', '1.2.23', '1.2.24'] },
  { name: 'cis-1.23', from: 22, to: 23, ids: ['1.2.19', '1.2.20', '1.2.21', '1.2.22'] },
  { name: 'cis-1.24', from: 24, to: 24, ids: ['1.2.18', '1.2.19', '1.2.20', '1.2.21'] },
  { name: 'cis-1.7', from: 25, to: 25, ids: ['1.2.18', '1.2.19', '1.2.20', '1.2.21'] },
  { name: 'cis-1.8', from: 26, to: 26, ids: ['1.2.17', '1.2.18', '1.2.19', '1.2.20'] },
  { name: 'cis-1.9', from: 27, to: 27, ids: ['1.2.16', '1.2.17', '1.2.18', '1.2.19'] },
  { name: 'cis-1.10', from: 28, to: 28, ids: ['1.2.16', '1.2.17', '1.2.18', '1.2.19'] },
  { name: 'cis-1.11', from: 29, to: 31, ids: ['1.2.16', '1.2.17', '1.2.18', '1.2.19'] },
  { name: 'cis-1.12', from: 32, to: Number.MAX_SAFE_INTEGER, ids: ['1.2.16', '1.2.17', '1.2.18', '1.2.19'] },
];

export const BENCHMARK_NAMES = BENCHMARKS.map((b) => b.name);

export function benchmarkFor(version: string | undefined, override?: string): (typeof BENCHMARKS)[number] {
  if (override) {
    const b = BENCHMARKS.find((x) => x.name === override || x.name === `cis-${override}`);
    if (!b) throw new Error(`unknown CIS benchmark ${JSON.stringify(override)}: use one of ${BENCHMARK_NAMES.join(', ')}`);
    return b;
  }
  const m = version ? /^1\.(\d+)$/.exec(version) : null;
  if (m) {
    const minor = Number(m[1]);
    const b = BENCHMARKS.find((x) => minor >= x.from && minor <= x.to);
    if (b) return b;
  }
  return BENCHMARKS[BENCHMARKS.length - 1]!;
}

function scalarString(n: unknown): string | undefined {
  return isScalar(n) ? String((n as { value: unknown }).value) : undefined;
}

/** Reads the kube-apiserver container's command and args from a static pod manifest (or a bare Pod spec). */
export function parseApiserverManifest(text: string, source: string): ApiserverFlags {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: false });
  const list = Array.isArray(docs) ? docs : [];
  for (const doc of list) {
    if (doc.errors.length > 0) throw new Error(`${source}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
    const spec = doc.getIn(['spec'], true) as YamlNode | undefined;
    const containers = spec && isMap(spec) ? (spec.get('containers', true) as YamlNode | undefined) : undefined;
    if (!containers || !isSeq(containers)) continue;
    for (const c of containers.items) {
      if (!isMap(c)) continue;
      const name = scalarString(c.get('name', true));
      const command = c.get('command', true);
      const args = c.get('args', true);
      const words: { text: string; line: number }[] = [];
      for (const seq of [command, args]) {
        if (seq && isSeq(seq)) {
          for (const w of seq.items) {
            const t = scalarString(w);
            if (t !== undefined) words.push({ text: t, line: lc.linePos((w as YamlNode).range?.[0] ?? 0).line });
          }
        }
      }
      const isApiserver = name === 'kube-apiserver' || words.some((w) => /(^|\/)kube-apiserver$/.test(w.text));
      if (!isApiserver) continue;
      const flags = new Map<string, string>();
      const lines = new Map<string, number>();
      for (let i = 0; i < words.length; i++) {
        const w = words[i]!.text;
        if (!w.startsWith('--')) continue;
        const line = words[i]!.line;
        const eq = w.indexOf('=');
        let key: string;
        let value: string;
        if (eq > 0) {
          key = w.slice(2, eq);
          value = w.slice(eq + 1);
        } else {
          key = w.slice(2);
          const next = words[i + 1]?.text;
          if (next !== undefined && !next.startsWith('--')) {
            value = next;
            i++;
          } else value = 'true';
        }
        flags.set(key, value);
        lines.set(key, line);
      }
      const image = scalarString(c.get('image', true)) ?? '';
      const v = /:v?(\d+)\.(\d+)(\.\d+)?/.exec(image);
      return { flags, lines, ...(v ? { version: `${v[1]}.${v[2]}` } : {}) };
    }
  }
  throw new Error(`${source}: no kube-apiserver container found (expected a static pod manifest with spec.containers[].command)`);
}

export async function loadApiserverManifest(path: string): Promise<ApiserverFlags> {
  return parseApiserverManifest(await readFile(path, 'utf8'), path);
}

/** kube-bench's audit checks on the apiserver flags. Failures are errors; passes add nothing. */
export function checkApiserverFlags(m: ApiserverFlags, file: string, benchmarkOverride?: string): { findings: Finding[]; passed: string[]; benchmark: string } {
  const b = benchmarkFor(m.version, benchmarkOverride);
  const [pathId, ageId, backupId, sizeId] = b.ids;
  const findings: Finding[] = [];
  const passed: string[] = [];
  const at = (flag: string) => {
    const line = m.lines.get(flag);
    return line !== undefined ? { line, file } : { file };
  };
  const bench = `${b.name}${m.version ? ` (Kubernetes ${m.version})` : ''}`;

  if (m.flags.has('audit-policy-file') && m.flags.get('audit-policy-file') !== '') passed.push('cis-3.2.1');
  else
    findings.push({
      id: 'cis-3.2.1',
      severity: 'error',
      message: `--audit-policy-file is not set on kube-apiserver: without a policy nothing is audited [${bench} 3.2.1]`,
      ...at('audit-policy-file'),
    });

  const webhook = m.flags.get('audit-webhook-config-file');
  const logPath = m.flags.get('audit-log-path');
  if (logPath === undefined || logPath === '') {
    if (webhook) {
      passed.push(`cis-${pathId}`);
    } else {
      findings.push({
        id: `cis-${pathId}`,
        severity: 'error',
        message: `--audit-log-path is not set (and no --audit-webhook-config-file): audit events go nowhere [${bench} ${pathId}]`,
        ...at('audit-log-path'),
      });
    }
  } else passed.push(`cis-${pathId}`);

  // Retention flags matter only for a log file; a webhook backend keeps its own retention.
  const fileBackend = logPath !== undefined && logPath !== '' && logPath !== '-';
  const numeric: [string, string, number, string][] = [
    [ageId, 'audit-log-maxage', 30, 'days'],
    [backupId, 'audit-log-maxbackup', 10, 'files'],
    [sizeId, 'audit-log-maxsize', 100, 'MB'],
  ];
  for (const [id, flag, min, unit] of numeric) {
    if (!fileBackend && webhook) {
      passed.push(`cis-${id}`);
      continue;
    }
    const raw = m.flags.get(flag);
    const n = raw === undefined ? NaN : Number(raw);
    if (raw === undefined)
      findings.push({ id: `cis-${id}`, severity: 'error', message: `--${flag} is not set: set it to ${min} (${unit}) or more [${bench} ${id}]`, ...at(flag) });
    else if (!Number.isFinite(n) || n < min)
      findings.push({ id: `cis-${id}`, severity: 'error', message: `--${flag}=${raw} is below ${min} (${unit}) [${bench} ${id}]`, ...at(flag) });
    else passed.push(`cis-${id}`);
  }
  return { findings, passed, benchmark: b.name };
}
