/**
 * Counts on the fleet store: top-N, the event and alert timelines and the store's overview, with SQLite's semantics
 * (queries.ts top, timeline.ts): requests are final stages (ResponseComplete, Panic), windows are [since, until) in
 * microseconds, timeline buckets and the ranking into 8 series plus "other" are SQLite's own code (assemble).
 */
import { SEVERITIES } from '../../detect/alert.js';
import { clampLimit, QueryError, type TopEntry } from '../queries.js';
import { ROLLUP_DIMS, type RollupDim } from '../schema.js';
import { assemble, bucketFor, HOUR_US, MINUTE_US, SCAN_LIMIT_US, type Timeline } from '../timeline.js';
import { search, type SearchContext } from './search.js';

const DIM_FIELDS: Record<RollupDim, string> = { user: 'user', resource: 'resource', verb: 'verb', namespace: 'namespace', sourceIP: 'sourceIP' };

function finalIn(since: number | undefined, until: number | undefined): object {
  const range: Record<string, number> = {};
  if (since !== undefined) range.gte = since;
  if (until !== undefined) range.lt = until;
  return { bool: { filter: [{ term: { final: true } }, ...(Object.keys(range).length ? [{ range: { ts: range } }] : [])] } };
}

/** The busiest values of a dimension over a window, counting requests. Exact while each day's index has one shard. */
export async function top(ctx: SearchContext, dim: RollupDim, f: { since?: number; until?: number; limit?: number }): Promise<TopEntry[]> {
  if (!Object.hasOwn(ROLLUP_DIMS, dim)) throw new QueryError(`cannot rank by "${dim}": one of ${Object.keys(ROLLUP_DIMS).join(', ')}`);
  const limit = clampLimit(f.limit, 10);
  const r = await search(ctx, ctx.names.events, {
    size: 0,
    query: finalIn(f.since, f.until),
    aggs: { top: { terms: { field: DIM_FIELDS[dim], size: limit, shard_size: Math.max(10_000, limit * 10) } } },
  });
  const buckets = (r.aggregations?.top as { buckets: { key: string; doc_count: number }[] } | undefined)?.buckets ?? [];
  return buckets.map((b) => ({ value: b.key, count: b.doc_count }));
}

interface CompositeAnswer {
  after_key?: Record<string, unknown>;
  buckets: { key: Record<string, unknown>; doc_count: number; n?: { value: number } }[];
}

/** Every bucket of a composite aggregation, page by page. */
async function composite(ctx: SearchContext, index: string, query: object, sources: object[], sum?: string): Promise<CompositeAnswer['buckets']> {
  const out: CompositeAnswer['buckets'] = [];
  let after: Record<string, unknown> | undefined;
  for (;;) {
    const r = await search(ctx, index, {
      size: 0,
      query,
      aggs: { c: { composite: { size: 5000, sources, ...(after ? { after } : {}) }, ...(sum ? { aggs: { n: { sum: { field: sum } } } } : {}) } },
    });
    const c = r.aggregations?.c as CompositeAnswer | undefined;
    if (!c || c.buckets.length === 0) return out;
    out.push(...c.buckets);
    if (!c.after_key) return out;
    after = c.after_key;
  }
}

/** Oldest and newest value of a numeric field. */
async function span(ctx: SearchContext, index: string, field: string): Promise<{ a: number; b: number } | undefined> {
  const r = await search(ctx, index, { size: 0, aggs: { a: { min: { field } }, b: { max: { field } } } });
  const a = (r.aggregations?.a as { value: number | null } | undefined)?.value;
  const b = (r.aggregations?.b as { value: number | null } | undefined)?.value;
  return a == null || b == null ? undefined : { a, b };
}

export async function eventTimeline(ctx: SearchContext, by: RollupDim, f: { since?: number; until?: number }): Promise<Timeline> {
  if (!Object.hasOwn(DIM_FIELDS, by)) throw new QueryError(`cannot stack by "${by}": one of ${Object.keys(DIM_FIELDS).join(', ')}`);
  let w: { since: number; until: number } | undefined;
  if (f.since !== undefined && f.until !== undefined) w = { since: f.since, until: f.until };
  else {
    const s = await span(ctx, ctx.names.events, 'ts');
    if (s) w = { since: f.since ?? s.a, until: f.until ?? s.b + 1 };
  }
  if (!w || w.until <= w.since) return { buckets: [], bucketUs: MINUTE_US, series: [] };
  const len = w.until - w.since;
  // A long window counts whole hours, as SQLite's hourly rollup does.
  const bucketUs = bucketFor(len, len <= SCAN_LIMIT_US ? MINUTE_US : HOUR_US);
  const from = len <= SCAN_LIMIT_US ? w.since : Math.floor(w.since / HOUR_US) * HOUR_US;
  const to = len <= SCAN_LIMIT_US ? w.until : Math.ceil(w.until / HOUR_US) * HOUR_US;
  const rows = await composite(ctx, ctx.names.events, finalIn(from, to), [
    { b: { histogram: { field: 'ts', interval: bucketUs } } },
    { v: { terms: { field: DIM_FIELDS[by] } } },
  ]);
  return assemble(
    rows.map((r) => ({ b: Math.round((r.key.b as number) / bucketUs), v: (r.key.v as string) || '(none)', n: r.doc_count })),
    w.since,
    w.until,
    bucketUs,
  );
}

export async function alertTimeline(ctx: SearchContext, f: { since?: number; until?: number }): Promise<Timeline> {
  let w: { since: number; until: number } | undefined;
  if (f.since !== undefined && f.until !== undefined) w = { since: f.since, until: f.until };
  else {
    const s = await span(ctx, ctx.names.alerts, 'firstTime');
    if (s) w = { since: f.since ?? s.a, until: f.until ?? s.b + 1 };
  }
  if (!w || w.until <= w.since) return { buckets: [], bucketUs: MINUTE_US, series: [] };
  const bucketUs = bucketFor(w.until - w.since, MINUTE_US);
  const rows = await composite(
    ctx,
    ctx.names.alerts,
    { range: { firstTime: { gte: w.since, lt: w.until } } },
    [{ b: { histogram: { field: 'firstTime', interval: bucketUs } } }, { s: { terms: { field: 'severity' } } }],
    'count',
  );
  const t = assemble(
    rows.map((r) => ({ b: Math.round((r.key.b as number) / bucketUs), v: SEVERITIES[r.key.s as number] ?? String(r.key.s), n: r.n?.value ?? 0 })),
    w.since,
    w.until,
    bucketUs,
  );
  t.series.sort((a, b) => SEVERITIES.indexOf(a.name as never) - SEVERITIES.indexOf(b.name as never));
  return t;
}

export { span as fieldSpan };
