/**
 * The fleet store's small indices: source positions, dead letters, saved detection state, and the writers' leases
 * and pending-detection marks (see BatchWriter: a batch's events are stored before its detection finishes; a mark
 * says which, so that a batch whose writer stopped in between is detected by another writer, exactly once).
 */
import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { DeadLetter } from '../batch.js';
import { clampLimit, type DeadLetterRow } from '../queries.js';
import { bulk, type BulkOp } from './bulk.js';
import { count, getDoc, search, type SearchContext } from './search.js';
import type { Sequence } from './sequence.js';

const idOf = (s: string) => createHash('sha256').update(s).digest().subarray(0, 16).toString('base64url');

interface PositionDoc {
  source: string;
  position: string;
  updated: number;
}

export function positionOp(ctx: SearchContext, source: string, position: string, now: number): BulkOp {
  return { action: 'index', index: ctx.names.positions, id: idOf(source), doc: { source, position, updated: now } satisfies PositionDoc };
}

export async function position(ctx: SearchContext, source: string): Promise<PositionDoc | undefined> {
  return (await getDoc<PositionDoc>(ctx, ctx.names.positions, idOf(source)))?._source;
}

export async function positions(ctx: SearchContext): Promise<{ source: string; updated: number }[]> {
  const r = await search<PositionDoc>(ctx, ctx.names.positions, { sort: [{ source: 'asc' }], size: 1000, _source: ['source', 'updated'] });
  return r.hits.hits.map((h) => ({ source: h._source.source, updated: h._source.updated }));
}

interface DeadLetterDoc {
  seq: number;
  received: number;
  source: string;
  position: string;
  reason: string;
  size: number;
  data?: string;
}

export function deadLetterOp(ctx: SearchContext, seq: Sequence, d: DeadLetter, now: number, maxBytes: number): BulkOp {
  const buf = d.data === undefined ? undefined : typeof d.data === 'string' ? Buffer.from(d.data, 'utf8') : d.data;
  const doc: DeadLetterDoc = { seq: seq.next(now), received: now, source: d.source, position: d.where, reason: d.reason, size: buf ? buf.length : 0 };
  // The record's bytes, cut as SQLite cuts them, kept as base64 (a record need not be valid UTF-8).
  if (buf) doc.data = buf.subarray(0, maxBytes).toString('base64');
  return { action: 'index', index: ctx.names.deadLetters, id: String(doc.seq), doc };
}

export async function deadLetters(ctx: SearchContext, limit = 100): Promise<DeadLetterRow[]> {
  const r = await search<DeadLetterDoc>(ctx, ctx.names.deadLetters, {
    sort: [{ seq: 'desc' }],
    size: clampLimit(limit),
    _source: { excludes: ['data'] },
  });
  return r.hits.hits.map(({ _source: d }) => ({
    id: d.seq,
    received: new Date(d.received).toISOString(),
    source: d.source,
    position: d.position,
    reason: d.reason,
    size: d.size,
  }));
}

export function countDeadLetters(ctx: SearchContext): Promise<number> {
  return count(ctx, ctx.names.deadLetters);
}

interface StateDoc {
  kind: 'state' | 'lease' | 'mark' | 'slots' | 'role';
  owner?: string;
  seen?: number;
  value?: string;
  /** A mark's events: [index, document id] pairs. */
  docs?: string;
  slot?: number;
}

export async function saveState(ctx: SearchContext, name: string, json: string): Promise<void> {
  const value = gzipSync(Buffer.from(json, 'utf8')).toString('base64');
  await ctx.conn.request('PUT', `/${ctx.names.state}/_doc/${encodeURIComponent(`state:${name}`)}`, { kind: 'state', value } satisfies StateDoc, {
    query: { refresh: 'true' },
  });
}

/** The named state, removed as it is read (see BatchWriter.takeState): a delete that only one reader wins. */
export async function takeState(ctx: SearchContext, name: string): Promise<string | undefined> {
  const id = `state:${name}`;
  const doc = await getDoc<StateDoc>(ctx, ctx.names.state, id);
  if (!doc?._source.value) return undefined;
  const r = await ctx.conn.request('DELETE', `/${ctx.names.state}/_doc/${encodeURIComponent(id)}`, undefined, {
    query: { if_seq_no: doc._seq_no, if_primary_term: doc._primary_term, refresh: 'true' },
    ignore: [404, 409],
  });
  if (r.status !== 200) return undefined; // another process took it first
  return gunzipSync(Buffer.from(doc._source.value, 'base64')).toString('utf8');
}

/** A writer's slot for its ids (sequence.ts): a counter every writer takes the next value of, at open. */
export async function takeSlot(ctx: SearchContext, slots: number): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const cur = await getDoc<StateDoc>(ctx, ctx.names.state, 'slots');
    const next = (cur?._source.slot ?? -1) + 1;
    const [item] = await bulk(ctx.conn, [
      cur
        ? { action: 'index', index: ctx.names.state, id: 'slots', doc: { kind: 'slots', slot: next }, ifSeqNo: cur._seq_no, ifPrimaryTerm: cur._primary_term }
        : { action: 'create', index: ctx.names.state, id: 'slots', doc: { kind: 'slots', slot: next } },
    ]);
    if (item!.status !== 409) {
      if (item!.error) throw new Error(`taking a writer slot: ${item!.error}`);
      return next % slots;
    }
  }
  throw new Error('taking a writer slot: too many writers starting at once');
}

/** A writer's lease: renewed while it runs; a writer whose lease is older than LEASE_MS has stopped. */
export const LEASE_MS = 60_000;

export async function renewLease(ctx: SearchContext, owner: string, now = Date.now()): Promise<void> {
  await ctx.conn.request('PUT', `/${ctx.names.state}/_doc/${encodeURIComponent(`lease:${owner}`)}`, { kind: 'lease', owner, seen: now } satisfies StateDoc);
}

export async function dropLease(ctx: SearchContext, owner: string): Promise<void> {
  await ctx.conn.request('DELETE', `/${ctx.names.state}/_doc/${encodeURIComponent(`lease:${owner}`)}`, undefined, { ignore: [404] });
}

export async function ownerAlive(ctx: SearchContext, owner: string, now = Date.now()): Promise<boolean> {
  const lease = await getDoc<StateDoc>(ctx, ctx.names.state, `lease:${owner}`);
  return !!lease && (lease._source.seen ?? 0) >= now - LEASE_MS;
}

/**
 * A role one process of the fleet holds at a time (the Kafka alerts outbox): taken when free or expired, renewed by
 * its holder, all with optimistic concurrency so two takers cannot both win. `ttlMs` 0 lets it go.
 */
export async function holdRole(ctx: SearchContext, role: string, holder: string, ttlMs: number, now = Date.now()): Promise<boolean> {
  const id = `role:${role}`;
  const cur = await getDoc<StateDoc>(ctx, ctx.names.state, id);
  const mine = cur?._source.owner === holder;
  if (cur && !mine && (cur._source.seen ?? 0) > now) return false;
  if (!cur && ttlMs === 0) return false;
  const doc: StateDoc = { kind: 'role', owner: holder, seen: now + ttlMs };
  const [item] = await bulk(ctx.conn, [
    cur
      ? { action: 'index', index: ctx.names.state, id, doc, ifSeqNo: cur._seq_no, ifPrimaryTerm: cur._primary_term }
      : { action: 'create', index: ctx.names.state, id, doc },
  ]);
  if (item!.status === 409) return false; // another process took or renewed it meanwhile
  if (item!.error) throw new Error(`role ${role}: ${item!.error}`);
  return ttlMs > 0;
}

export interface Mark {
  id: string;
  owner: string;
  docs: [index: string, id: string][];
  seqNo?: number;
  primaryTerm?: number;
}

export function markOp(ctx: SearchContext, m: Mark): BulkOp {
  return { action: 'index', index: ctx.names.state, id: m.id, doc: { kind: 'mark', owner: m.owner, docs: JSON.stringify(m.docs) } satisfies StateDoc };
}

export function unmarkOp(ctx: SearchContext, markId: string): BulkOp {
  return { action: 'delete', index: ctx.names.state, id: markId };
}

/** Marks of other writers (up to 100 at a time). */
export async function foreignMarks(ctx: SearchContext, owner: string): Promise<Mark[]> {
  await ctx.conn.request('POST', `/${ctx.names.state}/_refresh`);
  const r = await search<StateDoc>(ctx, ctx.names.state, {
    query: { bool: { filter: [{ term: { kind: 'mark' } }], must_not: [{ term: { owner } }] } },
    size: 100,
    seq_no_primary_term: true,
  });
  return r.hits.hits.map((h) => ({
    id: h._id,
    owner: h._source.owner ?? '',
    docs: JSON.parse(h._source.docs ?? '[]') as Mark['docs'],
    seqNo: h._seq_no,
    primaryTerm: h._primary_term,
  }));
}

/** Takes a stopped writer's mark over; false when another writer took it first. */
export async function claimMark(ctx: SearchContext, m: Mark, owner: string): Promise<boolean> {
  const [item] = await bulk(ctx.conn, [{ ...markOp(ctx, { ...m, owner }), ifSeqNo: m.seqNo, ifPrimaryTerm: m.primaryTerm }], { refresh: true });
  return item!.status >= 200 && item!.status < 300;
}
