/**
 * The Pod Security report and the posture table on the fleet store, with SQLite's rows, order and paging
 * (store/admission-queries.ts): one composite aggregation per (cluster, namespace, owner, check) over the admission
 * documents (admission-docs.ts), or per (cluster, namespace, rule) over the `posture-*` alerts, all of its buckets
 * read, ordered as SQLite orders its groups, and paged by offset with SQLite's cursor.
 *
 * Counts are exact: requests and refusals count the first row of each request that the filter matches (see `before`
 * in admission-docs.ts), and users, objects and workloads are terms buckets, counted while there are no more than
 * TERMS of them in a row (past that, OpenSearch's cardinality estimate, which is exact below its precision threshold
 * but for a hash collision). Rows in the same microsecond are told apart by auditID in both kinds.
 */
import { formatMicros } from '../../events/time.js';
import { ADMISSION_SIGNALS } from '../admission-rows.js';
import {
  nextPage,
  pageOf,
  POSTURE_RULE_PREFIX,
  SIGNAL_CODES,
  SIGNAL_NAMES,
  violationSignals,
  type PostureFilter,
  type PostureRow,
  type ViolationFilter,
  type ViolationRow,
} from '../admission-queries.js';
import type { Page, PageOptions } from '../queries.js';
import type { AdmissionDoc } from './admission-docs.js';
import { search, type SearchContext } from './search.js';

/** Users, objects and workloads read per row: the list shows 10, the count is exact up to this many. */
const TERMS = 100;
/** Groups per composite page: with TERMS users each, well under the node's bucket limit (search.max_buckets). */
const GROUPS_PER_PAGE = 200;

const match = (field: string, value: string) => (value.includes('*') ? { wildcard: { [field]: { value } } } : { term: { [field]: value } });

interface Terms {
  buckets: { key: string | number; doc_count: number; t?: { value: number } }[];
  sum_other_doc_count: number;
}
type Bucket = { key: Record<string, string>; doc_count: number } & Record<string, unknown>;

/** Every bucket of a composite aggregation over `sources`, with `aggs` in each, page by page. */
async function groups(ctx: SearchContext, index: string, query: object, sources: string[], aggs: object): Promise<Bucket[]> {
  const out: Bucket[] = [];
  let after: Record<string, unknown> | undefined;
  for (;;) {
    const r = await search(ctx, index, {
      size: 0,
      query,
      aggs: {
        g: {
          composite: { size: GROUPS_PER_PAGE, sources: sources.map((f) => ({ [f]: { terms: { field: f } } })), ...(after ? { after } : {}) },
          aggs,
        },
      },
    });
    const c = r.aggregations?.g as { after_key?: Record<string, unknown>; buckets: Bucket[] } | undefined;
    if (!c || c.buckets.length === 0) return out;
    out.push(...c.buckets);
    if (!c.after_key || c.buckets.length < GROUPS_PER_PAGE) return out;
    after = c.after_key;
  }
}

/** A keyword's values in a row, most recent first (ties by value): the first `max`, and how many there are. */
function recent(field: string, timeField: string): object {
  return { terms: { field, size: TERMS, order: [{ t: 'desc' }, { _key: 'asc' }] }, aggs: { t: { max: { field: timeField } } } };
}

function listed(b: Bucket, name: string, max: number): { values: string[]; count: number } {
  const t = b[name] as Terms;
  const estimate = b[`${name}Count`] as { value: number } | undefined;
  const count = t.sum_other_doc_count > 0 && estimate ? Math.max(estimate.value, t.buckets.length + 1) : t.buckets.length;
  return { values: t.buckets.slice(0, max).map((x) => String(x.key)), count };
}

const value = (b: Bucket, name: string) => (b[name] as { value: number }).value;
const docCount = (b: Bucket, name: string) => (b[name] as { doc_count: number }).doc_count;

/** Ascending by each key in turn (strings by code unit, as SQLite's BINARY collation for the names kaudit sees). */
function byKeys<T>(keys: ((x: T) => string | number)[]): (a: T, b: T) => number {
  return (a, b) => {
    for (const k of keys) {
      const x = k(a);
      const y = k(b);
      if (x !== y) return x < y ? -1 : 1;
    }
    return 0;
  };
}

export async function psaViolations(ctx: SearchContext, f: ViolationFilter, page: PageOptions = {}): Promise<Page<ViolationRow>> {
  const { limit, offset } = pageOf(page);
  const signals = violationSignals(f).map((s) => SIGNAL_CODES[s]);
  const filter: object[] = [{ terms: { signal: signals } }];
  if (f.namespace) filter.push(match('namespace', f.namespace));
  if (f.cluster) filter.push({ term: { cluster: f.cluster } });
  if (f.user) filter.push(match('user', f.user));
  if (f.level === 'baseline') filter.push({ term: { violationLevel: 'baseline' } });
  const range: Record<string, number> = {};
  if (f.since !== undefined) range.gte = f.since;
  if (f.until !== undefined) range.lt = f.until;
  if (Object.keys(range).length) filter.push({ range: { ts: range } });
  // A row opens its request's count when no row before it in the same event and check is matched by the filter.
  const before = f.level === 'baseline' ? 'beforeBaseline' : 'before';
  const denied = ADMISSION_SIGNALS.psaDenied;
  const aggs = {
    requests: { filter: { bool: { must_not: [{ terms: { [before]: signals } }] } } },
    denied: signals.includes(denied)
      ? { filter: { bool: { filter: [{ term: { signal: denied } }], must_not: [{ term: { [before]: denied } }] } } }
      : { filter: { match_none: {} } },
    vl: { terms: { field: 'violationLevel', size: 1, order: { _key: 'asc' } } },
    signals: { terms: { field: 'signal', size: 10 } },
    first: { min: { field: 'ts' } },
    last: { max: { field: 'ts' } },
    users: recent('user', 'ts'),
    usersCount: { cardinality: { field: 'user', precision_threshold: 10_000 } },
    objects: recent('object', 'ts'),
    top: {
      top_hits: {
        size: 1,
        sort: [{ ts: 'desc' }, { auditID: 'desc' }, { ordinal: 'desc' }],
        _source: ['auditID', 'level', 'version', 'reason', 'detail', 'policy', 'binding'],
      },
    },
  };
  const rows = (await groups(ctx, ctx.names.admission, { bool: { filter } }, ['cluster', 'namespace', 'ownerKind', 'ownerName', 'check'], aggs)).map((b) => ({
    b,
    vl: String((b.vl as Terms).buckets[0]?.key ?? ''),
    requests: docCount(b, 'requests'),
  }));
  rows.sort(
    byKeys<(typeof rows)[number]>([
      (r) => r.b.key.namespace!,
      (r) => r.vl,
      (r) => -r.requests,
      (r) => r.b.key.ownerKind!,
      (r) => r.b.key.ownerName!,
      (r) => r.b.key.check!,
      (r) => r.b.key.cluster!,
    ]),
  );
  const items = rows.slice(offset, offset + limit).map(({ b, vl, requests }): ViolationRow => {
    const l = (b.top as { hits: { hits: { _source: AdmissionDoc }[] } }).hits.hits[0]!._source;
    const isPolicy = l.policy !== '';
    const users = listed(b, 'users', 10);
    return {
      cluster: b.key.cluster!,
      namespace: b.key.namespace!,
      ownerKind: b.key.ownerKind!,
      ownerName: b.key.ownerName!,
      check: b.key.check!,
      signals: (b.signals as Terms).buckets.map((s) => SIGNAL_NAMES[Number(s.key)]!).sort(),
      violationLevel: vl,
      policy: isPolicy ? l.policy : l.level ? `${l.level}:${l.version}` : '',
      ...(isPolicy ? { binding: l.binding } : {}),
      reason: l.reason,
      detail: l.detail,
      requests,
      denied: docCount(b, 'denied'),
      users: users.values,
      userCount: users.count,
      objects: listed(b, 'objects', 10).values,
      firstSeen: formatMicros(value(b, 'first')),
      lastSeen: formatMicros(value(b, 'last')),
      lastAuditID: l.auditID,
    };
  });
  return rows.length > offset + limit ? { items, next: nextPage(offset, limit) } : { items };
}

export async function posture(ctx: SearchContext, f: PostureFilter, page: PageOptions = {}): Promise<Page<PostureRow>> {
  const { limit, offset } = pageOf(page);
  // Committed alerts only (a row of a batch still being written has no id yet, as in alerts.ts).
  const filter: object[] = [{ exists: { field: 'seq' } }, { prefix: { rule: POSTURE_RULE_PREFIX } }];
  if (f.namespace) filter.push(match('namespace', f.namespace));
  if (f.cluster) filter.push({ term: { cluster: f.cluster } });
  if (f.since !== undefined) filter.push({ range: { lastTime: { gte: f.since } } });
  if (f.until !== undefined) filter.push({ range: { firstTime: { lt: f.until } } });
  const aggs = {
    cis: { terms: { field: 'cis', size: 1, order: { _key: 'desc' } } },
    findings: { sum: { field: 'count' } },
    last: { max: { field: 'lastTime' } },
    alert: { max: { field: 'seq' } },
    workloads: recent('workload', 'lastTime'),
    workloadsCount: { cardinality: { field: 'workload', precision_threshold: 10_000 } },
  };
  const rows = await groups(ctx, ctx.names.alerts, { bool: { filter } }, ['cluster', 'namespace', 'rule'], aggs);
  rows.sort(byKeys<Bucket>([(b) => b.key.namespace!, (b) => b.key.rule!, (b) => b.key.cluster!]));
  const items = rows.slice(offset, offset + limit).map((b): PostureRow => {
    const w = listed(b, 'workloads', 10);
    return {
      cluster: b.key.cluster!,
      namespace: b.key.namespace!,
      check: b.key.rule!,
      cis: String((b.cis as Terms).buckets[0]?.key ?? ''),
      workloads: w.count,
      findings: value(b, 'findings'),
      examples: w.values,
      lastSeen: formatMicros(value(b, 'last')),
      lastAlertID: value(b, 'alert'),
    };
  });
  return rows.length > offset + limit ? { items, next: nextPage(offset, limit) } : { items };
}
