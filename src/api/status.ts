import type { FastifyInstance } from 'fastify';
import type { ApiContext } from './context.js';

/**
 * What this node is doing, for people (the console's Status page) and scripts: its sources and how far behind they
 * are (tails, webhook, Kafka partitions), the store's size, span and retention, and the newest dead letters with their
 * reasons. Read from the store's small tables and the metrics registry; nothing here scans the events table.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (what Metrics.render writes) into samples; skips what it cannot read. */
export function parseExposition(text: string, wanted: (name: string) => boolean): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || !wanted(m[1]!)) continue;
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (let l; (l = re.exec(m[3] ?? ''));) labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    const value = Number(m[4]);
    if (Number.isFinite(value)) out.push({ name: m[1]!, labels, value });
  }
  return out;
}

const STARTED = Date.now();
/** Metric families shown per area (kaudit_<area>_*). */
const AREAS = ['tail', 'webhook', 'kafka', 'ingest'];
const sampleSchema = {
  type: 'object',
  properties: { name: { type: 'string' }, labels: { type: 'object', additionalProperties: { type: 'string' } }, value: { type: 'number' } },
} as const;
const iso = (ms: number | null | undefined) => (typeof ms === 'number' ? new Date(ms).toISOString() : undefined);
/** Event times are stored in microseconds. */
const isoUs = (us: number | null | undefined) => (typeof us === 'number' ? iso(Math.floor(us / 1000)) : undefined);

export async function statusRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { ctx } = opts;
  const { store, config } = ctx;
  app.get(
    '/status',
    {
      schema: {
        summary: 'Sources and their lag, store size, span and retention, dead letters with their reasons',
        tags: ['status'],
        response: {
          200: {
            type: 'object',
            properties: {
              ready: { type: 'boolean' },
              problem: { type: 'string' },
              startedAt: { type: 'string' },
              store: {
                type: 'object',
                properties: {
                  bytes: { type: 'integer' },
                  oldestEvent: { type: 'string' },
                  newestEvent: { type: 'string' },
                  alerts: { type: 'integer' },
                  deadLetters: { type: 'integer' },
                  retention: { type: 'object', properties: { maxAge: { type: 'string' }, maxSize: { type: 'string' } } },
                },
              },
              positions: { type: 'array', items: { type: 'object', properties: { source: { type: 'string' }, updated: { type: 'string' } } } },
              tails: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, lagBytes: { type: 'number' } } } },
              webhook: { type: 'array', items: sampleSchema },
              kafka: { type: 'array', items: sampleSchema },
              ingest: { type: 'array', items: sampleSchema },
              feed: { type: 'object', properties: { clients: { type: 'number' } } },
              deadLetters: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'integer' },
                    received: { type: 'string' },
                    source: { type: 'string' },
                    position: { type: 'string' },
                    reason: { type: 'string' },
                    size: { type: 'integer' },
                  },
                },
              },
            },
          },
        },
      },
    },
    async () => {
      const o = await store.overview();
      const positions = o.positions.map((p) => ({ source: p.source, updated: iso(p.updated)! }));
      const samples = parseExposition(
        ctx.metrics.render(),
        (n) =>
          AREAS.some((a) => n.startsWith(`kaudit_${a}_`)) ||
          n === 'kaudit_feed_clients' ||
          n === 'kaudit_bad_input_total' ||
          n === 'kaudit_events_ingested_total',
      );
      const by = (area: string) => samples.filter((s) => s.name.startsWith(area.startsWith('kaudit') ? area : `kaudit_${area}_`));
      const r = config.store.retention;
      return {
        ready: ctx.ready(),
        ...(ctx.problem?.() ? { problem: ctx.problem() } : {}),
        startedAt: iso(STARTED),
        store: {
          bytes: await store.sizeBytes(),
          oldestEvent: isoUs(o.oldestEvent ?? null),
          newestEvent: isoUs(o.newestEvent ?? null),
          alerts: o.alerts,
          deadLetters: o.deadLetters,
          retention: { ...(r.maxAge ? { maxAge: r.maxAge } : {}), ...(r.maxSize ? { maxSize: String(r.maxSize) } : {}) },
        },
        positions,
        tails: by('kaudit_tail_lag_bytes').map((s) => ({ path: s.labels.path ?? '?', lagBytes: s.value })),
        webhook: by('webhook'),
        kafka: by('kafka'),
        ingest: [...by('ingest'), ...by('kaudit_bad_input_total'), ...by('kaudit_events_ingested_total')],
        feed: { clients: samples.find((s) => s.name === 'kaudit_feed_clients')?.value ?? 0 },
        deadLetters: await store.deadLetters(50),
      };
    },
  );
}
