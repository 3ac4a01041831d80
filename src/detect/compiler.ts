/**
 * The rule compiler: rule specs (as the reader, rule.ts, gives them) and the tuning config in, the compile output out:
 * each running rule with its presenter (presentation.ts) and state core, and the matchers (declarative check, optional
 * JSONata condition) that the candidate index (candidates.ts) files by stage/resource/subresource/verb. Rules whose
 * match, condition and exceptions are identical share one matcher; rules that differ only in id share a presenter and
 * a state core.
 */
import type { NormalisedEvent } from '../events/types.js';
import type { Severity } from './alert.js';
import { parseWindow, type DetectionConfig, type DetectionException } from './config.js';
import { eitherException, shippedExceptions } from './exceptions.js';
import { ExpressionError, RuleExpression, type BodyRead } from './expression.js';
import type { ExpressionFacts } from './expression-facts.js';
import { images } from './facts.js';
import { DetectionLists } from './lists.js';
import { compileMatch, eventObjectName, MatchError, type IndexPlan } from './match.js';
import { compilePatterns } from './patterns.js';
import type { Presenter, Due } from './presentation.js';
import { RuleLoadError, type Level, type ListSpec, type MatchSpec, type RuleIssue, type RuleSpec } from './rule.js';
import { RecentIds, SequenceState, ThresholdState } from './state.js';

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
  /** Facts about expressions, by their text, that spare parsing them before first use (RuleSet.expressions). */
  expressions?: ReadonlyMap<string, ExpressionFacts>;
  /**
   * Request-id sets take their whole size at their first id (a long-running server, whose memory must hold flat
   * under load) instead of growing with their ids (default: grow; see recent-ids.ts).
   */
  reserveState?: boolean;
}

/**
 * A rule's behaviour: its state (threshold, sequence), the requests it has alerted on, and the decision for the last
 * event. Rules with identical matchers and state specs (copies that differ only in id) share one core: the decision
 * is made once per event and each of them raises its alert.
 */
export interface RuleCore {
  /** What identifies this state across restarts: the rule's matchers and state settings (see saveState). */
  key?: string;
  threshold?: { state: ThresholdState; by: string[]; distinct?: string[]; window: string };
  sequence?: { state: SequenceState; by: string[]; within: string; steps: string[] };
  alerted: RecentIds;
  lastEvent?: NormalisedEvent;
  lastStep?: number;
  lastDue?: Due | null;
}

export interface CompiledRule {
  spec: RuleSpec;
  ordinal: number;
  info: RuleInfo;
  presenter: Presenter;
  core: RuleCore;
  alerts: number;
  matchers: Matcher[];
}

export interface Member {
  rule: CompiledRule;
  /** Sequence step, or -1. */
  step: number;
}

export interface Matcher {
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

/** The compile output: the lists as tuned, the rules that run (in file order) and those that do not, and the matchers. */
export interface CompiledRules {
  lists: DetectionLists;
  /** The running rules' descriptions, in file order. */
  rules: RuleInfo[];
  /** Rules loaded but not running, with the reason (disabled, or a list they need is empty). */
  inactive: InactiveRule[];
  compiled: CompiledRule[];
  /** Every distinct matcher once (shared ones are not repeated). */
  matchers: Matcher[];
}

/** Compiles the rules with their tuning; throws RuleLoadError with every rule's problems at once. */
export function compileRules(opts: EngineOptions): CompiledRules {
  const cfg = opts.config ?? {};
  const base = new Map<string, readonly string[]>();
  for (const [n, l] of opts.lists) base.set(n, l.items);
  const lists = DetectionLists.build(base, cfg.lists, opts.listValues);
  // Wall time: under CPU contention (a loaded host, GC) a normal evaluation can take tens of ms; the bound is for
  // pathological expressions, so it is set well above that to never drop a match on a busy machine.
  const timeoutMs = cfg.evaluationTimeoutMs ?? 2000;
  const maxKeys = cfg.state?.maxKeys ?? 100_000;
  const maxRequests = cfg.state?.maxRequests ?? 100_000;
  const reserve = opts.reserveState === true;
  const share = opts.shareIdentical !== false;
  const useIndex = opts.useIndex !== false;
  const out: CompiledRules = { lists, rules: [], inactive: [], compiled: [], matchers: [] };
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
      out.inactive.push({ id: spec.id, reason: 'disabled' });
      continue;
    }
    const empty = (spec.requires ?? []).filter((l) => !lists.has(l) || lists.get(l).length === 0);
    if (empty.length > 0) {
      out.inactive.push({ id: spec.id, reason: `needs list ${empty.join(', ')} (empty)` });
      continue;
    }
    const fail = (message: string) => issues.push({ level: 'error', file: spec.file, line: spec.line, rule: spec.id, message });
    try {
      const exceptions = [...(cfg.exceptions ?? []).filter((x) => !x.rules || globMatch(x.rules, spec.id)), ...(tuning.exceptions ?? [])];
      const shipped = shippedExceptions(spec.exceptions, tuning, lists);
      const excepted = eitherException(exceptionPredicate(exceptions), shipped.test);
      const own = exceptions.map(({ reason: _r, ...x }) => x);
      const exKey = JSON.stringify(shipped.key ? [own, shipped.key] : own);
      const reads = new Set<BodyRead>();
      const expr = (src: string, where: string) => {
        try {
          const x = new RuleExpression(src, lists, { timeoutMs }, opts.expressions?.get(src));
          for (const r of x.analysis.reads) reads.add(r);
          return x;
        } catch (e) {
          throw new MatchError(`${where}: ${(e as Error).message}`);
        }
      };
      const details: [string, RuleExpression][] = Object.entries(spec.details ?? {}).map(([k, src]) => [k, expr(src, `details.${k}`)]);
      const escalate = (spec.escalate ?? []).map((x, i) => ({
        severity: x.severity,
        check: compileMatch({ ...x.when, stages: ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] }, lists, `escalate[${i}].when`, false)
          .check,
      }));
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
        ordinal: out.compiled.length,
        info: {
          id: spec.id,
          title: spec.title,
          description: spec.description,
          severity,
          tags: spec.tags,
          mitre,
          kind: spec.threshold ? 'threshold' : spec.sequence ? 'sequence' : 'event',
          level: 'Metadata',
          file: spec.file,
          line: spec.line,
        },
        presenter,
        core: undefined as unknown as RuleCore,
        alerts: 0,
        matchers: [],
      };
      // A rule that looks at one stage meets a request again only as a duplicate delivery, which comes soon; one
      // that looks at several (exec) may see the second stage hours later.
      const multiStage = steps.some((st) => (st.match?.stages ?? ['ResponseComplete']).length > 1);
      const core: RuleCore = {
        alerted: multiStage ? new RecentIds(maxRequests, DAY_US, reserve) : new RecentIds(Math.min(maxRequests, 10_000), HOUR_US, reserve),
      };
      let stateKey: unknown = null;
      if (spec.threshold) {
        const t = spec.threshold;
        const window = tuning.threshold?.window ?? t.window;
        const count = tuning.threshold?.count ?? t.count;
        core.threshold = {
          state: new ThresholdState(count, parseWindow(window, 'threshold.window'), !!t.distinct, maxKeys),
          by: t.by,
          window,
          ...(t.distinct ? { distinct: t.distinct } : {}),
        };
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
        const cm = compileMatch(st.match, lists, st.where, useIndex);
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
          ...(cm.plan.stages.length > 1 ? { seen: new RecentIds(maxRequests, DAY_US, reserve) } : {}),
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
        out.matchers.push(m);
        if (share) byKey.set(m.key, m);
      }
      out.compiled.push(rule);
      out.rules.push(rule.info);
    } catch (e) {
      if (e instanceof MatchError || e instanceof ExpressionError) fail(e.message);
      else throw e;
    }
  }
  if (issues.length > 0) throw new RuleLoadError(issues);
  return out;
}
