import { SEVERITIES } from '../detect/alert.js';
import { QueryError } from './queries.js';
import { ROLLUP_DIMS, type RollupDim } from './schema.js';
import type { SqliteContext } from './sqlite-context.js';

/**
 * Counts over time, for charts: requests (final stages) per bucket stacked by a dimension, alerts per bucket stacked
 * by severity. Times are microseconds, as stored. A window of more than six hours is answered from the hourly rollup
 * (cheap at any volume); a shorter one from the events' time index, in buckets of a minute or more.
 */

export const MINUTE_US = 60_000_000;
export const HOUR_US = 3_600_000_000;
/** Longest window read from the events themselves; beyond it the rollup answers. */
export const SCAN_LIMIT_US = 6 * HOUR_US;
/** Series past this many are summed into "other". */
const MAX_SERIES = 8;
const MAX_BUCKETS = 2000;

export interface Timeline {
  /** Bucket starts, microseconds. */
  buckets: number[];
  bucketUs: number;
  series: { name: string; counts: number[] }[];
}

const COLUMNS: Record<RollupDim, string> = { user: 'user', resource: 'resource', verb: 'verb', namespace: 'namespace', sourceIP: 'source_ip' };

export function bucketFor(span: number, minBucket: number): number {
  // The smallest "nice" size that gives at most MAX_BUCKETS / 10 buckets: a readable chart.
  for (const b of [1, 5, 15, 30, 60, 180, 360, 720, 1440, 10080].map((m) => m * MINUTE_US)) if (b >= minBucket && span / b <= MAX_BUCKETS / 10) return b;
  return Math.max(minBucket, Math.ceil(span / (MAX_BUCKETS / 10) / HOUR_US) * HOUR_US);
}

export function assemble(rows: { b: number; v: string; n: number }[], since: number, until: number, bucketUs: number): Timeline {
  const first = Math.floor(since / bucketUs);
  const last = Math.ceil(until / bucketUs);
  const nb = Math.max(1, Math.min(MAX_BUCKETS, last - first));
  const totals = new Map<string, number>();
  for (const r of rows) totals.set(r.v, (totals.get(r.v) ?? 0) + r.n);
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([v]) => v);
  const kept = new Set(ranked.slice(0, MAX_SERIES));
  const series = new Map<string, number[]>();
  for (const v of ranked.slice(0, MAX_SERIES)) series.set(v, new Array(nb).fill(0));
  if (ranked.length > MAX_SERIES) series.set('other', new Array(nb).fill(0));
  for (const r of rows) {
    const i = r.b - first;
    if (i < 0 || i >= nb) continue;
    series.get(kept.has(r.v) ? r.v : 'other')![i]! += r.n;
  }
  return {
    buckets: Array.from({ length: nb }, (_, i) => (first + i) * bucketUs),
    bucketUs,
    series: [...series.entries()].map(([name, counts]) => ({ name, counts })),
  };
}

/** The store's span of event time, to default a chart's window to the data there is. */
function span(store: SqliteContext, since?: number, until?: number): { since: number; until: number } | undefined {
  if (since !== undefined && until !== undefined) return { since, until };
  const s = store.db.prepare('SELECT min(time) AS a, max(time) AS b FROM events').get() as { a: number | null; b: number | null };
  if (s.a === null || s.b === null) return undefined;
  return { since: since ?? s.a, until: until ?? s.b + 1 };
}

export function eventTimeline(store: SqliteContext, by: RollupDim, f: { since?: number; until?: number }): Timeline {
  if (!(by in COLUMNS)) throw new QueryError(`cannot stack by "${by}": one of ${Object.keys(COLUMNS).join(', ')}`);
  const w = span(store, f.since, f.until);
  if (!w || w.until <= w.since) return { buckets: [], bucketUs: MINUTE_US, series: [] };
  const len = w.until - w.since;
  let rows: { b: number; v: number; n: number }[];
  let bucketUs: number;
  if (len <= SCAN_LIMIT_US) {
    bucketUs = bucketFor(len, MINUTE_US);
    rows = store.db
      .prepare(
        `SELECT CAST(time / ? AS INTEGER) AS b, ${COLUMNS[by]} AS v, count(*) AS n FROM events WHERE time >= ? AND time < ? AND stage IN (2, 3) GROUP BY b, v`,
      )
      .all(bucketUs, w.since, w.until) as typeof rows;
  } else {
    bucketUs = bucketFor(len, HOUR_US);
    const per = bucketUs / HOUR_US;
    rows = store.db
      .prepare('SELECT CAST(hour / ? AS INTEGER) AS b, value AS v, sum(n) AS n FROM rollup WHERE dim = ? AND hour >= ? AND hour < ? GROUP BY b, v')
      .all(per, ROLLUP_DIMS[by], Math.floor(w.since / HOUR_US), Math.ceil(w.until / HOUR_US)) as typeof rows;
  }
  return assemble(
    rows.map((r) => ({ b: r.b, v: store.dictValue(r.v) || '(none)', n: r.n })),
    w.since,
    w.until,
    bucketUs,
  );
}

export function alertTimeline(store: SqliteContext, f: { since?: number; until?: number }): Timeline {
  let w: { since: number; until: number } | undefined;
  if (f.since !== undefined && f.until !== undefined) w = { since: f.since, until: f.until };
  else {
    const s = store.db.prepare('SELECT min(first_time) AS a, max(first_time) AS b FROM alerts').get() as { a: number | null; b: number | null };
    if (s.a !== null && s.b !== null) w = { since: f.since ?? s.a, until: f.until ?? s.b + 1 };
  }
  if (!w || w.until <= w.since) return { buckets: [], bucketUs: MINUTE_US, series: [] };
  const bucketUs = bucketFor(w.until - w.since, MINUTE_US);
  const rows = store.db
    .prepare('SELECT CAST(first_time / ? AS INTEGER) AS b, severity AS s, sum(count) AS n FROM alerts WHERE first_time >= ? AND first_time < ? GROUP BY b, s')
    .all(bucketUs, w.since, w.until) as { b: number; s: number; n: number }[];
  const t = assemble(
    rows.map((r) => ({ b: r.b, v: SEVERITIES[r.s] ?? String(r.s), n: r.n })),
    w.since,
    w.until,
    bucketUs,
  );
  // Severity order, most severe on top of the stack.
  t.series.sort((a, b) => SEVERITIES.indexOf(a.name as never) - SEVERITIES.indexOf(b.name as never));
  return t;
}
