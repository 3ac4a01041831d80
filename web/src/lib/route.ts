import { useEffect, useState } from 'preact/hooks';

/**
 * Hash routes (`#/investigate/exec?user=alice&since=30m`): every view and its filters are in the URL, so a view can
 * be bookmarked, shared and reloaded, and the server needs no fallback route. The token is never part of it.
 */

export interface Route {
  path: string[];
  query: Record<string, string>;
}

export function parseRoute(hash = location.hash): Route {
  const h = hash.replace(/^#/, '') || '/alerts';
  const [p, q = ''] = h.split('?', 2) as [string, string?];
  const query: Record<string, string> = {};
  new URLSearchParams(q).forEach((v, k) => (query[k] = v));
  return { path: p.split('/').filter(Boolean).map(decodeURIComponent), query };
}

export function href(path: string, query: Record<string, string | number | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ''}`;
}

export function navigate(path: string, query: Record<string, string | number | undefined> = {}, replace = false): void {
  const h = href(path, query);
  if (replace) history.replaceState(null, '', h);
  else location.hash = h;
  if (replace) window.dispatchEvent(new HashChangeEvent('hashchange'));
}

export function useRoute(): Route {
  const [r, setR] = useState(parseRoute);
  useEffect(() => {
    const on = () => setR(parseRoute());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return r;
}
