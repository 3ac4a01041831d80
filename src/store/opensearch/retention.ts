/**
 * Retention on the fleet store, done by kaudit (the same on every cluster, whether or not the Index State Management
 * plugin is installed): a day's events index is deleted once the whole day is past the age limit (event time), and
 * while the events indices together are over the size limit, the oldest day goes first (the newest day never: it is
 * being written). A day's admission index (admission-docs.ts) goes with its events index, and counts in its size.
 * Alerts, dead letters and positions are kept, as in SQLite. Granularity is a day, where SQLite's is a stored batch.
 *
 * OpenSearch's Index State Management plugin could do this by policy, but it is a plugin that not every cluster has
 * (a managed service's may differ, a bare node has none): kaudit does it itself, the same everywhere.
 */
import { log } from '../../log.js';
import type { RetentionOptions } from '../store.js';
import { dayOfIndex } from './indices.js';
import type { SearchContext } from './search.js';

const DAY_MS = 86_400_000;

/** One day's indices: its events index and its admission index, if any. */
interface DayInfo {
  indices: string[];
  day: number;
  bytes: number;
  hasEvents: boolean;
}

async function days(ctx: SearchContext): Promise<DayInfo[]> {
  const r = await ctx.conn.request<{ index: string; 'store.size': string }[]>('GET', `/_cat/indices/${ctx.names.events},${ctx.names.admission}`, undefined, {
    query: { format: 'json', bytes: 'b', h: 'index,store.size' },
  });
  const byDay = new Map<number, DayInfo>();
  for (const i of r.body) {
    const day = dayOfIndex(ctx.names.prefix, i.index);
    if (day === undefined) continue;
    let d = byDay.get(day);
    if (!d) byDay.set(day, (d = { indices: [], day, bytes: 0, hasEvents: false }));
    d.indices.push(i.index);
    d.bytes += Number(i['store.size']) || 0;
    d.hasEvents ||= i.index.startsWith(`${ctx.names.prefix}-events-`);
  }
  return [...byDay.values()].sort((a, b) => a.day - b.day);
}

/** One pass: the indices it deleted. */
export async function applyRetention(ctx: SearchContext, o: RetentionOptions, now = Date.now()): Promise<string[]> {
  const all = await days(ctx);
  const drop = new Set<DayInfo>();
  if (o.maxAgeMs !== undefined) for (const d of all) if (d.day + DAY_MS <= now - o.maxAgeMs) drop.add(d);
  if (o.maxBytes !== undefined) {
    let size = all.filter((d) => !drop.has(d)).reduce((n, d) => n + d.bytes, 0);
    const newest = all.findLast((d) => d.hasEvents);
    for (const d of all) {
      if (size <= o.maxBytes || d === newest) break;
      if (drop.has(d)) continue;
      drop.add(d);
      size -= d.bytes;
    }
  }
  const gone = [...drop].flatMap((d) => d.indices);
  if (gone.length) {
    await ctx.conn.request('DELETE', `/${gone.join(',')}`, undefined, { ignore: [404] });
    log.info(`retention: deleted the indices of whole days, ${gone.join(', ')}`);
  }
  return gone;
}
