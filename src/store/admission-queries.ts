/**
 * The migration questions, answered from the admission table (admission-rows.ts) and the posture rules' alerts:
 * which workloads in a namespace would Pod Security refuse if it enforced, who deploys them, how often and when last;
 * and each namespace's posture against the CIS 5.x checks kaudit evaluates on the pod specs it sees.
 */
import { formatMicros } from '../events/time.js';
import { ADMISSION_SIGNALS } from './admission-rows.js';
import { MAX_LIMIT, QueryError, type Page, type PageOptions } from './queries.js';
import type { SqliteContext } from './sqlite-context.js';

export const VIOLATION_SIGNALS = ['audit', 'denied', 'policy', 'exempt', 'error'] as const;
export type ViolationSignal = (typeof VIOLATION_SIGNALS)[number];

export const SIGNAL_CODES: Record<ViolationSignal, number> = {
  audit: ADMISSION_SIGNALS.psaAudit,
  denied: ADMISSION_SIGNALS.psaDenied,
  policy: ADMISSION_SIGNALS.policyAudit,
  exempt: ADMISSION_SIGNALS.psaExempt,
  error: ADMISSION_SIGNALS.psaError,
};
export const SIGNAL_NAMES = Object.fromEntries(Object.entries(SIGNAL_CODES).map(([k, v]) => [v, k])) as Record<number, ViolationSignal>;

export interface ViolationFilter {
  /** A namespace, `*` wildcards allowed. */
  namespace?: string;
  cluster?: string;
  user?: string;
  /** Only violations that break this level: `baseline` leaves out what only restricted forbids. */
  level?: 'baseline' | 'restricted';
  /** Which signals (default: Pod Security's audit violations and enforce denials). */
  signals?: ViolationSignal[];
  since?: number;
  until?: number;
}

/** One workload's violations of one check over the window. */
export interface ViolationRow {
  cluster: string;
  namespace: string;
  /** The workload a person wrote (Deployment, DaemonSet, CronJob ...), or the object itself when it has no owner. */
  ownerKind: string;
  ownerName: string;
  /** Pod Security's check id; an admission policy's `<policy>#<expressionIndex>`; an exemption's kind. */
  check: string;
  signals: ViolationSignal[];
  /** The lowest level the check's violation breaks (Pod Security). */
  violationLevel: string;
  /** The policy the last one was judged against (`restricted:latest`; a ValidatingAdmissionPolicy binding's policy). */
  policy: string;
  binding?: string;
  reason: string;
  /** The last one's detail: the containers, volumes or ports named; a policy's message. */
  detail: string;
  /** Requests (one per audit ID) and how many were refused. */
  requests: number;
  denied: number;
  /** Who made them (at most 10, most recent first) and how many there were. */
  users: string[];
  userCount: number;
  /** Objects written (pods, the workload itself), at most 10. */
  objects: string[];
  firstSeen: string;
  lastSeen: string;
  lastAuditID: string;
}

/** The page asked for: these reports page by offset into their ordered rows (the cursor is `o:<offset>`). */
export function pageOf(page: PageOptions): { limit: number; offset: number } {
  const limit = page.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1) throw new QueryError('limit must be a positive integer');
  let offset = 0;
  if (page.cursor) {
    const m = /^o:(\d+)$/.exec(Buffer.from(page.cursor, 'base64url').toString());
    if (!m) throw new QueryError('bad cursor: pass back the `next` value of the previous page unchanged');
    offset = Number(m[1]);
  }
  return { limit: Math.min(limit, MAX_LIMIT), offset };
}

/** The cursor of the page after the one at `offset`. */
export function nextPage(offset: number, limit: number): string {
  return Buffer.from(`o:${offset + limit}`).toString('base64url');
}

/** The signals a violation filter selects (checked), and its level (checked). */
export function violationSignals(f: ViolationFilter): ViolationSignal[] {
  const signals = f.signals?.length ? f.signals : (['audit', 'denied'] as ViolationSignal[]);
  for (const s of signals) if (!(s in SIGNAL_CODES)) throw new QueryError(`bad signal "${s}": one of ${VIOLATION_SIGNALS.join(', ')}`);
  if (f.level !== undefined && f.level !== 'baseline' && f.level !== 'restricted') throw new QueryError('level must be baseline or restricted');
  return signals;
}

function hasTable(store: SqliteContext, name: string): boolean {
  return store.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

function split(list: string | null, max: number): string[] {
  return list ? list.split('\u0001').slice(0, max) : [];
}

export function psaViolations(store: SqliteContext, f: ViolationFilter, page: PageOptions = {}): Page<ViolationRow> {
  const { limit, offset } = pageOf(page);
  // A store no writer has migrated yet (read-only) has no admission table: nothing was recorded.
  if (!hasTable(store, 'admission')) return { items: [] };
  const signals = violationSignals(f);
  const where = [`signal IN (${signals.map((s) => SIGNAL_CODES[s]).join(',')})`];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    where.push(sql);
    params.push(v);
  };
  if (f.namespace) add(f.namespace.includes('*') ? 'namespace GLOB ?' : 'namespace = ?', f.namespace);
  if (f.cluster) add('cluster = ?', f.cluster);
  if (f.user) add(f.user.includes('*') ? 'user GLOB ?' : 'user = ?', f.user);
  if (f.level === 'baseline') add('violation_level = ?', 'baseline');
  if (f.since !== undefined) add('time >= ?', f.since);
  if (f.until !== undefined) add('time < ?', f.until);
  const w = where.join(' AND ');
  const groups = store.db
    .prepare(
      `SELECT cluster, namespace, owner_kind, owner_name, check_id, min(violation_level) AS vl, count(DISTINCT audit_id) AS requests,
        count(DISTINCT CASE WHEN signal = ${ADMISSION_SIGNALS.psaDenied} THEN audit_id END) AS denied, min(time) AS first, max(time) AS last,
        count(DISTINCT user) AS users, group_concat(DISTINCT signal) AS signals
      FROM admission WHERE ${w}
      GROUP BY cluster, namespace, owner_kind, owner_name, check_id
      ORDER BY namespace, vl, requests DESC, owner_kind, owner_name, check_id, cluster LIMIT ? OFFSET ?`,
    )
    .all(...params, limit + 1, offset) as {
    cluster: string;
    namespace: string;
    owner_kind: string;
    owner_name: string;
    check_id: string;
    vl: string;
    requests: number;
    denied: number;
    first: number;
    last: number;
    users: number;
    signals: string;
  }[];
  const more = groups.length > limit;
  const key = `${w} AND cluster = ? AND namespace = ? AND owner_kind = ? AND owner_name = ? AND check_id = ?`;
  const last = store.db.prepare(
    `SELECT audit_id, level, version, reason, detail, policy, binding FROM admission WHERE ${key} ORDER BY time DESC, audit_id DESC, id DESC LIMIT 1`,
  );
  const users = store.db.prepare(
    `SELECT group_concat(user, char(1)) FROM (SELECT user, max(time) AS t FROM admission WHERE ${key} GROUP BY user ORDER BY t DESC, user LIMIT 10)`,
  );
  const objects = store.db.prepare(
    `SELECT group_concat(o, char(1)) FROM (SELECT object_kind || '/' || object_name AS o, max(time) AS t FROM admission WHERE ${key} GROUP BY o ORDER BY t DESC, o LIMIT 10)`,
  );
  const items = groups.slice(0, limit).map((g): ViolationRow => {
    const k = [...params, g.cluster, g.namespace, g.owner_kind, g.owner_name, g.check_id];
    const l = last.get(...k) as { audit_id: string; level: string; version: string; reason: string; detail: string; policy: string; binding: string };
    const isPolicy = l.policy !== '';
    return {
      cluster: g.cluster,
      namespace: g.namespace,
      ownerKind: g.owner_kind,
      ownerName: g.owner_name,
      check: g.check_id,
      signals: g.signals
        .split(',')
        .map((s) => SIGNAL_NAMES[Number(s)]!)
        .sort(),
      violationLevel: g.vl,
      policy: isPolicy ? l.policy : l.level ? `${l.level}:${l.version}` : '',
      ...(isPolicy ? { binding: l.binding } : {}),
      reason: l.reason,
      detail: l.detail,
      requests: g.requests,
      denied: g.denied,
      users: split(users.pluck().get(...k) as string | null, 10),
      userCount: g.users,
      objects: split(objects.pluck().get(...k) as string | null, 10),
      firstSeen: formatMicros(g.first),
      lastSeen: formatMicros(g.last),
      lastAuditID: l.audit_id,
    };
  });
  return more ? { items, next: nextPage(offset, limit) } : { items };
}

export interface PostureFilter {
  namespace?: string;
  cluster?: string;
  since?: number;
  until?: number;
}

/** One namespace's standing on one posture check: how many workloads failed it over the window. */
export interface PostureRow {
  cluster: string;
  namespace: string;
  /** The posture rule (`posture-secret-env` ...). */
  check: string;
  /** Its CIS Kubernetes Benchmark recommendation (`5.4.1`). */
  cis: string;
  workloads: number;
  /** Writes that failed it (repeats counted). */
  findings: number;
  /** Workloads that failed it, at most 10 (`Deployment/web`). */
  examples: string[];
  lastSeen: string;
  /** The alert of the last finding: its request and who made it are there. */
  lastAlertID: number;
}

/** Rules whose alerts make up the posture table: their ids start so, and their details name `workload` and `cis`. */
export const POSTURE_RULE_PREFIX = 'posture-';

export function posture(store: SqliteContext, f: PostureFilter, page: PageOptions = {}): Page<PostureRow> {
  const { limit, offset } = pageOf(page);
  const where = ['rule GLOB ?'];
  const params: unknown[] = [`${POSTURE_RULE_PREFIX}*`];
  const add = (sql: string, v: unknown) => {
    where.push(sql);
    params.push(v);
  };
  if (f.namespace) add(f.namespace.includes('*') ? 'namespace GLOB ?' : 'namespace = ?', f.namespace);
  if (f.cluster) add('cluster = ?', f.cluster);
  if (f.since !== undefined) add('last_time >= ?', f.since);
  if (f.until !== undefined) add('first_time < ?', f.until);
  const rows = store.db
    .prepare(
      `SELECT cluster, namespace, rule, max(json_extract(body, '$.details.cis')) AS cis, count(DISTINCT json_extract(body, '$.details.workload')) AS workloads,
        sum(count) AS findings, max(last_time) AS last, max(id) AS alert
      FROM alerts WHERE ${where.join(' AND ')}
      GROUP BY cluster, namespace, rule ORDER BY namespace, rule, cluster LIMIT ? OFFSET ?`,
    )
    .all(...params, limit + 1, offset) as {
    cluster: string;
    namespace: string;
    rule: string;
    cis: string | null;
    workloads: number;
    findings: number;
    last: number;
    alert: number;
  }[];
  // The workloads most recently found first (ties by name), as the Pod Security report lists users.
  const examples = store.db
    .prepare(
      `SELECT group_concat(w, char(1)) FROM (SELECT json_extract(body, '$.details.workload') AS w, max(last_time) AS t FROM alerts
        WHERE ${where.join(' AND ')} AND cluster = ? AND namespace = ? AND rule = ? AND json_extract(body, '$.details.workload') IS NOT NULL
        GROUP BY w ORDER BY t DESC, w LIMIT 10)`,
    )
    .pluck();
  const items = rows.slice(0, limit).map((r): PostureRow => ({
    cluster: r.cluster,
    namespace: r.namespace,
    check: r.rule,
    cis: r.cis ?? '',
    workloads: r.workloads,
    findings: r.findings,
    examples: split(examples.get(...params, r.cluster, r.namespace, r.rule) as string | null, 10),
    lastSeen: formatMicros(r.last),
    lastAlertID: r.alert,
  }));
  return rows.length > limit ? { items, next: nextPage(offset, limit) } : { items };
}
