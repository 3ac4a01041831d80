/**
 * The candidate index: for each (stage, resource, subresource, verb), the matchers that can match an event with
 * those values, precomputed when the rules are compiled (the idea of Falco's per-event-type rule index). The hot loop
 * does four Map lookups per event and then touches only its candidates; rules about secrets never see a lease
 * renewal. Combinations no rule names fall back to the rules that name nothing in that dimension.
 */
import type { Stage } from '../events/types.js';
import type { IndexPlan } from './match.js';

export interface Indexed {
  plan: IndexPlan;
}

const OTHER = '\u0000other';

interface VerbTable<T> {
  byVerb: Map<string, readonly T[]>;
  other: readonly T[] | undefined;
}

interface ResTable<T> {
  bySub: Map<string, VerbTable<T>>;
  otherSub: VerbTable<T> | undefined;
}

interface StageTable<T> {
  byRes: Map<string, ResTable<T>>;
  otherRes: ResTable<T> | undefined;
  nonRes: VerbTable<T> | undefined;
}

const EMPTY: readonly never[] = Object.freeze([]);

function could(p: IndexPlan, stage: string, res: string, sub: string, verb: string): boolean {
  if (!p.stages.includes(stage as Stage)) return false;
  if (p.verbs !== null && (verb === OTHER || !p.verbs.includes(verb))) return false;
  if (res === '') return p.nonResource;
  if (!p.resourceRequests) return false;
  if (p.resources === null) return true;
  if (res === OTHER) return false;
  return p.resources.some(
    (r) => r.resource === res && (r.subresource === undefined ? sub === '' : r.subresource === '*' || (sub !== OTHER && r.subresource === sub)),
  );
}

const verbTable = <T>(): VerbTable<T> => ({ byVerb: new Map(), other: undefined });
const resTable = <T>(): ResTable<T> => ({ bySub: new Map(), otherSub: undefined });

/**
 * Each list is computed on its first lookup and kept: building every (stage, resource, subresource, verb) list up
 * front tested each rule against some hundred thousand combinations, ~200 ms of every start (a one-event import
 * included), while a log meets a few hundred of them.
 */
export class CandidateIndex<T extends Indexed> {
  private readonly byStage = new Map<string, StageTable<T>>();
  private readonly verbs = new Set<string>();
  private readonly subsByRes = new Map<string, Set<string>>();
  private readonly stages = new Set<string>();
  /** Distinct candidate lists, by their items' positions: equal lists are shared. */
  private readonly shared = new Map<string, readonly T[]>();

  constructor(readonly items: readonly T[]) {
    for (const it of items) {
      for (const s of it.plan.stages) this.stages.add(s);
      for (const v of it.plan.verbs ?? []) this.verbs.add(v);
      for (const r of it.plan.resources ?? []) {
        if (r.resource === '*') continue;
        let subs = this.subsByRes.get(r.resource);
        if (!subs) this.subsByRes.set(r.resource, (subs = new Set([''])));
        if (r.subresource !== undefined && r.subresource !== '*') subs.add(r.subresource);
      }
    }
  }

  /** Distinct candidate lists computed so far (for stats). */
  get tables(): number {
    return this.shared.size;
  }

  private list(stage: string, res: string, sub: string, verb: string): readonly T[] {
    const idx: number[] = [];
    this.items.forEach((it, i) => {
      if (could(it.plan, stage, res, sub, verb)) idx.push(i);
    });
    if (idx.length === 0) return EMPTY;
    const key = idx.join(',');
    let l = this.shared.get(key);
    if (!l) this.shared.set(key, (l = Object.freeze(idx.map((i) => this.items[i]!))));
    return l;
  }

  /**
   * The matchers that can match an event with these values, in the order they were given. Values no rule names
   * (a resource, a subresource of it, a verb) share one list per dimension, as OTHER.
   */
  lookup(stage: string, resource: string, subresource: string, verb: string): readonly T[] {
    let st = this.byStage.get(stage);
    if (!st) {
      if (!this.stages.has(stage)) return EMPTY;
      this.byStage.set(stage, (st = { byRes: new Map(), otherRes: undefined, nonRes: undefined }));
    }
    let res = resource;
    let sub = subresource;
    let vt: VerbTable<T>;
    if (resource === '') {
      vt = st.nonRes ??= verbTable();
      sub = '';
    } else {
      let rt = st.byRes.get(resource);
      if (!rt) {
        if (this.subsByRes.has(resource)) st.byRes.set(resource, (rt = resTable()));
        else {
          rt = st.otherRes ??= resTable();
          res = OTHER;
        }
      }
      let v = rt.bySub.get(subresource);
      if (!v) {
        // A resource no rule names: its subresource cannot matter (see could).
        if (res !== OTHER && this.subsByRes.get(res)!.has(subresource)) rt.bySub.set(subresource, (v = verbTable()));
        else {
          v = rt.otherSub ??= verbTable();
          sub = OTHER;
        }
      }
      vt = v;
    }
    const l = vt.byVerb.get(verb);
    if (l) return l;
    if (this.verbs.has(verb)) {
      const computed = this.list(stage, res, sub, verb);
      vt.byVerb.set(verb, computed);
      return computed;
    }
    return (vt.other ??= this.list(stage, res, sub, OTHER));
  }
}
