/**
 * The console's only way to the server: the public API under /api/v1, with the bearer token the analyst typed (kept
 * in sessionStorage: gone when the tab closes, never in a URL).
 */

const TOKEN_KEY = 'kaudit.token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** Called when the server answers 401: the shell shows the login form. */
let onUnauthorized: (msg: string) => void = () => undefined;
export function setUnauthorizedHandler(fn: (msg: string) => void): void {
  onUnauthorized = fn;
}

type ApiInit = { method?: string; body?: unknown; signal?: AbortSignal; query?: Record<string, string | number | undefined> };

/**
 * A token bound to a cluster may read only with cluster=<it> in the query: when the server says so (403 naming the
 * cluster), the request is made again once with it.
 */
export async function api<T>(path: string, init: ApiInit = {}): Promise<T> {
  try {
    return await request<T>(path, init);
  } catch (e) {
    const bound = e instanceof ApiError && e.status === 403 ? /bound to cluster "([^"]+)"/.exec(e.message)?.[1] : undefined;
    if (!bound || init.query?.cluster !== undefined) throw e;
    return request<T>(path, { ...init, query: { ...init.query, cluster: bound } });
  }
}

async function request<T>(path: string, init: ApiInit): Promise<T> {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [k, v] of Object.entries(init.query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
  const headers: Record<string, string> = { accept: 'application/json' };
  const t = token.get();
  if (t) headers.authorization = `Bearer ${t}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: init.signal,
    credentials: 'omit',
    cache: 'no-store',
  });
  const text = await res.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const msg = (data as { error?: string } | undefined)?.error ?? `${res.status} ${res.statusText}`;
    if (res.status === 401) onUnauthorized(msg);
    throw new ApiError(res.status, msg);
  }
  return data as T;
}

export interface Page<T> {
  items: T[];
  next?: string;
}

export interface AlertRow {
  id: number;
  rule: string;
  title: string;
  severity: Severity;
  tags: string[];
  summary: string;
  cluster: string;
  auditID: string;
  stage: string;
  time: string;
  user: string;
  sourceIP: string;
  verb: string;
  objectRef: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string };
  count?: number;
  firstTime?: string;
  lastTime?: string;
  eventId?: number | null;
  lastEventId?: number | null;
  details?: Record<string, unknown>;
}

export interface EventRow {
  id: number;
  time: string;
  stage: string;
  auditID: string;
  cluster: string;
  verb: string;
  user: string;
  groups?: string[];
  impersonatedUser?: string;
  sourceIP: string;
  userAgent?: string;
  apiGroup?: string;
  resource: string;
  subresource?: string;
  namespace: string;
  name: string;
  code: number;
  decision?: string;
  level?: string;
  command?: string;
  container?: string;
  event?: Record<string, unknown>;
}

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];
export const sevRank = (s: string) => SEVERITIES.indexOf(s as Severity);
