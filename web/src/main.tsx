import { render, type ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, setUnauthorizedHandler, token } from './lib/api.js';
import { href, useRoute } from './lib/route.js';
import { useUnseenElsewhere } from './lib/unseen.js';
import { AlertsPage } from './pages/Alerts.js';
import { InvestigatePage } from './pages/Investigate.js';
import { PolicyPage } from './pages/Policy.js';
import { StatusPage } from './pages/Status.js';
import './style.css';

/**
 * The shell: asks the server whether it needs a token (a loopback listen without tokens just opens), shows the login
 * form when it does, then the five areas. The token lives in sessionStorage only.
 */

/** The charts page (uPlot is half the script) loads when first opened, not with the console. */
function LazyCharts(props: { route: ReturnType<typeof useRoute> }) {
  const [C, setC] = useState<ComponentType<{ route: ReturnType<typeof useRoute> }>>();
  const [error, setError] = useState('');
  useEffect(() => {
    import('./pages/Charts.js').then((m) => setC(() => m.ChartsPage)).catch((e: Error) => setError(e.message));
  }, []);
  if (error)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  return C ? <C route={props.route} /> : <p class="muted">Loading charts…</p>;
}

const AREAS = [
  { id: 'alerts', label: 'Alerts' },
  { id: 'investigate', label: 'Investigate' },
  { id: 'charts', label: 'Charts' },
  { id: 'policy', label: 'Policy' },
  { id: 'status', label: 'Status' },
];

function Login(props: { message: string; onIn: () => void }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState(props.message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    token.set(value.trim());
    try {
      await api('/status');
      props.onIn();
    } catch (err) {
      token.clear();
      setError(
        err instanceof ApiError && err.status === 401
          ? 'That token was refused.'
          : err instanceof ApiError && err.status === 403
            ? `${(err as Error).message}`
            : (err as Error).message,
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login" id="main">
      <form onSubmit={submit} class="card" aria-label="Sign in">
        <h1>kaudit console</h1>
        <p>This server requires a bearer token with the read or admin scope (from its tokens file).</p>
        <label for="token">Token</label>
        <input
          id="token"
          type="password"
          autocomplete="current-password"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          required
        />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button class="primary" type="submit" disabled={busy || !value.trim()}>
          Sign in
        </button>
        <p class="muted small">The token stays in this tab's session storage and is sent only to this server.</p>
      </form>
    </main>
  );
}

function App() {
  const route = useRoute();
  // Optimistic: the first page's own requests tell whether a token is needed (a 401 shows the login form), so
  // opening the console costs no extra round trip.
  const [auth, setAuth] = useState<'in' | 'out'>('in');
  const [authMsg, setAuthMsg] = useState('');
  const area = route.path[0] ?? 'alerts';
  // The badge: on the Alerts page, what it holds back (paused, or arrived while the tab was hidden); elsewhere, what
  // arrived since the analyst left it.
  const [pageUnseen, setPageUnseen] = useState(0);
  const elsewhere = useUnseenElsewhere(auth === 'in' && area !== 'alerts');
  const unseen = area === 'alerts' ? pageUnseen : elsewhere.unseen;
  useEffect(() => {
    setUnauthorizedHandler((msg) => {
      const had = token.get() !== null;
      token.clear();
      setAuthMsg(had ? `The server refused the token (${msg}): revoked or rotated? Sign in again.` : '');
      setAuth('out');
    });
  }, []);
  useEffect(() => {
    document.title = `${unseen ? `(${unseen}) ` : ''}kaudit · ${AREAS.find((a) => a.id === route.path[0])?.label ?? 'Alerts'}`;
  }, [area, unseen]);
  if (auth === 'out') return <Login message={authMsg} onIn={() => setAuth('in')} />;
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">kaudit</span>
        <nav aria-label="Areas">
          {AREAS.map((a) => (
            <a key={a.id} href={href(`/${a.id}`)} aria-current={area === a.id ? 'page' : undefined}>
              {a.label}
              {a.id === 'alerts' && unseen > 0 && (
                <span class="badge" aria-label={`${unseen} unseen alerts`} data-unseen={unseen}>
                  {unseen}
                </span>
              )}
            </a>
          ))}
        </nav>
        {token.get() && (
          <button
            type="button"
            class="link"
            onClick={() => {
              token.clear();
              setAuth('out');
            }}
          >
            Sign out
          </button>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        <h1 class="visually-hidden">{AREAS.find((a) => a.id === area)?.label ?? 'kaudit'}</h1>
        {area === 'alerts' && <AlertsPage route={route} onUnseen={setPageUnseen} onSeen={elsewhere.seen} />}
        {area === 'investigate' && <InvestigatePage route={route} />}
        {area === 'charts' && <LazyCharts route={route} />}
        {area === 'policy' && <PolicyPage />}
        {area === 'status' && <StatusPage />}
        {!AREAS.some((a) => a.id === area) && <p class="error">No page “{area}”.</p>}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
