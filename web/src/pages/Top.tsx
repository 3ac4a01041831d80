import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../lib/api.js';
import { href, navigate } from '../lib/route.js';

/** The busiest users, resources, verbs, namespaces and source IPs over a window (from the hourly rollup). */

const DIMS: { dim: string; label: string; link?: (v: string) => string }[] = [
  { dim: 'user', label: 'Users', link: (v) => href('/investigate/activity', { user: v }) },
  { dim: 'resource', label: 'Resources' },
  { dim: 'verb', label: 'Verbs' },
  { dim: 'namespace', label: 'Namespaces' },
  { dim: 'sourceIP', label: 'Source IPs' },
];

export function TopPanel(props: { query: Record<string, string> }) {
  const { since, until } = props.query;
  const [data, setData] = useState<Record<string, { value: string; count: number }[]>>({});
  const [error, setError] = useState('');
  const form = useRef<HTMLFormElement>(null);
  useEffect(() => {
    let gone = false;
    setError('');
    Promise.all(
      DIMS.map((d) =>
        api<{ items: { value: string; count: number }[] }>(`/analyst/top/${d.dim}`, { query: { since, until, limit: 10 } }).then(
          (r) => [d.dim, r.items] as const,
        ),
      ),
    )
      .then((all) => !gone && setData(Object.fromEntries(all)))
      .catch((e: Error) => !gone && setError(e.message));
    return () => {
      gone = true;
    };
  }, [since, until]);
  const submit = (e: Event) => {
    e.preventDefault();
    const f = new FormData(form.current!);
    navigate('/investigate/top', { since: String(f.get('since') ?? '').trim() || undefined, until: String(f.get('until') ?? '').trim() || undefined });
  };
  return (
    <>
      <form class="filters" ref={form} onSubmit={submit} role="search" aria-label="Top filters">
        <label key={`s${since}`}>
          since
          <input name="since" defaultValue={since ?? ''} placeholder="24h, 2026-11-01" />
        </label>
        <label key={`u${until}`}>
          until
          <input name="until" defaultValue={until ?? ''} placeholder="now" />
        </label>
        <button class="primary" type="submit">
          Run
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="top-grid">
        {DIMS.map((d) => {
          const items = data[d.dim] ?? [];
          const max = items[0]?.count ?? 1;
          return (
            <section class="card" key={d.dim} aria-label={`Top ${d.label}`}>
              <h3>{d.label}</h3>
              <ol class="bars">
                {items.map((i) => (
                  <li key={i.value}>
                    <span class="bar-label">{d.link ? <a href={d.link(i.value)}>{i.value || '(none)'}</a> : i.value || '(none)'}</span>
                    <meter min={0} max={max} value={i.count} aria-label={`${i.value} ${i.count}`} />
                    <span class="bar-count">{i.count.toLocaleString('en')}</span>
                  </li>
                ))}
                {items.length === 0 && <li class="muted">nothing in this window</li>}
              </ol>
            </section>
          );
        })}
      </div>
    </>
  );
}
