/**
 * Retention on the fleet store, done by kaudit (the same on every cluster, whether or not the Index State Management
 * plugin is installed): a day's events index is deleted once the whole day is past the age limit (event time), and
 * while the events indices together are over the size limit, the oldest day goes first (the newest day never: it is
 * being written). Alerts, dead letters and positions are kept, as in SQLite. Granularity is a day, where SQLite's is
 * a stored batch.
 */
import { log } from '../../log.js';
import type { RetentionOptions } from '../store.js';
import { dayOfIndex } from './indices.js';
import type { SearchContext } from './search.js';

const DAY_MS = 86_400_000;

interface IndexInfo {
  index: string;
  day: number;
  bytes: number;
}

async function eventIndices(ctx: SearchContext): Promise<IndexInfo[]> {
  const r = await ctx.conn.request<{ index: string; 'store.size': string }[]>('GET', `/_cat/indices/${ctx.names.events}`, undefined, {
    query: { format: 'json', bytes: 'b', h: 'index,store.size' },
  });
  const out: IndexInfo[] = [];
  for (const i of r.body) {
    const day = dayOfIndex(ctx.names.prefix, i.index);
    if (day !== undefined) out.push({ index: i.index, day, bytes: Number(i['store.size']) || 0 });
  }
  return out.sort((a, b) => a.day - b.day);
}

/** One pass: the indices it deleted. */
export async function applyRetention(ctx: SearchContext, o: RetentionOptions, now = Date.now()): Promise<string[]> {
  const all = await eventIndices(ctx);
  const drop = new Set<string>();
  if (o.maxAgeMs !== undefined) for (const i of all) if (i.day + DAY_MS <= now - o.maxAgeMs) drop.add(i.index);
  if (o.maxBytes !== undefined) {
    let size = all.filter((i) => !drop.has(i.index)).reduce((n, i) => n + i.bytes, 0);
    for (const i of all.slice(0, -1)) {
      if (size <= o.maxBytes) break;
      if (drop.has(i.index)) continue;
      drop.add(i.index);
      size -= i.bytes;
    }
  }
  const gone = [...drop];
  if (gone.length) {
    await ctx.conn.request('DELETE', `/${gone.join(',')}`, undefined, { ignore: [404] });
    log.info(`retention: deleted events indices ${gone.join(', ')}`);
  }
  return gone;
}
