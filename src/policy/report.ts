/** Output formats of `kaudit policy check`: text for people, JSON for scripts, SARIF for code-scanning UIs. */
import { CHECKS, type CheckReport, type Finding, type Severity } from './checks.js';

export interface FullReport extends CheckReport {
  /** Apiserver manifest checked alongside, if any. */
  manifest?: { file: string; benchmark: string };
}

const SEVERITY_LABEL: Record<Severity, string> = { error: 'FAIL', warning: 'WARN', note: 'NOTE' };

function title(id: string): string {
  return CHECKS.find((c) => c.id === id)?.title ?? manifestTitle(id);
}

function manifestTitle(id: string): string {
  return `kube-apiserver audit flag check ${id.replace(/^cis-/, 'CIS ')}`;
}

function where(f: Finding, source: string): string {
  const file = f.file ?? source;
  return f.line !== undefined ? `${file}:${f.line}` : file;
}

export function formatText(r: FullReport): string {
  const lines: string[] = [];
  const counts = { error: 0, warning: 0, note: 0 };
  for (const f of r.findings) counts[f.severity]++;
  lines.push(`${r.source}${r.manifest ? ` (with ${r.manifest.file}, ${r.manifest.benchmark})` : ''}`);
  for (const f of r.findings) {
    lines.push(`  ${SEVERITY_LABEL[f.severity]} ${f.id} ${where(f, r.source)}`);
    lines.push(`       ${f.message}`);
    for (const e of f.examples ?? []) lines.push(`       e.g. ${e}`);
  }
  for (const id of r.passed) lines.push(`  ok   ${id}: ${title(id)}`);
  for (const s of r.skipped) lines.push(`  skip ${s.id}: ${s.reason}`);
  lines.push(
    `${counts.error} failed, ${counts.warning} warning${counts.warning === 1 ? '' : 's'}, ${counts.note} note${counts.note === 1 ? '' : 's'}, ${r.passed.length} passed`,
  );
  return lines.join('\n') + '\n';
}

export function formatJson(r: FullReport): string {
  const summary = { error: 0, warning: 0, note: 0 };
  for (const f of r.findings) summary[f.severity]++;
  return (
    JSON.stringify(
      { policy: r.source, ...(r.manifest ? { manifest: r.manifest } : {}), findings: r.findings, passed: r.passed, skipped: r.skipped, summary },
      null,
      2,
    ) + '\n'
  );
}

/** SARIF 2.1.0, one result per finding, located at the policy (or manifest) line. */
export function formatSarif(r: FullReport): string {
  const ids = [...new Set([...CHECKS.map((c) => c.id), ...r.findings.map((f) => f.id), ...r.passed])];
  const rules = ids.map((id) => ({ id, shortDescription: { text: title(id) } }));
  const results = r.findings.map((f) => {
    const region = f.line !== undefined ? { region: { startLine: f.line } } : {};
    const props: Record<string, unknown> = {};
    if (f.rule !== undefined) props.policyRule = f.rule;
    if (f.detection) props.detection = f.detection;
    if (f.path) props.path = f.path;
    return {
      ruleId: f.id,
      ruleIndex: ids.indexOf(f.id),
      level: f.severity,
      message: { text: f.message },
      locations: [{ physicalLocation: { artifactLocation: { uri: f.file ?? r.source }, ...region } }],
      ...(Object.keys(props).length > 0 ? { properties: props } : {}),
    };
  });
  const sarif = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [{ tool: { driver: { name: 'kaudit', rules } }, results }],
  };
  return JSON.stringify(sarif, null, 2) + '\n';
}
