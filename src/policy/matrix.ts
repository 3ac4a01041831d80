/** `kaudit policy matrix`: the level each kind of request gets, as a table a person can read. */
import {
  CATALOG,
  GENERIC_IDENTITIES,
  RESOURCE_VERBS,
  SYSTEM_IDENTITIES,
  groupResourceLabel,
  nonResourceRequest,
  resourceRequest,
  verbNamesObject,
  type ProbeIdentity,
} from './catalog.js';
import { evaluatePolicy } from './evaluate.js';
import { isLogged } from './probe.js';
import type { AuditDecision, Policy, RequestUser } from './types.js';

const SHORT: Record<string, string> = { None: '-', Metadata: 'Meta', Request: 'Req', RequestResponse: 'ReqResp' };

export interface MatrixRow {
  resource: string;
  cells: Record<string, { level: string; rule: number | null; omitStages: string[] }>;
}

export interface Matrix {
  identity: string;
  namespace: string;
  verbs: string[];
  rows: MatrixRow[];
  nonResource: { path: string; level: string; rule: number | null }[];
  /** Requests where a key identity gets a different level than `identity`. */
  differences: { who: string; request: string; level: string; rule: number | null; baseline: string }[];
}

const KEY_PATHS = ['/healthz', '/livez', '/readyz', '/version', '/metrics', '/openapi/v2', '/api', '/apis', '/logs/'];

function cell(d: AuditDecision, logged: boolean): { level: string; rule: number | null; omitStages: string[] } {
  return { level: logged ? d.level : 'None', rule: d.rule, omitStages: [...d.omitStages].sort() };
}

export function buildMatrix(policy: Policy, o: { user?: RequestUser | null; namespace?: string; keyIdentities?: ProbeIdentity[] } = {}): Matrix {
  const user = o.user === undefined ? GENERIC_IDENTITIES[0]!.user : o.user;
  const namespace = o.namespace ?? 'default';
  const verbs = [...RESOURCE_VERBS];
  const rows: MatrixRow[] = [];
  const differences: Matrix['differences'] = [];
  const keys = o.keyIdentities ?? [...GENERIC_IDENTITIES.slice(1), ...SYSTEM_IDENTITIES];
  const seen = new Set<string>();
  for (const c of CATALOG) {
    for (const sub of ['', ...(c.subresources ?? [])]) {
      const label = groupResourceLabel(c.group, c.resource, sub);
      const row: MatrixRow = { resource: label, cells: {} };
      const subVerbs = sub === '' ? (c.verbs ?? verbs) : ['get', 'create', 'update', 'patch', 'delete'];
      for (const verb of subVerbs) {
        const mk = (u: RequestUser | null) =>
          resourceRequest({
            user: u,
            verb,
            group: c.group,
            resource: c.resource,
            subresource: sub,
            namespace: c.namespaced ? namespace : '',
            name: verbNamesObject(verb, sub) ? 'example' : '',
          });
        const a = mk(user);
        const d = evaluatePolicy(policy, a);
        const base = cell(d, isLogged(d, a));
        row.cells[verb] = base;
        for (const k of keys) {
          const ka = mk(k.user);
          const kd = evaluatePolicy(policy, ka);
          const kc = cell(kd, isLogged(kd, ka));
          const key = `${k.label}|${label}|${kc.level}`;
          if (kc.level !== base.level && !seen.has(key)) {
            seen.add(key);
            differences.push({ who: k.label, request: `${verb} ${label}`, level: kc.level, rule: kc.rule, baseline: base.level });
          }
        }
      }
      rows.push(row);
    }
  }
  const nonResource = KEY_PATHS.map((path) => {
    const a = nonResourceRequest(user, 'get', path);
    const d = evaluatePolicy(policy, a);
    return { path, level: isLogged(d, a) ? d.level : 'None', rule: d.rule };
  });
  return { identity: user === null ? '(unauthenticated)' : user.name, namespace, verbs, rows, nonResource, differences };
}

export function formatMatrix(m: Matrix): string {
  const out: string[] = [];
  out.push(`Level per request for ${m.identity} (namespaced resources in ${m.namespace}); - = not logged, [n] = deciding rule`);
  out.push('');
  const colW = 14;
  const first = Math.max(...m.rows.map((r) => r.resource.length), 10) + 2;
  out.push(
    'resource'.padEnd(first) +
      m.verbs
        .map((v) => v.padEnd(colW))
        .join('')
        .trimEnd(),
  );
  for (const r of m.rows) {
    const cells = m.verbs.map((v) => {
      const c = r.cells[v];
      if (!c) return ''.padEnd(colW);
      const txt = `${SHORT[c.level] ?? c.level}${c.rule === null ? '' : ` [${c.rule}]`}`;
      return txt.padEnd(colW);
    });
    out.push(r.resource.padEnd(first) + cells.join('').trimEnd());
  }
  out.push('');
  out.push('non-resource (get)');
  for (const n of m.nonResource) out.push(`  ${n.path.padEnd(first - 2)}${SHORT[n.level] ?? n.level}${n.rule === null ? '' : ` [${n.rule}]`}`);
  if (m.differences.length > 0) {
    out.push('');
    out.push(`Key identities that get a different level than ${m.identity}:`);
    const byWho = new Map<string, typeof m.differences>();
    for (const d of m.differences) {
      if (!byWho.has(d.who)) byWho.set(d.who, []);
      byWho.get(d.who)!.push(d);
    }
    for (const [who, ds] of byWho) {
      out.push(`  ${who}:`);
      for (const d of ds.slice(0, 12))
        out.push(
          `    ${d.request.padEnd(40)} ${SHORT[d.level] ?? d.level}${d.rule === null ? '' : ` [${d.rule}]`} (instead of ${SHORT[d.baseline] ?? d.baseline})`,
        );
      if (ds.length > 12) out.push(`    ... ${ds.length - 12} more`);
    }
  }
  out.push('');
  out.push('Levels: Meta = Metadata, Req = Request (request body), ReqResp = RequestResponse (request and response bodies)');
  return out.join('\n') + '\n';
}
