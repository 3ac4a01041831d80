import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type AlertRow, type EventRow, type Page } from '../lib/api.js';
import { download, fmtTime, toCsv, toNdjson } from '../lib/format.js';
import { href, navigate, type Route } from '../lib/route.js';
import { VirtualTable, type Column } from '../components/VirtualTable.js';
import { SeverityBadge } from './Alerts.js';
import { TopPanel } from './Top.js';

/**
 * The analyst questions: who exec'd into what, secret reads, RBAC changes, one identity's activity, events and
 * alerts by filter, and the busiest users/resources/verbs/namespaces/source IPs. Filters use the CLI's syntax (times
 * as `30m`, `2026-11-01` or RFC 3339; `*` wildcards in names) and live in the URL. Pages of 1,000 rows are fetched
 * through the API's cursor as the table scrolls.
 */

type Row = EventRow | AlertRow;

interface View {
  id: string;
  label: string;
  path: (q: Record<string, string>) => string;
  filters: string[];
  columns: Column<any>[];
  needs?: string;
}

const dec = (r: EventRow) =>
  r.decision === 'allow' || (r.code > 0 && r.code < 400) ? 'allowed' : r.decision === 'forbid' || r.code >= 400 ? 'denied' : r.decision || '';
const decision: Column<EventRow> = { key: 'decision', label: 'Decision', width: 90, render: (r) => <span class={`dec dec-${dec(r)}`}>{dec(r)}</span> };
const time: Column<Row> = { key: 'time', label: 'Time (UTC)', width: 170, render: (r) => fmtTime(r.time) };
const user: Column<Row> = { key: 'user', label: 'User', width: 220, render: (r) => <a href={href('/investigate/activity', { user: r.user })}>{r.user}</a> };
const col = (key: string, label: string, width: number): Column<any> => ({ key, label, width });

const VIEWS: View[] = [
  {
    id: 'exec',
    label: 'Exec & attach',
    path: () => '/analyst/exec',
    filters: ['user', 'namespace', 'cluster', 'since', 'until'],
    columns: [
      time,
      user,
      col('namespace', 'Namespace', 130),
      col('name', 'Pod', 170),
      col('container', 'Container', 110),
      { key: 'command', label: 'Command', width: 220, render: (r: EventRow) => <code>{r.command}</code> },
      col('subresource', 'Kind', 70),
      col('sourceIP', 'Source IP', 130),
      decision,
    ],
  },
  {
    id: 'secret-reads',
    label: 'Secret reads',
    path: () => '/analyst/secret-reads',
    filters: ['user', 'namespace', 'cluster', 'since', 'until'],
    columns: [time, user, col('verb', 'Verb', 70), col('namespace', 'Namespace', 130), col('name', 'Secret', 200), col('sourceIP', 'Source IP', 130), decision],
  },
  {
    id: 'rbac-changes',
    label: 'RBAC changes',
    path: () => '/analyst/rbac-changes',
    filters: ['user', 'namespace', 'cluster', 'since', 'until'],
    columns: [
      time,
      user,
      col('verb', 'Verb', 80),
      col('resource', 'Resource', 170),
      col('namespace', 'Namespace', 130),
      col('name', 'Name', 200),
      col('sourceIP', 'Source IP', 130),
      decision,
    ],
  },
  {
    id: 'activity',
    label: 'User activity',
    path: (q) => `/analyst/users/${encodeURIComponent(q.user ?? '')}/activity`,
    filters: ['user', 'namespace', 'cluster', 'since', 'until'],
    needs: 'user',
    columns: [
      time,
      col('verb', 'Verb', 80),
      col('resource', 'Resource', 150),
      col('subresource', 'Sub', 70),
      col('namespace', 'Namespace', 130),
      col('name', 'Name', 200),
      col('code', 'Code', 60),
      col('sourceIP', 'Source IP', 130),
      col('userAgent', 'User agent', 220),
    ],
  },
  {
    id: 'events',
    label: 'Events',
    path: () => '/events',
    filters: ['user', 'verb', 'resource', 'namespace', 'name', 'sourceIP', 'cluster', 'since', 'until'],
    columns: [
      time,
      user,
      col('verb', 'Verb', 80),
      col('resource', 'Resource', 150),
      col('subresource', 'Sub', 70),
      col('namespace', 'Namespace', 130),
      col('name', 'Name', 200),
      col('code', 'Code', 60),
      col('stage', 'Stage', 140),
      col('sourceIP', 'Source IP', 130),
    ],
  },
  {
    id: 'alerts',
    label: 'Alerts',
    path: () => '/alerts',
    filters: ['severity', 'rule', 'user', 'namespace', 'cluster', 'since', 'until'],
    columns: [
      time,
      { key: 'severity', label: 'Severity', width: 90, render: (r: AlertRow) => <SeverityBadge s={r.severity} /> },
      { key: 'title', label: 'Alert', width: 300, render: (r: AlertRow) => <a href={href('/alerts', { id: r.id })}>{r.title}</a> },
      user,
      col('count', 'Count', 60),
      col('rule', 'Rule', 220),
      col('cluster', 'Cluster', 100),
    ],
  },
];

const PLACEHOLDER: Record<string, string> = {
  since: '30m, 2026-11-01, RFC 3339',
  until: 'now',
  user: 'alice@example.com or *admin*',
  namespace: 'kube-system',
  severity: 'medium',
};
const PAGE = 1000;

function Filters(props: { view: View; query: Record<string, string> }) {
  const form = useRef<HTMLFormElement>(null);
  const submit = (e: Event) => {
    e.preventDefault();
    const data = new FormData(form.current!);
    const q: Record<string, string> = {};
    data.forEach((v, k) => {
      const s = String(v).trim();
      if (s) q[k] = s;
    });
    navigate(`/investigate/${props.view.id}`, q);
  };
  return (
    <form ref={form} class="filters" onSubmit={submit} role="search" aria-label={`${props.view.label} filters`}>
      {props.view.filters.map((f) => (
        <label key={`${props.view.id}-${f}-${props.query[f] ?? ''}`}>
          {f}
          <input
            name={f}
            defaultValue={props.query[f] ?? ''}
            placeholder={PLACEHOLDER[f] ?? ''}
            required={props.view.needs === f}
            autocomplete="off"
            spellcheck={false}
          />
        </label>
      ))}
      <button type="submit" class="primary">
        Run
      </button>
    </form>
  );
}

export function InvestigatePage(props: { route: Route }) {
  const id = props.route.path[1] ?? 'exec';
  const q = props.route.query;
  const view = VIEWS.find((v) => v.id === id);
  const [rows, setRows] = useState<Row[]>([]);
  const [next, setNext] = useState<string | undefined>();
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState('');
  const gen = useRef(0);
  const key = JSON.stringify([id, q]);

  const load = async (cursor: string | undefined, g: number) => {
    if (!view || (view.needs && !q[view.needs])) return;
    setLoading(true);
    try {
      const query: Record<string, string | number | undefined> = { limit: PAGE, cursor };
      for (const f of view.filters) if (f !== 'user' || view.id !== 'activity') query[f] = q[f];
      const page = await api<Page<Row>>(view.path(q), { query });
      if (g !== gen.current) return;
      setRows((r) => (cursor ? [...r, ...page.items] : page.items));
      setNext(page.next);
    } catch (e) {
      if (g === gen.current) setError((e as Error).message);
    } finally {
      if (g === gen.current) setLoading(false);
    }
  };
  useEffect(() => {
    const g = ++gen.current;
    setRows([]);
    setNext(undefined);
    setError('');
    if (id !== 'top') void load(undefined, g);
  }, [key]);

  const exportAs = (kind: 'csv' | 'ndjson') => {
    const cols = view!.columns.map((c) => c.key);
    const name = `kaudit-${id}-${new Date().toISOString().replace(/[:.]/g, '-')}.${kind === 'csv' ? 'csv' : 'ndjson'}`;
    if (kind === 'csv') download(name, toCsv(rows as unknown as Record<string, unknown>[], cols), 'text/csv');
    else download(name, toNdjson(rows), 'application/x-ndjson');
  };

  return (
    <section class="investigate">
      <nav class="tabs" aria-label="Investigate views">
        {[...VIEWS.map((v) => ({ id: v.id, label: v.label })), { id: 'top', label: 'Top' }].map((v) => (
          <a
            key={v.id}
            href={href(`/investigate/${v.id}`, v.id === id ? q : pick(q, ['since', 'until', 'cluster', 'user', 'namespace']))}
            aria-current={v.id === id ? 'page' : undefined}
          >
            {v.label}
          </a>
        ))}
      </nav>
      {id === 'top' ? (
        <TopPanel query={q} />
      ) : !view ? (
        <p class="error">No view “{id}”.</p>
      ) : (
        <>
          <Filters view={view} query={q} />
          {view.needs && !q[view.needs] && <p class="muted">Give a {view.needs} to see their activity.</p>}
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          <div class="export">
            <button type="button" onClick={() => exportAs('csv')} disabled={rows.length === 0}>
              Export CSV
            </button>
            <button type="button" onClick={() => exportAs('ndjson')} disabled={rows.length === 0}>
              Export NDJSON
            </button>
          </div>
          <VirtualTable
            label={view.label}
            rows={rows}
            columns={view.columns}
            hasMore={!!next}
            loading={loading}
            onMore={() => next && !loading && load(next, gen.current)}
          />
        </>
      )}
    </section>
  );
}

function pick(q: Record<string, string>, keys: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (const k of keys) if (q[k]) o[k] = q[k]!;
  return o;
}
