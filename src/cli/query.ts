import { existsSync } from 'node:fs';
import { loadConfig, setStore } from '../config/config.js';
import { SEVERITIES, type Severity } from '../detect/alert.js';
import { parseTimeArg } from '../events/time.js';
import { once } from 'node:events';
import { VIOLATION_SIGNALS, type ViolationSignal } from '../store/admission-queries.js';
import { allPages, MAX_LIMIT, type Page, type PageOptions } from '../store/queries.js';
import type { RollupDim } from '../store/schema.js';
import { openStoreAt } from '../store/open.js';
import type { StoreReader } from '../store/store.js';
import { parse, table, UsageError } from './common.js';

export const QUERY_HELP = `Usage: kaudit query WHAT [--store PATH|URL] [filters] [--format table|json]

WHAT:
  events          audit events, newest first
  exec            who exec'd or attached into which pod (container, command, source IP, decision)
  secret-reads    who read or listed Secrets
  rbac-changes    who changed roles, cluster roles and bindings
  activity        everything --user did (between --since and --until)
  top DIM         busiest users | resources | verbs | namespaces | source-ips over a window
  alerts          alerts, newest first (--rule, --severity minimum, --cluster, --namespace)
  psa-violations  what enforcing Pod Security would break: per namespace, owning workload and check, the requests
                  that violated it, who made them, last seen (--namespace, --user, --level baseline: only what
                  breaks baseline too, --signal audit,denied,policy,exempt,error: default audit,denied)
  posture         per namespace, the workloads failing each CIS 5.x posture check (--namespace)
  dead-letters    records rejected as bad input, with the reason
  count [alerts]  how many events (every stage) or alert rows match the filters, without listing them

Filters: --user --verb --resource --subresource --namespace --name --code --source-ip --cluster --since --until
         --audit-id ID (events: every stage of one request; give --since/--until too on a large store, or it is
         a scan)
         --limit N (default 100, at most 10000 a page) --cursor C (from the previous page, printed on stderr)
         --all: every matching row, read a page at a time through the cursor (for exports; not with --limit)
Store: --store PATH|URL, a SQLite file (default: the config's) or an OpenSearch URL (the fleet store); --db is the same.
Times: RFC 3339, a date (2024-05-01), epoch seconds, or a duration ago (30m, 2h, 7d). User, namespace, name and
resource accept * wildcards. Output: a table on a terminal, else one JSON object a line (--format json to force).
`;

const EVENT_COLUMNS = ['time', 'user', 'verb', 'resource', 'subresource', 'namespace', 'name', 'code', 'sourceIP'];
const EXEC_COLUMNS = ['time', 'user', 'namespace', 'name', 'container', 'command', 'sourceIP', 'decision', 'code'];
const ALERT_COLUMNS = ['id', 'time', 'severity', 'rule', 'count', 'summary'];
const TOP_DIMS: Record<string, RollupDim> = {
  users: 'user',
  user: 'user',
  resources: 'resource',
  resource: 'resource',
  verbs: 'verb',
  verb: 'verb',
  namespaces: 'namespace',
  namespace: 'namespace',
  'source-ips': 'sourceIP',
  sourceips: 'sourceIP',
};

export async function runQuery(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    db: { type: 'string' },
    store: { type: 'string' },
    config: { type: 'string' },
    user: { type: 'string' },
    verb: { type: 'string' },
    resource: { type: 'string' },
    subresource: { type: 'string' },
    namespace: { type: 'string' },
    name: { type: 'string' },
    code: { type: 'string' },
    'source-ip': { type: 'string' },
    'audit-id': { type: 'string' },
    cluster: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    rule: { type: 'string' },
    severity: { type: 'string' },
    level: { type: 'string' },
    signal: { type: 'string' },
    format: { type: 'string' },
    'include-event': { type: 'boolean' },
    all: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(QUERY_HELP);
    return values.help ? 0 : 2;
  }
  const cfg = loadConfig(values.config);
  const target = values.store ?? values.db;
  if (target) setStore(cfg, target, values.store ? '--store' : '--db');
  if (!cfg.store.opensearch && !existsSync(cfg.store.path))
    throw new UsageError(`no store at ${cfg.store.path}: ingest something first (kaudit ingest --store ${cfg.store.path} FILE) or pass --store`);
  const store: StoreReader = await openStoreAt(cfg.store, { readonly: true });
  const time = (s: string | undefined) => {
    if (s === undefined) return undefined;
    try {
      return parseTimeArg(s);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError('--limit takes a positive whole number');
  const all = !!values.all;
  if (all && limit !== undefined) throw new UsageError('--all prints every matching row: leave out --limit (or use --limit without --all for one page)');
  // A page holds at most MAX_LIMIT rows: say so rather than print fewer rows than asked for without a word.
  if (limit !== undefined && limit > MAX_LIMIT)
    process.stderr.write(
      `kaudit query: --limit ${limit} is over the page cap of ${MAX_LIMIT}: printing at most ${MAX_LIMIT} rows; --all prints every matching row, or page on with --cursor\n`,
    );
  const format = values.format ?? (process.stdout.isTTY ? 'table' : 'json');
  if (format !== 'table' && format !== 'json') throw new UsageError('--format is table or json');
  const page = { limit, cursor: values.cursor, includeEvent: values['include-event'] };
  const analyst = { user: values.user, namespace: values.namespace, cluster: values.cluster, since: time(values.since), until: time(values.until) };
  const out = process.stdout;
  /** Writes, waiting while the reader is behind: an export of millions of rows holds one page, not all of them. */
  const write = async (text: string) => {
    if (!out.write(text)) await once(out, 'drain');
  };
  const rows = async (items: Record<string, unknown>[], columns: string[], header: boolean) => {
    if (format === 'json') {
      let text = '';
      for (const r of items) text += JSON.stringify(r) + '\n';
      await write(text);
    } else {
      const t = table(items, columns);
      await write(header ? t : t.slice(t.indexOf('\n') + 1));
    }
  };
  const print = async (p: Page<Record<string, unknown>>, columns: string[]) => {
    await rows(p.items, columns, true);
    if (p.next) process.stderr.write(`more: --cursor ${p.next}\n`);
  };
  /** One page, or with --all every page through the cursor. */
  const emit = async (q: (page: PageOptions) => Promise<Page<unknown>>, columns: string[]) => {
    if (!all) return print((await q(page)) as Page<Record<string, unknown>>, columns);
    let first = true;
    for await (const p of allPages(q, page)) {
      if (p.items.length > 0 || first) await rows(p.items as Record<string, unknown>[], columns, first);
      first = false;
    }
  };
  const eventFilter = {
    ...analyst,
    verb: values.verb,
    resource: values.resource,
    subresource: values.subresource,
    name: values.name,
    code: values.code === undefined ? undefined : Number(values.code),
    sourceIP: values['source-ip'],
    auditID: values['audit-id'],
  };
  const alertFilter = () => {
    if (values.severity && !SEVERITIES.includes(values.severity as Severity)) throw new UsageError(`--severity is one of ${SEVERITIES.join(', ')}`);
    return {
      rule: values.rule?.split(','),
      minSeverity: values.severity as Severity | undefined,
      cluster: values.cluster,
      namespace: values.namespace,
      user: values.user,
      since: analyst.since,
      until: analyst.until,
    };
  };
  try {
    const what = positionals[0]!;
    switch (what) {
      case 'events':
        await emit((pg) => store.queryEvents(eventFilter, pg), EVENT_COLUMNS);
        break;
      case 'exec':
        await emit((pg) => store.execSessions(analyst, pg), EXEC_COLUMNS);
        break;
      case 'secret-reads':
        await emit((pg) => store.secretReads(analyst, pg), EVENT_COLUMNS);
        break;
      case 'rbac-changes':
        await emit((pg) => store.rbacChanges(analyst, pg), EVENT_COLUMNS);
        break;
      case 'activity':
        if (!values.user) throw new UsageError('activity needs --user');
        await emit((pg) => store.userActivity({ ...analyst, user: values.user! }, pg), EVENT_COLUMNS);
        break;
      case 'count': {
        const of = positionals[1] ?? 'events';
        if (of !== 'events' && of !== 'alerts') throw new UsageError(`count takes events (the default) or alerts, not "${of}"`);
        if (all || values.cursor) throw new UsageError('count takes filters only (no --all, --cursor)');
        const n = of === 'alerts' ? await store.countAlerts(alertFilter()) : await store.countEvents(eventFilter);
        await write(format === 'json' ? JSON.stringify({ count: n }) + '\n' : `${n}\n`);
        break;
      }
      case 'top': {
        if (all) throw new UsageError('--all is for row listings; top takes --limit');
        const dim = TOP_DIMS[positionals[1] ?? ''];
        if (!dim) throw new UsageError(`top needs one of: users, resources, verbs, namespaces, source-ips`);
        await print(
          { items: (await store.top(dim, { since: analyst.since, until: analyst.until, limit: limit ?? 10 })) as unknown as Record<string, unknown>[] },
          ['value', 'count'],
        );
        break;
      }
      case 'alerts':
        await emit((pg) => store.queryAlerts(alertFilter(), pg), ALERT_COLUMNS);
        break;
      case 'psa-violations': {
        if (values.level !== undefined && values.level !== 'baseline' && values.level !== 'restricted')
          throw new UsageError('--level is baseline or restricted');
        const signals = values.signal?.split(',');
        const bad = signals?.filter((x) => !(VIOLATION_SIGNALS as readonly string[]).includes(x));
        if (bad?.length) throw new UsageError(`--signal takes ${VIOLATION_SIGNALS.join(', ')}, not ${bad.join(', ')}`);
        const f = { ...analyst, level: values.level as 'baseline' | undefined, signals: signals as ViolationSignal[] | undefined };
        // The table shows one line a workload and check; JSON keeps every field (users, objects, detail).
        const flat = async (pg: PageOptions) => {
          const p = await store.psaViolations(f, pg);
          if (format === 'json') return p;
          const items = p.items.map((r) => ({
            ...r,
            owner: `${r.ownerKind}/${r.ownerName}`,
            users: r.users.slice(0, 3).join(',') + (r.userCount > 3 ? ',...' : ''),
          }));
          return { ...p, items };
        };
        await emit(flat, ['namespace', 'owner', 'check', 'violationLevel', 'policy', 'requests', 'denied', 'users', 'lastSeen']);
        break;
      }
      case 'posture':
        await emit(
          async (pg) => {
            const p = await store.posture(analyst, pg);
            return format === 'json' ? p : { ...p, items: p.items.map((r) => ({ ...r, examples: r.examples.slice(0, 3).join(',') })) };
          },
          ['namespace', 'check', 'cis', 'workloads', 'findings', 'examples', 'lastSeen'],
        );
        break;
      case 'dead-letters':
        if (all) throw new UsageError('--all is for events, the analyst questions and alerts; dead-letters takes --limit');
        await print({ items: (await store.deadLetters(limit ?? 100)) as unknown as Record<string, unknown>[] }, [
          'id',
          'received',
          'source',
          'position',
          'reason',
        ]);
        break;
      default:
        throw new UsageError(`unknown query "${what}"; see kaudit query --help`);
    }
  } finally {
    await store.close();
  }
  return 0;
}
