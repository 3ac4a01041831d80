/**
 * The candidate index: for each (stage, resource, subresource, verb), the matchers that can match an event with
 * those values, precomputed when the rules are compiled (the idea of Falco's per-event-type rule index). The hot loop
 * does four Map lookups per event and then touches only its candidates; rules about secrets never see a lease
 * renewal. Combinations no rule names fall back to the rules that name nothing in that dimension.
 */
import { STAGES, type Stage } from '../events/types.js';
import type { IndexPlan } from './match.js';

export interface Indexed {
  plan: IndexPlan;
}

const OTHER = '\u0000other';

interface VerbTable<T> {
  byVerb: Map<string, readonly T[]>;
  other: readonly T[];
}

interface ResTable<T> {
  bySub: Map<string, VerbTable<T>>;
  otherSub: VerbTable<T>;
}

interface StageTable<T> {
  byRes: Map<string, ResTable<T>>;
  otherRes: ResTable<T>;
  nonRes: VerbTable<T>;
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

export class CandidateIndex<T extends Indexed> {
  private readonly byStage = new Map<string, StageTable<T>>();
  /** Distinct candidate lists (for stats). */
  readonly tables: number;

  constructor(readonly items: readonly T[]) {
    const verbs = new Set<string>();
    const subsByRes = new Map<string, Set<string>>();
    const stages = new Set<string>();
    for (const it of items) {
      for (const s of it.plan.stages) stages.add(s);
      for (const v of it.plan.verbs ?? []) verbs.add(v);
      for (const r of it.plan.resources ?? []) {
        if (r.resource === '*') continue;
        let subs = subsByRes.get(r.resource);
        if (!subs) subsByRes.set(r.resource, (subs = new Set([''])));
        if (r.subresource !== undefined && r.subresource !== '*') subs.add(r.subresource);
      }
    }
    const shared = new Map<string, readonly T[]>();
    const list = (stage: string, res: string, sub: string, verb: string): readonly T[] => {
      const idx: number[] = [];
      items.forEach((it, i) => {
        if (could(it.plan, stage, res, sub, verb)) idx.push(i);
      });
      if (idx.length === 0) return EMPTY;
      const key = idx.join(',');
      let l = shared.get(key);
      if (!l) shared.set(key, (l = Object.freeze(idx.map((i) => items[i]!))));
      return l;
    };
    const verbTable = (stage: string, res: string, sub: string): VerbTable<T> => {
      const byVerb = new Map<string, readonly T[]>();
      for (const v of verbs) byVerb.set(v, list(stage, res, sub, v));
      return { byVerb, other: list(stage, res, sub, OTHER) };
    };
    const resTable = (stage: string, res: string, subs: Iterable<string>): ResTable<T> => {
      const bySub = new Map<string, VerbTable<T>>();
      for (const s of subs) bySub.set(s, verbTable(stage, res, s));
      return { bySub, otherSub: verbTable(stage, res, OTHER) };
    };
    for (const stage of STAGES) {
      if (!stages.has(stage)) continue;
      const byRes = new Map<string, ResTable<T>>();
      for (const [res, subs] of subsByRes) byRes.set(res, resTable(stage, res, subs));
      this.byStage.set(stage, { byRes, otherRes: resTable(stage, OTHER, ['']), nonRes: verbTable(stage, '', '') });
    }
    this.tables = shared.size;
  }

  /** The matchers that can match an event with these values, in the order they were given. */
  lookup(stage: string, resource: string, subresource: string, verb: string): readonly T[] {
    const st = this.byStage.get(stage);
    if (!st) return EMPTY;
    let vt: VerbTable<T>;
    if (resource === '') vt = st.nonRes;
    else {
      const rt = st.byRes.get(resource) ?? st.otherRes;
      vt = rt.bySub.get(subresource) ?? rt.otherSub;
    }
    return vt.byVerb.get(verb) ?? vt.other;
  }
}
