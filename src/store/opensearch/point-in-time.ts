/**
 * Points in time behind the fleet store's cursors. A page opens one (over the indices a query reads) and its cursor
 * carries it, so every later page reads the same snapshot: an event that arrives late (older than the cursor, from a
 * slow cluster or a redelivered batch) or an alert repeat counted meanwhile does not show up halfway through.
 *
 * Paging never depends on one being there: the sort keys are unique (documents.ts, alerts.ts), so `search_after` on
 * them alone pages without a row skipped or doubled. A point in time that has expired, was closed, or lost a shard
 * (retention deleted its index) is replaced by a new one at the cursor; where OpenSearch will not open one (no index
 * yet, its `search.max_open_pit_context` reached) the page is read from the live indices.
 *
 * Bounded: a point in time lives `keepAliveMs` after its last page (renewed by each page), the last page closes its
 * own, and one store keeps at most `maxOpen` open, closing the one used longest ago to open another (its cursor then
 * goes on with a new one, as above).
 */
import { log } from '../../log.js';
import { OpenSearchRequestError, type OpenSearchConnection } from './connection.js';
import type { SearchAnswer, SearchContext } from './search.js';

export interface PointInTimeOptions {
  /** How long a point in time is kept after its last page (default 2 minutes). */
  keepAliveMs?: number;
  /** Open points in time per store, at most (default 64; OpenSearch's own limit is 300 per node). */
  maxOpen?: number;
}

/** What the paged queries read through: a search context with the store's points in time. */
export interface PagingContext extends SearchContext {
  readonly pits: PointsInTime;
}

interface PitAnswer<T> extends SearchAnswer<T> {
  pit_id?: string;
  _shards?: { failed?: number };
}

export class PointsInTime {
  readonly keepAliveMs: number;
  readonly maxOpen: number;
  /** Open ids by last use, oldest first (a Map keeps insertion order; a use moves its id to the end). */
  private readonly open = new Map<string, number>();

  constructor(
    private readonly conn: OpenSearchConnection,
    o: PointInTimeOptions = {},
  ) {
    this.keepAliveMs = o.keepAliveMs ?? 120_000;
    this.maxOpen = Math.max(1, o.maxOpen ?? 64);
  }

  private get keepAlive(): string {
    return `${Math.max(1, Math.ceil(this.keepAliveMs / 1000))}s`;
  }

  /** How many this store holds open now. */
  get size(): number {
    return this.open.size;
  }

  /** Opens a point in time over `index`; undefined where OpenSearch will not (then pages read the live indices). */
  async create(index: string): Promise<string | undefined> {
    const now = Date.now();
    for (const [id, used] of this.open) if (used < now - this.keepAliveMs) this.open.delete(id); // expired by itself
    while (this.open.size >= this.maxOpen) this.close(this.open.keys().next().value!);
    try {
      const r = await this.conn.request<{ pit_id?: string }>('POST', `/${index}/_search/point_in_time`, undefined, { query: { keep_alive: this.keepAlive } });
      if (!r.body.pit_id) return undefined;
      this.open.set(r.body.pit_id, now);
      return r.body.pit_id;
    } catch (e) {
      // No index matches yet (OpenSearch answers 400 "invalid id"), or too many open on the node (429): the live
      // indices answer this page instead. Anything else (unreachable) is the caller's error.
      if (e instanceof OpenSearchRequestError || /too many Point In Time/i.test((e as Error).message)) {
        log.debug(`no point in time over ${index}: ${(e as Error).message}`);
        return undefined;
      }
      throw e;
    }
  }

  /**
   * A search within `pit` (or, without one, on `index`). A point in time that is gone, or that answers without some
   * of its shards, is replaced by a new one and the search made again, so no page is read from part of the data.
   * Returns the answer and the point in time to page on with.
   */
  async search<T>(index: string, pit: string | undefined, body: object): Promise<{ answer: SearchAnswer<T>; pit?: string }> {
    for (let attempt = 0; ; attempt++) {
      if (pit === undefined) {
        const r = await this.conn.request<SearchAnswer<T>>('POST', `/${index}/_search`, body, {
          query: { ignore_unavailable: 'true', allow_no_indices: 'true' },
        });
        return { answer: r.body };
      }
      let r: { status: number; body: PitAnswer<T> } | undefined;
      try {
        r = await this.conn.request<PitAnswer<T>>('POST', '/_search', { ...body, pit: { id: pit, keep_alive: this.keepAlive } });
      } catch (e) {
        // 404: its search contexts are gone (expired, closed, the node restarted); 400: not an id OpenSearch knows.
        if (!(e instanceof OpenSearchRequestError && (e.status === 404 || e.status === 400))) throw e;
      }
      if (r && !(r.body._shards?.failed ?? 0)) {
        const next = r.body.pit_id ?? pit;
        this.used(pit, next);
        return { answer: r.body, pit: next };
      }
      this.open.delete(pit);
      if (r) this.close(pit);
      pit = attempt < 2 ? await this.create(index) : undefined;
    }
  }

  private used(was: string, now: string): void {
    this.open.delete(was);
    this.open.set(now, Date.now());
  }

  /** Closes a point in time (in the background: nothing waits for it, and a failure only leaves it to expire). */
  close(id: string): void {
    this.open.delete(id);
    void this.conn.request('DELETE', '/_search/point_in_time', { pit_id: [id] }, { ignore: [404] }).catch(() => undefined);
  }

  /** Closes every point in time this store opened (the store is closing). */
  async closeAll(): Promise<void> {
    const ids = [...this.open.keys()];
    this.open.clear();
    if (ids.length) await this.conn.request('DELETE', '/_search/point_in_time', { pit_id: ids }, { ignore: [404] }).catch(() => undefined);
  }
}
