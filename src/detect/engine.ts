/**
 * The detection engine: runs the compiled rules (compiler.ts) over events. Per event: one candidate-index lookup, then
 * for each candidate matcher the cheap declarative check (fields of the normalised event, exceptions), and only then
 * the JSONata condition; a match goes to each member rule's state (thresholds, sequences, stage de-duplication), and
 * an alert that is due is presented (presentation.ts). Its state can be saved and loaded across restarts
 * (saved-state.ts).
 */
import type { NormalisedEvent } from '../events/types.js';
import { log } from '../log.js';
import type { Alert, Detector } from './alert.js';
import { CandidateIndex } from './candidates.js';
import { compileRules, type CompiledRule, type EngineOptions, type InactiveRule, type Matcher, type Member, type RuleCore, type RuleInfo } from './compiler.js';
import { keyOf } from './key-fields.js';
import type { DetectionLists } from './lists.js';
import { presentAlert, STATELESS_DUE, type Due } from './presentation.js';
import { dropState, liveEntries, liveIdBytes, loadState, saveState, type DetectionState, type LoadedState } from './saved-state.js';

export type { EngineOptions, InactiveRule, RuleInfo } from './compiler.js';
export type { DetectionState } from './saved-state.js';

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

export class DetectionEngine implements Detector {
  readonly lists: DetectionLists;
  /** The rules that run, in file order. */
  readonly rules: RuleInfo[];
  /** Rules loaded but not running, with the reason (disabled, or a list they need is empty). */
  readonly inactive: InactiveRule[];
  private readonly compiled: CompiledRule[];
  private readonly matchers: Matcher[];
  private readonly index: CandidateIndex<Matcher>;
  private readonly useIndex: boolean;
  private readonly warn: (m: string) => void;
  private readonly warned = new Set<string>();
  private events = 0;
  /** Origins (partitions) whose state a match changed since their last `saveState(origin)`. */
  private readonly changed = new Set<string>();

  constructor(opts: EngineOptions) {
    const c = compileRules(opts);
    this.lists = c.lists;
    this.rules = c.rules;
    this.inactive = c.inactive;
    this.compiled = c.compiled;
    this.matchers = c.matchers;
    this.useIndex = opts.useIndex !== false;
    this.warn = opts.onWarning ?? ((m) => log.warn(m, 'detect-eval'));
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
   * would never be stored. A threshold or sequence that fired is put back as it was before the request that fired
   * it; what the batch counted stays counted, and counting is by request, so the resent events add nothing twice.
   */
  forget(alerts: readonly Alert[]): void {
    for (const a of alerts) {
      for (const r of this.compiled) {
        if (r.info.id !== a.rule) continue;
        r.core.alerted.delete(a.auditID);
        for (const m of r.matchers) m.seen?.delete(a.auditID);
        r.core.threshold?.state.unfire(a.auditID);
        r.core.sequence?.state.unfire(a.auditID);
      }
    }
  }

  /**
   * The detection state (open threshold windows, sequences in progress, requests already handled) as plain data, to
   * be loaded into an engine made later from the same rules (loadState): a restart then loses no open window. Each
   * part is keyed by what defines it, so a rule changed in between starts afresh and the others keep theirs.
   */
  saveState(origin?: string): DetectionState {
    if (origin !== undefined) this.changed.delete(origin);
    return saveState(this.compiled, this.matchers, origin);
  }

  /**
   * Loads what saveState returned (of this engine's rules or an earlier set): the parts whose key this engine has
   * are taken; anything else, or data of another shape, is skipped. Call before the first `detect` (of that origin).
   */
  loadState(data: unknown, origin?: string): LoadedState {
    return loadState(data, this.compiled, this.matchers, origin);
  }

  /** Forgets the state entries `origin` touched last: a partition that moved to another detector. */
  dropState(origin: string): number {
    this.changed.delete(origin);
    return dropState(this.compiled, this.matchers, origin);
  }

  /** Entries the detection state holds (request ids, threshold and sequence keys): each kind is bounded by config. */
  stateEntries(): number {
    return liveEntries(this.compiled, this.matchers);
  }

  /**
   * Bytes the request-id sets hold (reserved: each its whole bound from its first id); threshold and sequence keys,
   * on the heap, are not counted.
   */
  stateBytes(): number {
    return liveIdBytes(this.compiled, this.matchers);
  }

  /** Whether events of `origin` changed the state since its last `saveState(origin)`. */
  stateChanged(origin: string): boolean {
    return this.changed.has(origin);
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
    const cands = this.lookup(e);
    for (let i = 0; i < cands.length; i++) {
      const m = cands[i]!;
      if (m.check(e) && !(noBody && m.bodyless === false)) return true;
    }
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

  /**
   * Runs the rules over events, in order. `origin` (a Kafka partition) tags the state entries the events touch, so
   * that the partition's share can be saved, dropped and loaded on its own when it moves (saveState(origin) ...).
   */
  async detect(events: readonly NormalisedEvent[], origin?: string): Promise<Alert[]> {
    const out: Alert[] = [];
    let matched = false;
    for (let ei = 0; ei < events.length; ei++) {
      const e = events[ei]!;
      this.events++;
      if (!e.event) continue; // dropped by the pipeline because wants() said no rule can use it
      const cands = this.lookup(e);
      if (cands.length === 0) continue;
      // The event's alerts in rule order: members of a matcher come in that order, so sorting is rarely needed.
      let fired: Alert[] | undefined;
      let ordinals: number[] | undefined;
      let inOrder = true;
      const noBody = e.event.requestObject === undefined && e.event.responseObject === undefined;
      for (let ci = 0; ci < cands.length; ci++) {
        const m = cands[ci]!;
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
        matched = true;
        m.seen?.add(e.auditID, e.timeMicros, origin);
        for (let mi = 0; mi < m.members.length; mi++) {
          const mem = m.members[mi]!;
          const r = this.onMatch(mem, e, origin);
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
    if (matched && origin !== undefined) this.changed.add(origin);
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
  private onMatch(mem: Member, e: NormalisedEvent, origin: string | undefined): Alert | undefined | Promise<Alert | undefined> {
    const r = mem.rule;
    const c = r.core;
    let due: Due | null | undefined;
    if (c.lastEvent === e && c.lastStep === mem.step) due = c.lastDue;
    else {
      due = this.decide(c, mem.step, e, origin);
      c.lastEvent = e;
      c.lastStep = mem.step;
      c.lastDue = due;
    }
    if (!due) return undefined;
    r.alerts++;
    return this.alert(r, e, due);
  }

  /** Whether the rule (core) alerts on this event: its state, then once per request. */
  private decide(c: RuleCore, step: number, e: NormalisedEvent, origin: string | undefined): Due | null {
    let due: Due = STATELESS_DUE;
    if (c.threshold) {
      const t = c.threshold;
      const key = keyOf(e, t.by);
      const hit = t.state.add(key, e.timeMicros, t.distinct ? keyOf(e, t.distinct).replace(/\u0001/g, '/') : '', origin, e.auditID);
      if (!hit) return null;
      const k = key.replace(/\u0001/g, ' ');
      due = {
        object: `threshold:${k}`,
        extras: {
          count: hit.count,
          window: t.window,
          key: k,
          extra: {
            count: hit.count,
            window: t.window,
            firstTime: new Date(Math.floor(hit.firstUs / 1000)).toISOString(),
            ...(hit.values ? { values: hit.values.slice(0, 50) } : {}),
          },
        },
      };
    } else if (c.sequence) {
      const s = c.sequence;
      const key = keyOf(e, s.by);
      const done = s.state.advance(key, step, e.timeMicros, e.auditID, origin);
      if (!done) return null;
      const k = key.replace(/\u0001/g, ' ');
      due = {
        object: `sequence:${k}`,
        extras: {
          window: s.within,
          key: k,
          extra: { steps: done.ids.map((id, i) => ({ step: s.steps[i], auditID: id, time: new Date(Math.floor(done.times[i]! / 1000)).toISOString() })) },
        },
      };
    }
    return c.alerted.add(e.auditID, e.timeMicros, origin) ? due : null;
  }

  /** The alert of rule `r` for event `e` (see presentAlert: shared work is done once per event and decision). */
  private alert(r: CompiledRule, e: NormalisedEvent, due: Due): Alert | Promise<Alert> {
    return presentAlert(r.presenter, r.info.id, e, due, this.warn);
  }
}
