/**
 * Rule examples: every rule carries events that must raise it (`fire`) and events that must not (`quiet`). Examples
 * are written as partial audit events; the defaults below fill in the rest, then each event goes through the same
 * validation and normalisation (with redaction) as real input, and through an engine holding only that rule.
 * `kaudit rules test` and the test suite both run this.
 */
import { toAuditEvent } from '../events/decode.js';
import { normalise } from '../events/normalise.js';
import { newRedactionKey } from '../events/redact.js';
import { formatMicros, parseMicros } from '../events/time.js';
import type { AuditEvent, NormalisedEvent } from '../events/types.js';
import type { Alert } from './alert.js';
import { DetectionEngine } from './engine.js';
import type { ExampleCase, RuleSet, RuleSpec } from './rule.js';

export const EXAMPLE_BASE_TIME = '2026-01-01T00:00:00.000000Z';
const BASE_US = parseMicros(EXAMPLE_BASE_TIME);
const REDACTION = { enabled: true, key: newRedactionKey() };

const OFFSET = /^\+?(\d+(?:\.\d+)?)(ms|s|m|h)$/;

function offsetUs(at: unknown, where: string): number {
  if (typeof at === 'number') return Math.round(at * 1e6);
  const m = typeof at === 'string' ? OFFSET.exec(at) : null;
  if (!m) throw new Error(`${where}: "at" must be an offset such as +30s, +5m, 2h`);
  return Math.round(Number(m[1]) * { ms: 1e3, s: 1e6, m: 6e7, h: 3.6e9 }[m[2] as 'ms']);
}

function uriFor(ref: Record<string, unknown> | undefined): string {
  if (!ref) return '/';
  const group = typeof ref.apiGroup === 'string' ? ref.apiGroup : '';
  const version = typeof ref.apiVersion === 'string' ? ref.apiVersion : 'v1';
  let uri = group ? `/apis/${group}/${version}` : `/api/${version}`;
  if (ref.namespace) uri += `/namespaces/${ref.namespace}`;
  uri += `/${ref.resource ?? ''}`;
  if (ref.name) uri += `/${ref.name}`;
  if (ref.subresource) uri += `/${ref.subresource}`;
  return uri;
}

/**
 * Fills an example's partial event. Shorthands: `user: name` (a string), `code: 403`, `at: +5m` (time after the
 * examples' base time; default one second per event), `query: command=sh&container=app` (appended to the URI
 * derived from objectRef).
 */
export function exampleEvent(partial: Record<string, unknown>, id: string, index: number): AuditEvent {
  const { at, code, query, ...rest } = partial;
  const ev: Record<string, unknown> = { ...rest };
  ev.kind ??= 'Event';
  ev.apiVersion ??= 'audit.k8s.io/v1';
  ev.level ??= 'RequestResponse';
  ev.auditID ??= `${id}-${index}`;
  ev.stage ??= 'ResponseComplete';
  if (typeof ev.user === 'string') ev.user = { username: ev.user, groups: ['system:authenticated'] };
  ev.user ??= { username: 'alice@example.com', groups: ['system:authenticated'] };
  if (ev.objectRef && typeof ev.objectRef === 'object') {
    const ref = { ...(ev.objectRef as Record<string, unknown>) };
    ref.apiVersion ??= 'v1';
    ev.objectRef = ref;
  }
  if (ev.requestURI === undefined) {
    const base = uriFor(ev.objectRef as Record<string, unknown> | undefined);
    ev.requestURI = query ? `${base}?${query}` : base;
  }
  const t = BASE_US + (at !== undefined ? offsetUs(at, `event ${index}`) : index * 1e6);
  ev.requestReceivedTimestamp ??= formatMicros(t);
  ev.stageTimestamp ??= formatMicros(t + 1000);
  if (ev.responseStatus === undefined && ev.stage !== 'RequestReceived') {
    const c = typeof code === 'number' ? code : ev.verb === 'create' ? 201 : 200;
    ev.responseStatus = c >= 400 ? { code: c, status: 'Failure', reason: c === 403 ? 'Forbidden' : 'Error' } : { code: c };
  }
  if (ev.annotations === undefined) {
    const c = (ev.responseStatus as { code?: number } | undefined)?.code;
    ev.annotations = { 'authorization.k8s.io/decision': c === 403 ? 'forbid' : 'allow', 'authorization.k8s.io/reason': '' };
  }
  ev.sourceIPs ??= ['198.51.100.7'];
  ev.userAgent ??= 'kubectl/v1.30.2 (linux/amd64) kubernetes/3968350';
  return toAuditEvent(ev);
}

export function exampleEvents(c: ExampleCase, id: string): NormalisedEvent[] {
  return c.events.map((p, i) => normalise(exampleEvent(structuredClone(p), id, i), 'examples', REDACTION));
}

export interface ExampleResult {
  rule: string;
  kind: 'fire' | 'quiet';
  index: number;
  name?: string;
  file: string;
  line: number;
  expected: number;
  got: number;
  ok: boolean;
  /** Why the example could not run (a bad event, a failing condition). */
  error?: string;
  alerts: Alert[];
}

export async function runRuleExample(set: RuleSet, spec: RuleSpec, kind: 'fire' | 'quiet', index: number): Promise<ExampleResult> {
  const c = (kind === 'fire' ? spec.examples.fire : spec.examples.quiet)[index]!;
  const expected = kind === 'fire' ? (c.count ?? 1) : 0;
  const res: ExampleResult = {
    rule: spec.id,
    kind,
    index,
    file: spec.file,
    line: c.line,
    expected,
    got: 0,
    ok: false,
    alerts: [],
    ...(c.name ? { name: c.name } : {}),
  };
  const warnings: string[] = [];
  try {
    const engine = new DetectionEngine({ rules: [{ ...spec, enabled: true }], lists: set.lists, listValues: c.lists, onWarning: (m) => warnings.push(m) });
    const events = exampleEvents(c, `ex-${spec.id}-${kind}${index}`);
    res.alerts = (await engine.detect(events)).filter((a) => a.rule === spec.id);
    res.got = res.alerts.length;
    if (warnings.length > 0) res.error = warnings.join('; ');
    res.ok = res.got === expected && warnings.length === 0;
  } catch (e) {
    res.error = (e as Error).message;
  }
  return res;
}

/** Runs every example of the given rules (all rules when `only` is absent). */
export async function runExamples(set: RuleSet, only?: (id: string) => boolean): Promise<ExampleResult[]> {
  const out: ExampleResult[] = [];
  for (const spec of set.rules) {
    if (only && !only(spec.id)) continue;
    for (const kind of ['fire', 'quiet'] as const) {
      const list = kind === 'fire' ? spec.examples.fire : spec.examples.quiet;
      for (let i = 0; i < list.length; i++) out.push(await runRuleExample(set, spec, kind, i));
    }
  }
  return out;
}
