import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, SEVERITIES, sevRank, type AlertRow, type Page } from '../lib/api.js';
import { AlertFeed, type FeedState } from '../lib/feed.js';
import { ago, fmtTime } from '../lib/format.js';
import { href, navigate, type Route } from '../lib/route.js';
import { AlertDetail } from './AlertDetail.js';
import { groupAlerts } from '../lib/group.js';

/**
 * Live alerts: the newest stored alerts, then the WebSocket feed from where they end. Filters (minimum severity,
 * rule) are in the URL and in the feed's query; pausing holds new alerts back (counted on a badge) until resumed.
 * Repeats of one rule on one identity and object show as one row with their count.
 */

/** Rows kept in memory; older ones drop off the end (the Investigate pages and the API reach the rest). */
const MAX_ROWS = 5000;
const INITIAL = 200;
/** Rows rendered at once: a burst of thousands of alerts a second re-renders this many, not all it holds. */
const SHOWN = 300;

export function SeverityBadge(props: { s: string }) {
  return <span class={`sev sev-${props.s}`}>{props.s}</span>;
}

export function AlertsPage(props: { route: Route; onUnseen: (n: number) => void; onSeen?: (newestId: number) => void }) {
  const q = props.route.query;
  const severity = q.severity ?? '';
  const rule = q.rule ?? '';
  const selected = q.id ? Number(q.id) : undefined;
  const [alerts, setAlerts] = useState<AlertRow[]>([]);
  const [held, setHeld] = useState<AlertRow[]>([]);
  const [paused, setPaused] = useState(false);
  const [state, setState] = useState<{ s: FeedState; detail?: string }>({ s: 'connecting' });
  const [error, setError] = useState('');
  const [grouped, setGrouped] = useState(q.group !== '0');
  const [shown, setShown] = useState(SHOWN);
  // Alerts that arrived while the tab was in the background (shown on the badge and in the tab title until it is back).
  const [away, setAway] = useState(0);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const [, tick] = useState(0);

  useEffect(() => {
    let feed: AlertFeed | undefined;
    let gone = false;
    setAlerts([]);
    setHeld([]);
    setError('');
    api<Page<AlertRow>>('/alerts', { query: { severity: severity || undefined, rule: rule || undefined, limit: INITIAL } })
      .then((page) => {
        if (gone) return;
        setAlerts(page.items);
        const after = page.items.reduce((m, a) => Math.max(m, a.id), 0);
        feed = new AlertFeed({
          severity: severity || undefined,
          rules: rule ? rule.split(',') : undefined,
          after,
          onState: (s, detail) => setState({ s, detail }),
          onAlerts: (batch) => {
            const newest = batch.slice().reverse();
            if (document.hidden) setAway((n) => n + batch.length);
            if (pausedRef.current) setHeld((h) => [...newest, ...h].slice(0, MAX_ROWS));
            else setAlerts((a) => [...newest, ...a].slice(0, MAX_ROWS));
          },
        });
      })
      .catch((e: Error) => !gone && setError(e.message));
    return () => {
      gone = true;
      feed?.close();
    };
  }, [severity, rule]);

  useEffect(() => props.onUnseen(held.length + away), [held.length, away]);
  // The newest alert shown, where the navigation's count starts when the analyst leaves (0: filtered, so not every
  // alert was shown, and the count starts from the newest stored instead).
  useEffect(() => props.onSeen?.(severity || rule ? 0 : alerts.reduce((m, a) => Math.max(m, a.id), 0)), [alerts, severity, rule]);
  useEffect(() => {
    const back = () => !document.hidden && setAway(0);
    document.addEventListener('visibilitychange', back);
    return () => document.removeEventListener('visibilitychange', back);
  }, []);
  // Relative times stay current.
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 15_000);
    return () => clearInterval(t);
  }, []);

  const resume = () => {
    setAlerts((a) => [...held, ...a].slice(0, MAX_ROWS));
    setHeld([]);
    setPaused(false);
  };
  const groups = useMemo(
    () => (grouped ? groupAlerts(alerts) : alerts.map((a) => ({ key: String(a.id), latest: a, count: a.count ?? 1, ids: [a.id] }))),
    [alerts, grouped],
  );
  const rules = useMemo(() => [...new Set(alerts.map((a) => a.rule))].sort(), [alerts]);
  const set = (k: string, v: string | undefined) => navigate('/alerts', { ...q, [k]: v, id: k === 'id' ? v : undefined });

  return (
    <section class="alerts-page" data-held={alerts.length}>
      <div class="toolbar" role="search">
        <label>
          Severity at least{' '}
          <select value={severity} onChange={(e) => set('severity', (e.target as HTMLSelectElement).value || undefined)} name="severity">
            <option value="">any</option>
            {SEVERITIES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Rule{' '}
          <input
            list="rule-ids"
            value={rule}
            name="rule"
            placeholder="all rules"
            onChange={(e) => set('rule', (e.target as HTMLInputElement).value.trim() || undefined)}
          />
          <datalist id="rule-ids">
            {rules.map((r) => (
              <option value={r} />
            ))}
          </datalist>
        </label>
        <label class="check">
          <input type="checkbox" checked={grouped} onChange={(e) => setGrouped((e.target as HTMLInputElement).checked)} /> group repeats
        </label>
        {paused ? (
          <button type="button" class="primary" onClick={resume}>
            Resume{held.length ? ` (${held.length} new)` : ''}
          </button>
        ) : (
          <button type="button" onClick={() => setPaused(true)}>
            Pause
          </button>
        )}
        <span class={`feed-state feed-${state.s}`} role="status" data-state={state.s}>
          {state.s === 'live' ? '● live' : state.s === 'reconnecting' ? `reconnecting… ${state.detail ?? ''}` : state.s}
        </span>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class={`split${selected ? ' with-detail' : ''}`}>
        <ol class="alert-list" aria-label="Alerts, newest first">
          {groups.length === 0 && !error && <li class="muted">No alerts yet{severity || rule ? ' for these filters' : ''}.</li>}
          {groups.slice(0, shown).map((g) => {
            const a = g.latest;
            const obj = [a.objectRef?.namespace, a.objectRef?.name].filter(Boolean).join('/');
            return (
              <li key={g.key} class={`alert-item${selected && g.ids.includes(selected) ? ' selected' : ''}`} data-id={a.id} data-severity={a.severity}>
                <a href={href('/alerts', { ...q, id: a.id })} class="alert-link">
                  <SeverityBadge s={a.severity} />
                  <span class="alert-title">{a.title}</span>
                  {g.count > 1 ? (
                    <span class="repeat" title={`${g.count} alerts`} aria-label={`${g.count} repeats`}>
                      ×{g.count}
                    </span>
                  ) : (
                    <span />
                  )}
                  <span class="alert-meta">
                    {a.user} {a.verb} {a.objectRef?.resource}
                    {a.objectRef?.subresource ? `/${a.objectRef.subresource}` : ''} {obj} · {a.cluster}
                  </span>
                  <time dateTime={a.time} title={fmtTime(a.time)}>
                    {ago(a.time)}
                  </time>
                </a>
              </li>
            );
          })}
          {groups.length > shown && (
            <li class="more">
              <button type="button" onClick={() => setShown((n) => n + SHOWN)}>
                Show {Math.min(SHOWN, groups.length - shown)} more ({groups.length - shown} not shown)
              </button>
            </li>
          )}
        </ol>
        {selected !== undefined && (
          <aside class="detail-pane" aria-label="Alert detail">
            <a class="close" href={href('/alerts', { ...q, id: undefined })} aria-label="Close the detail">
              ×
            </a>
            <AlertDetail id={selected} />
          </aside>
        )}
      </div>
      <p class="muted small">
        {alerts.length} alerts held{sevRank(severity) > 0 ? ` at ${severity} or above` : ''}. Older ones:{' '}
        <a href={href('/investigate/alerts', { severity: severity || undefined, rule: rule || undefined })}>search all alerts</a>.
      </p>
    </section>
  );
}
