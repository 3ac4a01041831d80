/**
 * The detection engine: rules compiled once into matchers (declarative check + optional JSONata condition), matchers
 * indexed by stage/resource/subresource/verb, and per-rule state for thresholds, sequences and stage de-duplication.
 *
 * Per event: one index lookup, then for each candidate the cheap declarative check (fields of the normalised event,
 * exceptions), and only then the JSONata condition. Rules whose match, condition and exceptions are identical share
 * one matcher (evaluated once per event); their alerts, state and counts stay per rule.
 */
import type { NormalisedEvent, ObjectReference } from '../events/types.js';
import { log } from '../log.js';
import { alertEventFields, severityRank, type Alert, type Detector, type Severity } from './alert.js';
import { CandidateIndex } from './candidates.js';
import { isObject, parseWindow, type DetectionConfig, type DetectionException } from './config.js';
import { eitherException, shippedExceptions } from './exceptions.js';
import { images } from './facts.js';
import { DEFER, ExpressionError, RuleExpression, type BodyRead } from './expression.js';
import { DetectionLists } from './lists.js';
import { compileMatch, eventObjectName, MatchError, type IndexPlan } from './match.js';
import { compilePatterns } from './patterns.js';
import { RuleLoadError, type Level, type ListSpec, type MatchSpec, type RuleIssue, type RuleSpec } from './rule.js';
import { RecentIds, SequenceState, ThresholdState } from './state.js';
import { groupObject, renderSummary } from './summary.js';

const MITRE = /^T\d{4}(?:\.\d{3})?$/;
const DAY_US = 86_400_000_000;
const HOUR_US = 3_600_000_000;

export interface RuleInfo {
  id: string;
  title: string;
  description: string;
  severity: Severity;
  tags: string[];
  mitre: string[];
  kind: 'event' | 'threshold' | 'sequence';
  level: Level;
  file: string;
  line: number;
}

export interface InactiveRule {
  id: string;
  reason: string;
}

export interface RuleStats {
  rule: string;
  /** Events the index handed to the rule. */
  candidates: number;
  /** Candidates that passed the declarative check and exceptions. */
  checked: number;
  /** JSONata condition evaluations (shared by rules with an identical matcher). */
  conditionEvaluations: number;
  /** Events that matched (declarative check and condition). */
  matched: number;
  alerts: number;
  /** Condition evaluations that failed or timed out. */
  errors: number;
  /** Rules sharing this rule's matcher (1 = its own). */
  sharedBy: number;
}

export interface EngineOptions {
  rules: readonly RuleSpec[];
  lists: ReadonlyMap<string, ListSpec>;
  config?: DetectionConfig;
  /** Lists that replace those of the files and config (rule examples use this). */
  listValues?: Record<string, string[]>;
  /** Share one matcher between rules with identical match, condition and exceptions (default true). */
  shareIdentical?: boolean;
  /**
   * Use the candidate index (default true). Without it every event goes to every matcher, which checks stage, verb
   * and resource itself: slower, and the reference the tests compare the index with.
   */
  useIndex?: boolean;
  /** Where condition errors go (default: the log, rate-limited). */
  onWarning?: (message: string) => void;
}

/**
 * What an alert says about its event (title, severity, summary, details, object): the same for rules that differ
 * only in id, so such rules share one presenter, which builds it once per event.
 */
interface Presenter {
  title: string;
  tags: string[];
  mitre: string[];
  severity: Severity;
  summary: string;
  details: [string, RuleExpression][];
  escalate: { severity: Severity; check: (e: NormalisedEvent) => boolean }[];
  lastEvent?: NormalisedEvent;
  lastDue?: Due;
  lastBase?: AlertBase | Promise<AlertBase>;
  lastKeyTail?: string | Promise<string>;
}

/** A rule's alert from the presenter's work for the event (shared by rules that differ only in id). */
function alertOf(rule: string, groupKey: string, b: AlertBase): Alert {
  const a: Alert = {
    rule,
    title: b.title,
    severity: b.severity,
    tags: b.tags,
    mitre: b.mitre,
    summary: b.summary,
    cluster: b.cluster,
    auditID: b.auditID,
    stage: b.stage,
    time: b.time,
    timeMicros: b.timeMicros,
    user: b.user,
    sourceIP: b.sourceIP,
    verb: b.verb,
    objectRef: b.objectRef,
    groupKey,
    // Always set (undefined when none, which JSON leaves out): one object shape for every alert.
    details: b.details,
  };
  return a;
}

/** An alert without the rule's id and group key. */
type AlertBase = Omit<Alert, 'rule' | 'groupKey'> & { object: string };

/**
 * A rule's behaviour: its state (threshold, sequence), the requests it has alerted on, and the decision for the last
 * event. Rules with identical matchers and state specs (copies that differ only in id) share one core: the decision
 * is made once per event and each of them raises its alert.
 */
interface RuleCore {
  /** What identifies this state across restarts: the rule's matchers and state settings (see saveState). */
  key?: string;
  threshold?: { state: ThresholdState; by: string[]; distinct?: string[]; window: string };
  sequence?: { state: SequenceState; by: string[]; within: string; steps: string[] };
  alerted: RecentIds;
  lastEvent?: NormalisedEvent;
  lastStep?: number;
  lastDue?: Due | null;
}

/** What saveState returns: JSON data. */
export interface DetectionState {
  format: typeof STATE_FORMAT;
  version: number;
  savedAt: string;
  cores: [string, SavedCore][];
  matchers: [string, [string, number][]][];
}

interface SavedCore {
  alerted: unknown;
  threshold?: unknown;
  sequence?: unknown;
}

const STATE_FORMAT = 'kaudit-detection-state';
const STATE_VERSION = 1;

/** An alert that is due: the group-key object and, for stateful rules, what the state says. */
interface Due {
  object?: string;
  extras?: Extras;
}

const STATELESS_DUE: Due = {};

interface CompiledRule {
  spec: RuleSpec;
  ordinal: number;
  info: RuleInfo;
  presenter: Presenter;
  core: RuleCore;
  alerts: number;
  matchers: Matcher[];
}

interface Member {
  rule: CompiledRule;
  /** Sequence step, or -1. */
  step: number;
}

interface Matcher {
  plan: IndexPlan;
  key: string;
  check: (e: NormalisedEvent) => boolean;
  condition?: RuleExpression;
  /**
   * False when the condition reads only the request and response bodies and is false without them (see prepare):
   * an event carrying neither body cannot match, and needs no evaluation.
   */
  bodyless?: boolean;
  members: Member[];
  /** Requests already handled, for matchers that look at more than one stage. */
  seen?: RecentIds;
  candidates: number;
  checked: number;
  evaluations: number;
  matched: number;
  errors: number;
}

type KeyField = 'user' | 'namespace' | 'name' | 'sourceIP' | 'resource' | 'userAgent' | 'cluster' | 'verb' | 'impersonatedUser' | 'apiGroup' | 'subresource';

function fieldValue(e: NormalisedEvent, f: string): string {
  if (f === 'name') return eventObjectName(e);
  return String(e[f as KeyField] ?? '');
}

function keyOf(e: NormalisedEvent, fields: readonly string[]): string {
  if (fields.length === 1) return fieldValue(e, fields[0]!);
  return fields.map((f) => fieldValue(e, f)).join('\u0001');
}

function globMatch(patterns: readonly string[] | undefined, id: string): boolean {
  return !!patterns && compilePatterns(patterns)(id);
}

/** The audit level a rule needs, from what its condition and details read. */
export function levelFor(reads: Iterable<BodyRead>, explicit?: Level): Level {
  if (explicit) return explicit;
  let level: Level = 'Metadata';
  for (const r of reads) {
    if (r === 'responseObject') return 'RequestResponse';
    if (r === 'requestObject') level = 'Request';
  }
  return level;
}

function exceptionPredicate(list: DetectionException[]): ((e: NormalisedEvent) => boolean) | undefined {
  if (list.length === 0) return undefined;
  const compiled = list.map((x) => {
    const users = x.users ? compilePatterns(x.users) : undefined;
    const groups = x.groups ? compilePatterns(x.groups) : undefined;
    const namespaces = x.namespaces ? compilePatterns(x.namespaces) : undefined;
    const names = x.names ? compilePatterns(x.names) : undefined;
    const imgs = x.images ? compilePatterns(x.images) : undefined;
    return (e: NormalisedEvent) => {
      if (users && !users(e.user)) return false;
      if (groups && !e.groups.some(groups)) return false;
      if (namespaces && !namespaces(e.namespace)) return false;
      if (names && !names(eventObjectName(e))) return false;
      if (imgs) {
        const im = images(e.event);
        if (im.length === 0 || !im.every(imgs)) return false;
      }
      return true;
    };
  });
  return (e) => compiled.some((c) => c(e));
}

export class DetectionEngine implements Detector {
  readonly lists: DetectionLists;
  /** The rules that run, in file order. */
  readonly rules: RuleInfo[] = [];
  /** Rules loaded but not running, with the reason (disabled, or a list they need is empty). */
  readonly inactive: InactiveRule[] = [];
  private readonly compiled: CompiledRule[] = [];
  private readonly matchers: Matcher[] = [];
  private readonly index: CandidateIndex<Matcher>;
  private readonly useIndex: boolean;
  private readonly warn: (m: string) => void;
  private readonly warned = new Set<string>();
  private events = 0;

  constructor(opts: EngineOptions) {
    const cfg = opts.config ?? {};
    const base = new Map<string, readonly string[]>();
    for (const [n, l] of opts.lists) base.set(n, l.items);
    this.lists = DetectionLists.build(base, cfg.lists, opts.listValues);
    this.warn = opts.onWarning ?? ((m) => log.warn(m, 'detect-eval'));
    // Wall time: under CPU contention (a loaded host, GC) a normal evaluation can take tens of ms; the bound is for
    // pathological expressions, so it is set well above that to never drop a match on a busy machine.
    const timeoutMs = cfg.evaluationTimeoutMs ?? 2000;
    const maxKeys = cfg.state?.maxKeys ?? 100_000;
    const maxRequests = cfg.state?.maxRequests ?? 100_000;
    const share = opts.shareIdentical !== false;
    this.useIndex = opts.useIndex !== false;
    const byKey = new Map<string, Matcher>();
    const presenters = new Map<string, Presenter>();
    const cores = new Map<string, RuleCore>();
    const issues: RuleIssue[] = [];

    for (const spec of opts.rules) {
      const tuning = cfg.rules?.[spec.id] ?? {};
      let enabled = spec.enabled;
      if (cfg.enabled) enabled = globMatch(cfg.enabled, spec.id);
      if (globMatch(cfg.disabled, spec.id)) enabled = false;
      if (tuning.enabled !== undefined) enabled = tuning.enabled;
      if (!enabled) {
        this.inactive.push({ id: spec.id, reason: 'disabled' });
        continue;
      }
      const empty = (spec.requires ?? []).filter((l) => !this.lists.has(l) || this.lists.get(l).length === 0);
      if (empty.length > 0) {
        this.inactive.push({ id: spec.id, reason: `needs list ${empty.join(', ')} (empty)` });
        continue;
      }
      const fail = (message: string) => issues.push({ level: 'error', file: spec.file, line: spec.line, rule: spec.id, message });
      try {
        const exceptions = [...(cfg.exceptions ?? []).filter((x) => !x.rules || globMatch(x.rules, spec.id)), ...(tuning.exceptions ?? [])];
        const shipped = shippedExceptions(spec.exceptions, tuning, this.lists);
        const excepted = eitherException(exceptionPredicate(exceptions), shipped.test);
        const own = exceptions.map(({ reason: _r, ...x }) => x);
        const exKey = JSON.stringify(shipped.key ? [own, shipped.key] : own);
        const reads = new Set<BodyRead>();
        const expr = (src: string, where: string) => {
          try {
            const x = new RuleExpression(src, this.lists, { timeoutMs });
            for (const r of x.analysis.reads) reads.add(r);
            return x;
          } catch (e) {
            throw new MatchError(`${where}: ${(e as Error).message}`);
          }
        };
        const details: [string, RuleExpression][] = Object.entries(spec.details ?? {}).map(([k, src]) => [k, expr(src, `details.${k}`)]);
        const escalate = (spec.escalate ?? []).map((x, i) => ({ severity: x.severity, check: compileMatch({ ...x.when, stages: ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] }, this.lists, `escalate[${i}].when`, false).check }));
        const steps: { match?: MatchSpec; condition?: string; step: number; where: string }[] = spec.sequence
          ? spec.sequence.steps.map((s, i) => ({ ...s, step: i, where: `sequence.steps[${i}]` })).reverse()
          : [{ match: spec.match, condition: spec.condition, step: -1, where: 'match' }];
        const mitre = spec.tags.filter((t) => MITRE.test(t));
        const severity = cfg.severity?.[spec.id] ?? tuning.severity ?? spec.severity;
        const summary = spec.summary ?? '{user} {verbPast} {target}';
        const pkey = JSON.stringify([spec.title, spec.tags, severity, summary, spec.details ?? {}, spec.escalate ?? []]);
        let presenter = share ? presenters.get(pkey) : undefined;
        if (!presenter) {
          presenter = { title: spec.title, tags: spec.tags, mitre, severity, summary, details, escalate };
          if (share) presenters.set(pkey, presenter);
        }
        const rule: CompiledRule = {
          spec,
          ordinal: this.compiled.length,
          info: { id: spec.id, title: spec.title, description: spec.description, severity, tags: spec.tags, mitre, kind: spec.threshold ? 'threshold' : spec.sequence ? 'sequence' : 'event', level: 'Metadata', file: spec.file, line: spec.line },
          presenter,
          core: undefined as unknown as RuleCore,
          alerts: 0,
          matchers: [],
        };
        // A rule that looks at one stage meets a request again only as a duplicate delivery, which comes soon; one
        // that looks at several (exec) may see the second stage hours later.
        const multiStage = steps.some((st) => (st.match?.stages ?? ['ResponseComplete']).length > 1);
        const core: RuleCore = { alerted: multiStage ? new RecentIds(maxRequests, DAY_US) : new RecentIds(Math.min(maxRequests, 10_000), HOUR_US) };
        let stateKey: unknown = null;
        if (spec.threshold) {
          const t = spec.threshold;
          const window = tuning.threshold?.window ?? t.window;
          const count = tuning.threshold?.count ?? t.count;
          core.threshold = { state: new ThresholdState(count, parseWindow(window, 'threshold.window'), !!t.distinct, maxKeys), by: t.by, window, ...(t.distinct ? { distinct: t.distinct } : {}) };
          stateKey = ['threshold', t.by, count, window, t.distinct ?? null];
        }
        if (spec.sequence) {
          const within = tuning.within ?? spec.sequence.within;
          core.sequence = {
            state: new SequenceState(spec.sequence.steps.length, parseWindow(within, 'sequence.within'), maxKeys),
            by: spec.sequence.by,
            within,
            steps: spec.sequence.steps.map((s) => s.name),
          };
          stateKey = ['sequence', spec.sequence.by, within, core.sequence.steps];
        }
        const pending: Matcher[] = [];
        for (const st of steps) {
          const cm = compileMatch(st.match, this.lists, st.where, this.useIndex);
          const condition = st.condition ? expr(st.condition, st.step >= 0 ? `${st.where}.condition` : 'condition') : undefined;
          const check = excepted ? (e: NormalisedEvent) => cm.check(e) && !excepted(e) : cm.check;
          const key = JSON.stringify([st.match ?? {}, st.condition ?? '', exKey]);
          const existing = share ? byKey.get(key) : undefined;
          const member: Member = { rule, step: st.step };
          if (existing) {
            existing.members.push(member);
            rule.matchers.push(existing);
            continue;
          }
          const m: Matcher = {
            plan: cm.plan,
            key,
            check,
            ...(condition ? { condition } : {}),
            members: [member],
            ...(cm.plan.stages.length > 1 ? { seen: new RecentIds(maxRequests, DAY_US) } : {}),
            candidates: 0,
            checked: 0,
            evaluations: 0,
            matched: 0,
            errors: 0,
          };
          pending.push(m);
          rule.matchers.push(m);
        }
        rule.info.level = levelFor(reads, spec.level);
        const coreKey = JSON.stringify([rule.matchers.map((m) => m.key), stateKey]);
        rule.core = (share ? cores.get(coreKey) : undefined) ?? core;
        if (share && !cores.has(coreKey)) cores.set(coreKey, core);
        rule.core.key ??= share ? coreKey : JSON.stringify([spec.id, coreKey]);
        for (const m of pending) {
          this.matchers.push(m);
          if (share) byKey.set(m.key, m);
        }
        this.compiled.push(rule);
        this.rules.push(rule.info);
      } catch (e) {
        if (e instanceof MatchError || e instanceof ExpressionError) fail(e.message);
        else throw e;
      }
    }
    if (issues.length > 0) throw new RuleLoadError(issues);
    this.index = new CandidateIndex(this.matchers);
  }

  /** The matchers an event is handed to (for tests and the benchmark: shows the index at work). */
  candidatesFor(e: Pick<NormalisedEvent, 'stage' | 'resource' | 'subresource' | 'verb'>): string[] {
    return [...new Set(this.lookup(e).flatMap((m) => m.members.map((x) => x.rule.info.id)))];
  }

  private lookup(e: Pick<NormalisedEvent, 'stage' | 'resource' | 'subresource' | 'verb'>): readonly Matcher[] {
    return this.useIndex ? this.index.lookup(e.stage, e.resource, e.subresource, e.verb) : this.matchers;
  }

  /** Per-rule evaluation counts since the engine was made. */
  stats(): RuleStats[] {
    return this.compiled.map((r) => {
      const s = { rule: r.info.id, candidates: 0, checked: 0, conditionEvaluations: 0, matched: 0, alerts: r.alerts, errors: 0, sharedBy: 1 };
      for (const m of r.matchers) {
        s.candidates += m.candidates;
        s.checked += m.checked;
        s.conditionEvaluations += m.evaluations;
        s.matched += m.matched;
        s.errors += m.errors;
        s.sharedBy = Math.max(s.sharedBy, new Set(m.members.map((x) => x.rule)).size);
      }
      return s;
    });
  }

  /**
   * The batch that raised these alerts was not stored (a full disk rolled it back): its requests are forgotten as
   * handled, so that when the source sends the batch again (the webhook's retry, the tail's) they alert then.
   * Without this every rule would take the resent events as already alerted on (once per request), and the alerts
   * would never be stored. Threshold and sequence state keeps what it counted (see the README's guarantees).
   */
  forget(alerts: readonly Alert[]): void {
    for (const a of alerts) {
      for (const r of this.compiled) {
        if (r.info.id !== a.rule) continue;
        r.core.alerted.delete(a.auditID);
        for (const m of r.matchers) m.seen?.delete(a.auditID);
      }
    }
  }

  /**
   * The detection state (open threshold windows, sequences in progress, requests already handled) as plain data, to
   * be loaded into an engine made later from the same rules (loadState): a restart then loses no open window. Each
   * part is keyed by what defines it (the rule's matchers, conditions, exceptions and state settings), so a rule
   * changed in between starts afresh and the others keep theirs.
   */
  saveState(): DetectionState {
    const cores = new Map<string, SavedCore>();
    for (const r of this.compiled) {
      const c = r.core;
      if (cores.has(c.key!)) continue;
      cores.set(c.key!, {
        alerted: c.alerted.save(),
        ...(c.threshold ? { threshold: c.threshold.state.save() } : {}),
        ...(c.sequence ? { sequence: c.sequence.state.save() } : {}),
      });
    }
    const matchers: [string, [string, number][]][] = [];
    const keys = new Set<string>();
    for (const m of this.matchers) if (m.seen && !keys.has(m.key)) (keys.add(m.key), matchers.push([m.key, m.seen.save()]));
    return { format: STATE_FORMAT, version: STATE_VERSION, savedAt: new Date().toISOString(), cores: [...cores], matchers };
  }

  /**
   * Loads what saveState returned (of this engine's rules or an earlier set): the parts whose key this engine has
   * are taken; anything else, or data of another shape, is skipped. Call before the first `detect`.
   */
  loadState(data: unknown): { keys: number; parts: number; skipped: number } {
    const out = { keys: 0, parts: 0, skipped: 0 };
    if (!isObject(data) || data.format !== STATE_FORMAT || data.version !== STATE_VERSION) {
      out.skipped = 1;
      return out;
    }
    const cores = new Map<string, RuleCore>();
    for (const r of this.compiled) cores.set(r.core.key!, r.core);
    const matchers = new Map<string, RecentIds>();
    for (const m of this.matchers) if (m.seen) matchers.set(m.key, m.seen);
    for (const e of Array.isArray(data.cores) ? data.cores : []) {
      const c = Array.isArray(e) && typeof e[0] === 'string' ? cores.get(e[0]) : undefined;
      const saved = Array.isArray(e) && isObject(e[1]) ? e[1] : undefined;
      if (!c || !saved) {
        out.skipped++;
        continue;
      }
      out.parts++;
      out.keys += c.alerted.load(saved.alerted);
      if (c.threshold) out.keys += c.threshold.state.load(saved.threshold);
      if (c.sequence) out.keys += c.sequence.state.load(saved.sequence);
    }
    for (const e of Array.isArray(data.matchers) ? data.matchers : []) {
      const seen = Array.isArray(e) && typeof e[0] === 'string' ? matchers.get(e[0]) : undefined;
      if (!seen) {
        out.skipped++;
        continue;
      }
      out.parts++;
      out.keys += seen.load((e as unknown[])[1]);
    }
    return out;
  }

  /** Events seen, matchers, and distinct candidate lists of the index. */
  get counts(): { events: number; rules: number; matchers: number; indexLists: number } {
    return { events: this.events, rules: this.compiled.length, matchers: this.matchers.length, indexLists: this.index.tables };
  }

  /**
   * Whether any rule can use this event (index lookup and declarative checks, no JSONata). The pipeline drops the
   * parsed body of events no rule wants; `detect` skips events that come without one.
   */
  wants(e: NormalisedEvent): boolean {
    const ev = e.event;
    if (!ev) return false;
    const noBody = ev.requestObject === undefined && ev.responseObject === undefined;
    for (const m of this.lookup(e)) if (m.check(e) && !(noBody && m.bodyless === false)) return true;
    return false;
  }

  /**
   * Finds, once, the conditions that read only the request and response bodies and are false without them (most
   * workload rules: `$count($containers()[...]) > 0`): events carrying neither body skip them, and are not kept for
   * detection on their account. Without this step every condition is evaluated (same alerts, more work).
   */
  async prepare(): Promise<void> {
    for (const m of this.matchers) if (m.condition) m.bodyless = await m.condition.bodylessTruth();
  }

  async detect(events: readonly NormalisedEvent[]): Promise<Alert[]> {
    const out: Alert[] = [];
    for (const e of events) {
      this.events++;
      if (!e.event) continue; // dropped by the pipeline because wants() said no rule can use it
      const cands = this.lookup(e);
      if (cands.length === 0) continue;
      // The event's alerts in rule order: members of a matcher come in that order, so sorting is rarely needed.
      let fired: Alert[] | undefined;
      let ordinals: number[] | undefined;
      let inOrder = true;
      const noBody = e.event.requestObject === undefined && e.event.responseObject === undefined;
      for (const m of cands) {
        m.candidates++;
        if (!m.check(e)) continue;
        if (m.seen?.has(e.auditID)) continue;
        m.checked++;
        if (noBody && m.bodyless === false) continue;
        if (m.condition) {
          m.evaluations++;
          let ok: boolean;
          try {
            ok = m.condition.testNow(e.event) ?? (await m.condition.test(e.event));
          } catch (err) {
            m.errors++;
            this.reportError(m, e, err as Error);
            continue;
          }
          if (!ok) continue;
        }
        m.matched++;
        m.seen?.add(e.auditID, e.timeMicros);
        for (const mem of m.members) {
          const r = this.onMatch(mem, e);
          const a = r instanceof Promise ? await r : r;
          if (!a) continue;
          const o = mem.rule.ordinal;
          if (!fired) {
            fired = [a];
            ordinals = [o];
          } else {
            if (o < ordinals![ordinals!.length - 1]!) inOrder = false;
            fired.push(a);
            ordinals!.push(o);
          }
        }
      }
      if (fired) {
        if (inOrder) for (const a of fired) out.push(a);
        else {
          const f = fired;
          const ord = ordinals!;
          for (const i of f.map((_, i) => i).sort((x, y) => ord[x]! - ord[y]!)) out.push(f[i]!);
        }
      }
    }
    return out;
  }

  private reportError(m: Matcher, e: NormalisedEvent, err: Error): void {
    const ids = m.members.map((x) => x.rule.info.id).join(', ');
    const msg = `detection rule ${ids}: condition failed on event ${e.auditID} (${e.stage}): ${err.message}; treated as no match`;
    const once = `${ids}\u0000${err.message}`;
    if (this.warned.size < 1000 && !this.warned.has(once)) {
      this.warned.add(once);
      this.warn(msg);
    }
  }

  /** Applies a match to a rule: state, de-duplication, and the alert if one is due (a promise only when details must be evaluated). */
  private onMatch(mem: Member, e: NormalisedEvent): Alert | undefined | Promise<Alert | undefined> {
    const r = mem.rule;
    const c = r.core;
    let due: Due | null | undefined;
    if (c.lastEvent === e && c.lastStep === mem.step) due = c.lastDue;
    else {
      due = this.decide(c, mem.step, e);
      c.lastEvent = e;
      c.lastStep = mem.step;
      c.lastDue = due;
    }
    if (!due) return undefined;
    r.alerts++;
    return this.alert(r, e, due);
  }

  /** Whether the rule (core) alerts on this event: its state, then once per request. */
  private decide(c: RuleCore, step: number, e: NormalisedEvent): Due | null {
    let due: Due = STATELESS_DUE;
    if (c.threshold) {
      const t = c.threshold;
      const key = keyOf(e, t.by);
      const hit = t.state.add(key, e.timeMicros, t.distinct ? keyOf(e, t.distinct).replace(/\u0001/g, '/') : '');
      if (!hit) return null;
      const k = key.replace(/\u0001/g, ' ');
      due = {
        object: `threshold:${k}`,
        extras: {
          count: hit.count,
          window: t.window,
          key: k,
          extra: { count: hit.count, window: t.window, firstTime: new Date(Math.floor(hit.firstUs / 1000)).toISOString(), ...(hit.values ? { values: hit.values.slice(0, 50) } : {}) },
        },
      };
    } else if (c.sequence) {
      const s = c.sequence;
      const key = keyOf(e, s.by);
      const done = s.state.advance(key, step, e.timeMicros, e.auditID);
      if (!done) return null;
      const k = key.replace(/\u0001/g, ' ');
      due = {
        object: `sequence:${k}`,
        extras: { window: s.within, key: k, extra: { steps: done.ids.map((id, i) => ({ step: s.steps[i], auditID: id, time: new Date(Math.floor(done.times[i]! / 1000)).toISOString() })) } },
      };
    }
    if (c.alerted.has(e.auditID)) return null;
    c.alerted.add(e.auditID, e.timeMicros);
    return due;
  }

  /**
   * The alert of rule `r` for event `e`. The presenter's work (summary, details, severity) is done once per event and
   * decision, and reused by rules that differ only in id.
   */
  private alert(r: CompiledRule, e: NormalisedEvent, due: Due): Alert | Promise<Alert> {
    const p = r.presenter;
    if (p.lastEvent !== e || p.lastDue !== due) {
      p.lastEvent = e;
      p.lastDue = due;
      const base = this.present(p, r.info.id, e, due.extras);
      p.lastBase = base;
      // The group key after the rule id is the same for every rule sharing this presenter and decision.
      const tail = (b: AlertBase) => `|${e.cluster}|${e.user}|${due.object ?? b.object}`;
      p.lastKeyTail = base instanceof Promise ? base.then(tail) : tail(base);
    }
    const base = p.lastBase!;
    const tail = p.lastKeyTail!;
    const id = r.info.id;
    if (base instanceof Promise) return Promise.all([base, tail]).then(([b, t]) => alertOf(id, id + t, b));
    return alertOf(id, id + (tail as string), base);
  }

  private present(p: Presenter, id: string, e: NormalisedEvent, x: Extras | undefined): AlertBase | Promise<AlertBase> {
    let details: Record<string, unknown> | undefined = x?.extra ? { ...x.extra } : undefined;
    for (let i = 0; i < p.details.length; i++) {
      const [k, expr] = p.details[i]!;
      try {
        const v = expr.valueNow(e.event);
        if (v === DEFER) return this.presentAsync(p, id, e, x, details, i);
        details = this.keepDetail(details, k, v);
      } catch (err) {
        this.detailFailed(id, k, e, err);
      }
    }
    return this.base(p, e, x, details);
  }

  /** present() from detail `from` on, for details JSONata must evaluate. */
  private async presentAsync(p: Presenter, id: string, e: NormalisedEvent, x: Extras | undefined, details: Record<string, unknown> | undefined, from: number): Promise<AlertBase> {
    for (const [k, expr] of p.details.slice(from)) {
      try {
        details = this.keepDetail(details, k, await expr.value(e.event));
      } catch (err) {
        this.detailFailed(id, k, e, err);
      }
    }
    return this.base(p, e, x, details);
  }

  private keepDetail(details: Record<string, unknown> | undefined, k: string, v: unknown): Record<string, unknown> | undefined {
    if (v === undefined) return details;
    // The alert is serialised (store, feed, Kafka): a value nested deeper than that can go is not kept (throws).
    JSON.stringify(v);
    (details ??= {})[k] = Array.isArray(v) ? [...v] : v;
    return details;
  }

  private detailFailed(id: string, k: string, e: NormalisedEvent, err: unknown): void {
    this.warn(`detection rule ${id}: details.${k} failed on event ${e.auditID}: ${(err as Error).message}`);
  }

  private base(p: Presenter, e: NormalisedEvent, x: Extras | undefined, details: Record<string, unknown> | undefined): AlertBase {
    let severity = p.severity;
    for (const esc of p.escalate) if (severityRank(esc.severity) > severityRank(severity) && esc.check(e)) severity = esc.severity;
    const ref: ObjectReference = { ...(e.event.objectRef ?? {}) };
    if (e.resource !== '' && !ref.name) {
      const n = eventObjectName(e);
      if (n) ref.name = n;
    }
    return {
      title: p.title,
      severity,
      tags: p.tags,
      mitre: p.mitre,
      summary: renderSummary(p.summary, e, { count: x?.count, window: x?.window, key: x?.key, details }),
      ...alertEventFields(e),
      objectRef: ref,
      ...(details ? { details } : {}),
      object: groupObject(e),
    };
  }
}

interface Extras {
  count?: number;
  window?: string;
  key?: string;
  extra?: Record<string, unknown>;
}
