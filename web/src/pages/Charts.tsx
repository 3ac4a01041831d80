import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../lib/api.js';
import { StackedChart, type Timeline } from '../components/Chart.js';
import { navigate, type Route } from '../lib/route.js';

/** Events and alerts over time, stacked by a dimension and by severity; drag across a chart to narrow the window. */

const BY = ['verb', 'user', 'resource', 'namespace', 'sourceIP'];

export function ChartsPage(props: { route: Route }) {
  const q = props.route.query;
  const by = BY.includes(q.by ?? '') ? q.by! : 'verb';
  const [events, setEvents] = useState<Timeline>();
  const [alerts, setAlerts] = useState<Timeline>();
  const [error, setError] = useState('');
  const form = useRef<HTMLFormElement>(null);
  useEffect(() => {
    let gone = false;
    setError('');
    Promise.all([
      api<Timeline>('/analyst/timeline/events', { query: { by, since: q.since, until: q.until } }),
      api<Timeline>('/analyst/timeline/alerts', { query: { since: q.since, until: q.until } }),
    ])
      .then(([e, a]) => {
        if (gone) return;
        setEvents(e);
        setAlerts(a);
      })
      .catch((e: Error) => !gone && setError(e.message));
    return () => {
      gone = true;
    };
  }, [by, q.since, q.until]);
  const brush = (a: Date, b: Date) => navigate('/charts', { ...q, since: a.toISOString(), until: b.toISOString() });
  const submit = (e: Event) => {
    e.preventDefault();
    const f = new FormData(form.current!);
    navigate('/charts', {
      by: String(f.get('by')),
      since: String(f.get('since') ?? '').trim() || undefined,
      until: String(f.get('until') ?? '').trim() || undefined,
    });
  };
  return (
    <section class="charts">
      <form class="filters" ref={form} onSubmit={submit} role="search" aria-label="Chart window">
        <label>
          stack events by
          <select name="by" value={by}>
            {BY.map((b) => (
              <option value={b}>{b}</option>
            ))}
          </select>
        </label>
        <label key={`s${q.since}`}>
          since
          <input name="since" defaultValue={q.since ?? ''} placeholder="all stored; or 24h, 2026-11-01" />
        </label>
        <label key={`u${q.until}`}>
          until
          <input name="until" defaultValue={q.until ?? ''} placeholder="now" />
        </label>
        <button class="primary" type="submit">
          Show
        </button>
        {(q.since || q.until) && (
          <button type="button" onClick={() => navigate('/charts', { by })}>
            Whole span
          </button>
        )}
      </form>
      <p class="muted small">Drag across a chart to zoom into that time range (the URL keeps it).</p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {events && <StackedChart title={`Requests over time by ${by} (${events.bucketSeconds / 60} min buckets)`} data={events} onBrush={brush} />}
      {alerts && <StackedChart title={`Alerts over time by severity (${alerts.bucketSeconds / 60} min buckets)`} data={alerts} onBrush={brush} />}
    </section>
  );
}
