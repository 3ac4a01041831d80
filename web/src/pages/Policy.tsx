import { useState } from 'preact/hooks';
import { api } from '../lib/api.js';
import { download } from '../lib/format.js';

/**
 * The audit policy: paste or upload a policy (and optionally the kube-apiserver manifest) for the CIS 3.2.1/3.2.2
 * report with blind spots and noisy rules, or generate a recommended policy (a profile, or tuned on stored traffic).
 */

interface Finding {
  id: string;
  severity: 'error' | 'warning' | 'note';
  message: string;
  line?: number;
  file?: string;
  detection?: string;
  examples?: string[];
}
interface Report {
  findings: Finding[];
  passed: string[];
  skipped: { id: string; reason: string }[];
  manifest?: { benchmark: string };
  checks?: { id: string; title: string }[];
}
interface Generated {
  yaml: string;
  profile: string;
  uncovered: { rule: string; reason: string }[];
  volume?: Record<string, number>;
  tunedOn?: { events: number; truncated: boolean };
}

const LABEL = { error: 'FAIL', warning: 'WARN', note: 'NOTE' };

function FileInput(props: { label: string; onText: (t: string) => void }) {
  return (
    <label class="file">
      {props.label}
      <input
        type="file"
        accept=".yaml,.yml,.json,text/yaml,application/json"
        onChange={async (e) => {
          const f = (e.target as HTMLInputElement).files?.[0];
          if (f) props.onText(await f.text());
        }}
      />
    </label>
  );
}

export function PolicyPage() {
  const [policy, setPolicy] = useState('');
  const [manifest, setManifest] = useState('');
  const [report, setReport] = useState<Report>();
  const [gen, setGen] = useState<Generated>();
  const [profile, setProfile] = useState('recommended');
  const [traffic, setTraffic] = useState('');
  const [busy, setBusy] = useState('');
  const [error, setError] = useState('');
  const title = (id: string) => report?.checks?.find((c) => c.id === id)?.title ?? id;

  const check = async (e: Event) => {
    e.preventDefault();
    setBusy('check');
    setError('');
    // The old report goes at once: a report on screen is always the one of the policy in the box.
    setReport(undefined);
    try {
      setReport(await api<Report>('/policy/check', { method: 'POST', body: { policy, ...(manifest.trim() ? { manifest } : {}) } }));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy('');
    }
  };
  const generate = async (e: Event) => {
    e.preventDefault();
    setBusy('generate');
    setError('');
    try {
      setGen(
        await api<Generated>('/policy/generate', { method: 'POST', body: { profile, ...(traffic.trim() ? { fromTraffic: { since: traffic.trim() } } : {}) } }),
      );
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy('');
    }
  };
  const counts = { error: 0, warning: 0, note: 0 };
  for (const f of report?.findings ?? []) counts[f.severity]++;

  return (
    <section class="policy">
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="two">
        <form class="card" onSubmit={check} aria-label="Check a policy">
          <h2>Check a policy</h2>
          <label for="policy-text">Audit policy (YAML)</label>
          <textarea
            id="policy-text"
            name="policy"
            rows={14}
            spellcheck={false}
            value={policy}
            onInput={(e) => setPolicy((e.target as HTMLTextAreaElement).value)}
            placeholder={'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata'}
            required
          />
          <FileInput label="or upload a policy file " onText={setPolicy} />
          <details>
            <summary>kube-apiserver manifest (optional: checks the audit flags too)</summary>
            <label for="manifest-text">Manifest (YAML)</label>
            <textarea id="manifest-text" rows={8} spellcheck={false} value={manifest} onInput={(e) => setManifest((e.target as HTMLTextAreaElement).value)} />
            <FileInput label="or upload the manifest " onText={setManifest} />
          </details>
          <button class="primary" type="submit" disabled={busy !== '' || !policy.trim()}>
            {busy === 'check' ? 'Checking…' : 'Check'}
          </button>
        </form>
        <form class="card" onSubmit={generate} aria-label="Generate a policy">
          <h2>Generate a policy</h2>
          <label>
            Profile{' '}
            <select value={profile} onChange={(e) => setProfile((e.target as HTMLSelectElement).value)} name="profile">
              <option value="minimal">minimal — CIS 3.2.1/3.2.2, Metadata everywhere</option>
              <option value="recommended">recommended — also request bodies of changes</option>
              <option value="strict">strict — request and response bodies of changes</option>
            </select>
          </label>
          <label>
            Tune on stored traffic since (recommended only; empty: no tuning){' '}
            <input value={traffic} onInput={(e) => setTraffic((e.target as HTMLInputElement).value)} placeholder="7d" disabled={profile !== 'recommended'} />
          </label>
          <button class="primary" type="submit" disabled={busy !== ''}>
            {busy === 'generate' ? 'Generating…' : 'Generate'}
          </button>
          {gen && (
            <div class="generated">
              <p>
                <button type="button" onClick={() => download(`audit-policy-${gen.profile}.yaml`, gen.yaml, 'application/yaml')}>
                  Download audit-policy.yaml
                </button>{' '}
                <button type="button" onClick={() => setPolicy(gen.yaml)}>
                  Check it
                </button>
              </p>
              {gen.tunedOn && (
                <p class="small">
                  Tuned on {gen.tunedOn.events.toLocaleString('en')} stored events{gen.tunedOn.truncated ? ' (the newest; more were not read)' : ''}.
                </p>
              )}
              {gen.uncovered.length > 0 && (
                <ul class="small">
                  {gen.uncovered.map((u) => (
                    <li>
                      {u.rule}: {u.reason}
                    </li>
                  ))}
                </ul>
              )}
              <pre class="yaml" aria-label="Generated policy">
                {gen.yaml}
              </pre>
            </div>
          )}
        </form>
      </div>
      {report && (
        <section class="card report" aria-label="Check report">
          <h2>
            Report: {counts.error} failed, {counts.warning} warnings, {counts.note} notes, {report.passed.length} passed
            {report.manifest ? ` (flags checked against ${report.manifest.benchmark})` : ''}
          </h2>
          <ul class="findings">
            {report.findings.map((f, i) => (
              <li key={i} class={`finding finding-${f.severity}`}>
                <span class={`verdict v-${f.severity}`}>{LABEL[f.severity]}</span> <strong>{f.id}</strong>
                {f.line ? (
                  <span class="muted">
                    {' '}
                    {f.file ?? 'policy'}:{f.line}
                  </span>
                ) : null}
                <div>{f.message}</div>
                {f.examples?.map((x) => (
                  <div class="muted small">e.g. {x}</div>
                ))}
              </li>
            ))}
            {report.passed.map((id) => (
              <li key={id} class="finding finding-ok">
                <span class="verdict v-ok">OK</span> <strong>{id}</strong> <span class="muted">{title(id)}</span>
              </li>
            ))}
            {report.skipped.map((s) => (
              <li key={s.id} class="finding">
                <span class="verdict">SKIP</span> <strong>{s.id}</strong> <span class="muted">{s.reason}</span>
              </li>
            ))}
          </ul>
        </section>
      )}
    </section>
  );
}
