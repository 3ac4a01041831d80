import { useEffect, useState } from 'preact/hooks';
import { api, type AlertRow, type EventRow, type Page } from '../lib/api.js';
import { around, fmtTime } from '../lib/format.js';
import { href } from '../lib/route.js';
import { SeverityBadge } from './Alerts.js';

/**
 * One alert: the rule's title, severity, MITRE ATT&CK ids and why it fired; the event that triggered it (redacted,
 * as stored); every stage of that request; and a link to the actor's activity around that time.
 */

const MITRE = /^T\d{4}(\.\d{3})?$/;

export function AlertDetail(props: { id: number }) {
  const [alert, setAlert] = useState<AlertRow>();
  const [event, setEvent] = useState<EventRow>();
  const [stages, setStages] = useState<EventRow[]>([]);
  const [error, setError] = useState('');
  useEffect(() => {
    let gone = false;
    setAlert(undefined);
    setEvent(undefined);
    setStages([]);
    setError('');
    (async () => {
      const a = await api<AlertRow>(`/alerts/${props.id}`);
      if (gone) return;
      setAlert(a);
      const [ev, st] = await Promise.all([
        a.eventId ? api<EventRow>(`/events/${a.eventId}`).catch(() => undefined) : Promise.resolve(undefined),
        api<Page<EventRow>>('/events', { query: { auditID: a.auditID, cluster: a.cluster, limit: 20 } }),
      ]);
      if (gone) return;
      setEvent(ev);
      setStages(st.items.slice().sort((x, y) => x.id - y.id));
    })().catch((e: Error) => !gone && setError(e.message));
    return () => {
      gone = true;
    };
  }, [props.id]);
  if (error)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  if (!alert) return <p class="muted">Loading alert {props.id}…</p>;
  const mitre = alert.tags.filter((t) => MITRE.test(t));
  const other = alert.tags.filter((t) => !MITRE.test(t));
  const win = around(alert.time, 15);
  return (
    <article class="alert-detail" data-alert-id={alert.id}>
      <h2>
        <SeverityBadge s={alert.severity} /> {alert.title}
      </h2>
      <p class="why">{alert.summary}</p>
      <dl class="facts">
        <dt>Rule</dt>
        <dd>
          <code>{alert.rule}</code>
        </dd>
        <dt>MITRE ATT&amp;CK</dt>
        <dd>{mitre.length ? mitre.map((t) => <code class="tag">{t}</code>) : '—'}</dd>
        {other.length > 0 && (
          <>
            <dt>Tags</dt>
            <dd>{other.join(', ')}</dd>
          </>
        )}
        <dt>Who</dt>
        <dd>
          {alert.user} from {alert.sourceIP || '?'}
        </dd>
        <dt>What</dt>
        <dd>
          {alert.verb} {alert.objectRef?.resource}
          {alert.objectRef?.subresource ? `/${alert.objectRef.subresource}` : ''}{' '}
          {[alert.objectRef?.namespace, alert.objectRef?.name].filter(Boolean).join('/')}
        </dd>
        <dt>When</dt>
        <dd>
          {fmtTime(alert.time)}
          {alert.count && alert.count > 1 ? ` (${alert.count} times, until ${fmtTime(alert.lastTime)})` : ''}
        </dd>
        <dt>Cluster</dt>
        <dd>{alert.cluster}</dd>
      </dl>
      <p>
        <a class="button primary" href={href('/investigate/activity', { user: alert.user, since: win.since, until: win.until, cluster: alert.cluster })}>
          {alert.user}'s activity 15 min either side →
        </a>
      </p>
      {alert.details && Object.keys(alert.details).length > 0 && (
        <details open>
          <summary>Why it fired (details)</summary>
          <pre>{JSON.stringify(alert.details, null, 2)}</pre>
        </details>
      )}
      <h3>Stages of the request</h3>
      <ol class="stages">
        {stages.map((s) => (
          <li key={s.id}>
            <strong>{s.stage}</strong> {fmtTime(s.time)} · code {s.code || '—'} {s.decision ? `· ${s.decision}` : ''}
          </li>
        ))}
        {stages.length === 0 && <li class="muted">No stored stages (expired by retention?)</li>}
      </ol>
      <details open={!!event}>
        <summary>Triggering event (redacted, as stored)</summary>
        {event?.event ? <pre class="event-json">{JSON.stringify(event.event, null, 2)}</pre> : <p class="muted">Not stored.</p>}
      </details>
    </article>
  );
}
