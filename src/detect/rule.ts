/**
 * Rule files: YAML in detections/ (or a directory given with --rules). Each file may hold `rules:` (a list) and
 * `lists:` (shared, overridable name lists). This module reads and checks their shape, keeping the file and line of
 * every rule and example so that errors, lint findings and example failures point at the source.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { LineCounter, Node as YamlNode } from 'yaml';
import { isObject as isObj } from '../config/values.js';
import { KauditError } from '../errors.js';
import { STAGES, type Stage } from '../events/types.js';
import { SEVERITIES, type Severity } from './alert.js';
import { IDENTITY_KEYS, SHIPPED_EXCEPTION_KEYS, type ShippedException } from './exceptions.js';
import { isKeyField, KEY_FIELDS } from './key-fields.js';
import { IDENTITIES, OUTCOMES, withDefaultOutcome, type FieldFilter, type Identity, type MatchSpec, type Outcome } from './match-spec.js';
import type { ExpressionFacts } from './expression-facts.js';
import { buildRoot, ruleCacheKey, ruleCacheStamps, stampsHold, type FileStamp } from './rule-cache-key.js';

/*
 * The YAML parser is loaded when a rule file is parsed, not when this module is: a start whose rules all come from
 * the rule cache never needs it (loading its 70 modules was ~40 ms of every `kaudit ingest`'s start-up).
 */
let yamlModule: typeof import('yaml') | undefined;
function yaml(): typeof import('yaml') {
  return (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));
}
const isMap = (n: unknown) => yaml().isMap(n);
const isSeq = (n: unknown) => yaml().isSeq(n);

export type Level = 'Metadata' | 'Request' | 'RequestResponse';
export const RULE_LEVELS: readonly Level[] = ['Metadata', 'Request', 'RequestResponse'];

export { IDENTITIES, OUTCOMES, withDefaultOutcome };
export type { FieldFilter, Identity, MatchSpec, Outcome };

export interface ThresholdSpec {
  /** Fields the count is kept per: user, namespace, sourceIP, resource, name, userAgent, cluster. */
  by: string[];
  count: number;
  /** Count distinct values of these fields (e.g. [namespace, name]) instead of events. */
  distinct?: string[];
  window: string;
}

export interface StepSpec {
  name: string;
  match?: MatchSpec;
  condition?: string;
}

export interface SequenceSpec {
  by: string[];
  within: string;
  steps: StepSpec[];
}

export interface EscalateSpec {
  severity: Severity;
  when: MatchSpec;
}

export interface ExampleCase {
  name?: string;
  /** Partial audit events; defaults fill the rest (see examples.ts). */
  events: Record<string, unknown>[];
  /** Alerts of this rule the case must raise (fire cases; default 1). */
  count?: number;
  /** List values for this case (for rules that need a configured list). */
  lists?: Record<string, string[]>;
  line: number;
}

export interface RuleSpec {
  id: string;
  title: string;
  description: string;
  severity: Severity;
  tags: string[];
  summary?: string;
  match?: MatchSpec;
  condition?: string;
  details?: Record<string, string>;
  /** Explicit audit level the rule needs; derived from what it reads when absent. */
  level?: Level;
  threshold?: ThresholdSpec;
  sequence?: SequenceSpec;
  escalate?: EscalateSpec[];
  /** Lists that must be non-empty for the rule to run (allowlists the user configures). */
  requires?: string[];
  /** Routine traffic the rule stays quiet on (see exceptions.ts); the config can remove them by name. */
  exceptions?: ShippedException[];
  enabled: boolean;
  examples: { fire: ExampleCase[]; quiet: ExampleCase[] };
  file: string;
  line: number;
}

export interface ListSpec {
  name: string;
  items: string[];
  description?: string;
  file: string;
  line: number;
}

export interface RuleIssue {
  level: 'error' | 'warning';
  file: string;
  line?: number;
  rule?: string;
  message: string;
}

export interface RuleSet {
  rules: RuleSpec[];
  lists: Map<string, ListSpec>;
  issues: RuleIssue[];
  /** Facts about the rules' expressions, by their text, when they came from the rule cache (expression-facts.ts). */
  expressions?: ReadonlyMap<string, ExpressionFacts>;
}

export class RuleLoadError extends KauditError {
  constructor(readonly issues: RuleIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'RuleLoadError';
  }
}

export function formatIssue(i: RuleIssue): string {
  const at = i.line !== undefined ? `${i.file}:${i.line}` : i.file;
  return `${at}: ${i.level}: ${i.rule ? `rule ${i.rule}: ` : ''}${i.message}`;
}

const RULE_KEYS = [
  'id',
  'title',
  'description',
  'severity',
  'tags',
  'summary',
  'match',
  'condition',
  'details',
  'level',
  'threshold',
  'sequence',
  'escalate',
  'requires',
  'exceptions',
  'enabled',
  'examples',
];
const MATCH_KEYS = [
  'verbs',
  'resources',
  'nonResourceURLs',
  'stages',
  'users',
  'groups',
  'namespaces',
  'names',
  'userAgents',
  'paths',
  'identity',
  'codes',
  'decision',
  'impersonated',
  'outcome',
  'admission',
];
const ID = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

class Checker {
  constructor(
    readonly file: string,
    readonly issues: RuleIssue[],
    readonly line: number,
    readonly rule?: string,
  ) {}
  error(message: string, line = this.line): void {
    this.issues.push({ level: 'error', file: this.file, line, rule: this.rule, message });
  }
  strings(v: unknown, where: string): string[] | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'string') return [v];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' && typeof x !== 'number')) {
      this.error(`${where} must be a list of strings`);
      return undefined;
    }
    return v.map(String);
  }
  filter(v: unknown, where: string): FieldFilter | undefined {
    if (v === undefined) return undefined;
    if (Array.isArray(v) || typeof v === 'string') {
      const inc = this.strings(v, where);
      return inc ? { include: inc } : undefined;
    }
    if (!isObj(v)) {
      this.error(`${where} must be a list or {include, exclude}`);
      return undefined;
    }
    for (const k of Object.keys(v)) if (k !== 'include' && k !== 'exclude') this.error(`${where}: unknown key "${k}" (include, exclude)`);
    const f: FieldFilter = {};
    const inc = this.strings(v.include, `${where}.include`);
    const exc = this.strings(v.exclude, `${where}.exclude`);
    if (inc) f.include = inc;
    if (exc) f.exclude = exc;
    return f;
  }
  match(v: unknown, where: string): MatchSpec | undefined {
    if (v === undefined) return undefined;
    if (!isObj(v)) {
      this.error(`${where} must be a mapping`);
      return undefined;
    }
    const m: MatchSpec = {};
    for (const k of Object.keys(v)) if (!MATCH_KEYS.includes(k)) this.error(`${where}: unknown key "${k}" (expected one of ${MATCH_KEYS.join(', ')})`);
    const verbs = this.strings(v.verbs, `${where}.verbs`);
    if (verbs) m.verbs = verbs;
    const res = this.strings(v.resources, `${where}.resources`);
    if (res) m.resources = res;
    const nru = this.strings(v.nonResourceURLs, `${where}.nonResourceURLs`);
    if (nru) m.nonResourceURLs = nru;
    const stages = this.strings(v.stages, `${where}.stages`);
    if (stages) {
      const bad = stages.filter((s) => !(STAGES as readonly string[]).includes(s));
      if (bad.length) this.error(`${where}.stages: ${bad.join(', ')} is not a stage (${STAGES.join(', ')})`);
      else m.stages = stages as Stage[];
    }
    for (const k of ['users', 'groups', 'namespaces', 'names', 'userAgents', 'paths'] as const) {
      const f = this.filter(v[k], `${where}.${k}`);
      if (f) m[k] = f;
    }
    if (v.identity !== undefined) {
      if (!(IDENTITIES as readonly string[]).includes(v.identity as string)) this.error(`${where}.identity must be one of ${IDENTITIES.join(', ')}`);
      else m.identity = v.identity as Identity;
    }
    if (v.codes !== undefined) {
      const codes = Array.isArray(v.codes) ? v.codes : [v.codes];
      if (codes.some((c) => !(typeof c === 'number' && Number.isInteger(c)) && !(typeof c === 'string' && /^[1-5](xx|\d\d)$/.test(c)))) {
        this.error(`${where}.codes must be response codes (201) or classes ("2xx")`);
      } else m.codes = codes as (number | string)[];
    }
    if (v.decision !== undefined) {
      if (v.decision !== 'allow' && v.decision !== 'forbid') this.error(`${where}.decision must be allow or forbid`);
      else m.decision = v.decision;
    }
    for (const k of ['impersonated', 'admission'] as const) {
      if (v[k] === undefined) continue;
      if (typeof v[k] !== 'boolean') this.error(`${where}.${k} must be true or false`);
      else m[k] = v[k];
    }
    if (v.outcome !== undefined) {
      if (!(OUTCOMES as readonly string[]).includes(v.outcome as string)) this.error(`${where}.outcome must be one of ${OUTCOMES.join(', ')}`);
      else m.outcome = v.outcome as Outcome;
    }
    return m;
  }
  keyFields(v: unknown, where: string): string[] | undefined {
    const f = this.strings(v, where);
    if (!f) return undefined;
    const bad = f.filter((x) => !isKeyField(x));
    if (bad.length) this.error(`${where}: unknown field ${bad.join(', ')} (one of ${KEY_FIELDS.join(', ')})`);
    return f;
  }
}

function lineOfNode(node: unknown, lc: LineCounter): number | undefined {
  const r = (node as YamlNode | undefined)?.range;
  return r ? lc.linePos(r[0]).line : undefined;
}

function parseExamples(c: Checker, v: unknown, node: unknown, lc: LineCounter): { fire: ExampleCase[]; quiet: ExampleCase[] } {
  const out = { fire: [] as ExampleCase[], quiet: [] as ExampleCase[] };
  if (v === undefined) return out;
  if (!isObj(v)) {
    c.error('examples must be a mapping with fire and quiet lists');
    return out;
  }
  for (const k of Object.keys(v)) if (k !== 'fire' && k !== 'quiet') c.error(`examples: unknown key "${k}" (fire, quiet)`);
  for (const kind of ['fire', 'quiet'] as const) {
    const list = v[kind];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      c.error(`examples.${kind} must be a list`);
      continue;
    }
    const seqNode = isMap(node) ? node.get(kind, true) : undefined;
    list.forEach((item, i) => {
      const itemNode = isSeq(seqNode) ? seqNode.items[i] : undefined;
      const line = lineOfNode(itemNode, lc) ?? c.line;
      if (!isObj(item)) {
        c.error(`examples.${kind}[${i}] must be an event or {events: [...]}`, line);
        return;
      }
      if (Array.isArray(item.events)) {
        for (const k of Object.keys(item))
          if (!['name', 'events', 'count', 'lists'].includes(k)) c.error(`examples.${kind}[${i}]: unknown key "${k}" (name, events, count, lists)`, line);
        const ex: ExampleCase = { events: item.events as Record<string, unknown>[], line };
        if (item.events.some((e) => !isObj(e))) c.error(`examples.${kind}[${i}].events must be a list of events`, line);
        if (typeof item.name === 'string') ex.name = item.name;
        if (item.count !== undefined) {
          if (!Number.isInteger(item.count) || (item.count as number) < 0) c.error(`examples.${kind}[${i}].count must be a whole number`, line);
          else ex.count = item.count as number;
        }
        if (item.lists !== undefined) {
          if (!isObj(item.lists)) c.error(`examples.${kind}[${i}].lists must map list names to lists`, line);
          else {
            ex.lists = {};
            for (const [n, l] of Object.entries(item.lists)) ex.lists[n] = c.strings(l, `examples.${kind}[${i}].lists.${n}`) ?? [];
          }
        }
        out[kind].push(ex);
      } else {
        const { name, ...event } = item;
        out[kind].push({ events: [event], line, ...(typeof name === 'string' ? { name } : {}) });
      }
    });
  }
  return out;
}

/**
 * A rule's `exceptions:` list. Each needs a name, a reason, and a user or group: who the traffic comes from is what
 * the apiserver authenticated; a namespace, a name or an image alone never suppresses.
 */
function parseShippedExceptions(c: Checker, v: unknown): ShippedException[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) {
    c.error('exceptions must be a list of {name, reason, users, groups, namespaces, names, images, owners, verbs}');
    return undefined;
  }
  const out: ShippedException[] = [];
  const names = new Set<string>();
  v.forEach((x, i) => {
    const where = `exceptions[${i}]`;
    if (!isObj(x)) return c.error(`${where} must be a mapping`);
    for (const k of Object.keys(x))
      if (!(SHIPPED_EXCEPTION_KEYS as readonly string[]).includes(k)) c.error(`${where}: unknown key "${k}" (${SHIPPED_EXCEPTION_KEYS.join(', ')})`);
    if (typeof x.name !== 'string' || !ID.test(x.name)) return c.error(`${where}.name must be a kebab-case id`);
    if (names.has(x.name)) return c.error(`${where}: duplicate exception name ${x.name}`);
    names.add(x.name);
    if (typeof x.reason !== 'string' || !x.reason.trim()) return c.error(`${where}.reason is required: say why this traffic is routine`);
    if (!IDENTITY_KEYS.some((k) => x[k] !== undefined))
      return c.error(`${where} must name users or groups: an exception never rests on a namespace, name or image alone`);
    const ex: ShippedException = { name: x.name, reason: x.reason.trim().replace(/\s+/g, ' ') };
    for (const k of ['users', 'groups', 'namespaces', 'names', 'images', 'owners', 'verbs'] as const) {
      const l = c.strings(x[k], `${where}.${k}`);
      if (l) ex[k] = l;
    }
    out.push(ex);
  });
  return out;
}

function parseRule(v: unknown, node: unknown, file: string, lc: LineCounter, issues: RuleIssue[]): RuleSpec | undefined {
  const line = lineOfNode(node, lc) ?? 1;
  if (!isObj(v)) {
    issues.push({ level: 'error', file, line, message: 'a rule must be a mapping' });
    return undefined;
  }
  const id = typeof v.id === 'string' ? v.id : undefined;
  const c = new Checker(file, issues, line, id);
  if (!id) c.error('rule has no id');
  else if (!ID.test(id)) c.error(`id "${id}" must be kebab-case (lowercase letters, digits and dashes)`);
  for (const k of Object.keys(v)) if (!RULE_KEYS.includes(k)) c.error(`unknown key "${k}" (expected one of ${RULE_KEYS.join(', ')})`);
  if (typeof v.title !== 'string' || !v.title) c.error('title is required');
  if (v.description !== undefined && typeof v.description !== 'string') c.error('description must be text');
  if (!(SEVERITIES as readonly string[]).includes(v.severity as string)) c.error(`severity must be one of ${SEVERITIES.join(', ')}`);
  const tags = c.strings(v.tags ?? [], 'tags') ?? [];
  if (v.summary !== undefined && typeof v.summary !== 'string') c.error('summary must be a template string');
  if (v.condition !== undefined && typeof v.condition !== 'string') c.error('condition must be a JSONata expression (a string)');
  let details: Record<string, string> | undefined;
  if (v.details !== undefined) {
    if (!isObj(v.details) || Object.values(v.details).some((x) => typeof x !== 'string')) c.error('details must map names to JSONata expressions');
    else details = v.details as Record<string, string>;
  }
  if (v.level !== undefined && !(RULE_LEVELS as readonly string[]).includes(v.level as string)) c.error(`level must be one of ${RULE_LEVELS.join(', ')}`);
  if (v.enabled !== undefined && typeof v.enabled !== 'boolean') c.error('enabled must be true or false');
  const parsedMatch = c.match(v.match, 'match');
  const match = parsedMatch ? withDefaultOutcome(parsedMatch) : undefined;
  let threshold: ThresholdSpec | undefined;
  if (v.threshold !== undefined) {
    const t = v.threshold;
    if (!isObj(t)) c.error('threshold must be a mapping (by, count, distinct, window)');
    else {
      for (const k of Object.keys(t)) if (!['by', 'count', 'distinct', 'window'].includes(k)) c.error(`threshold: unknown key "${k}"`);
      const by = c.keyFields(t.by ?? ['user'], 'threshold.by') ?? ['user'];
      if (!Number.isInteger(t.count) || (t.count as number) < 1) c.error('threshold.count must be a positive integer');
      if (typeof t.window !== 'string' && typeof t.window !== 'number') c.error('threshold.window is required (e.g. 10m)');
      const distinct = t.distinct !== undefined ? c.keyFields(t.distinct, 'threshold.distinct') : undefined;
      threshold = { by, count: t.count as number, window: String(t.window), ...(distinct ? { distinct } : {}) };
    }
  }
  let sequence: SequenceSpec | undefined;
  if (v.sequence !== undefined) {
    const s = v.sequence;
    if (!isObj(s)) c.error('sequence must be a mapping (by, within, steps)');
    else {
      for (const k of Object.keys(s)) if (!['by', 'within', 'steps'].includes(k)) c.error(`sequence: unknown key "${k}"`);
      const by = c.keyFields(s.by ?? ['user'], 'sequence.by') ?? ['user'];
      if (typeof s.within !== 'string' && typeof s.within !== 'number') c.error('sequence.within is required (e.g. 5m)');
      const steps: StepSpec[] = [];
      if (!Array.isArray(s.steps) || s.steps.length < 2) c.error('sequence.steps must list at least two steps');
      else
        s.steps.forEach((st, i) => {
          if (!isObj(st)) return c.error(`sequence.steps[${i}] must be a mapping (name, match, condition)`);
          for (const k of Object.keys(st)) if (!['name', 'match', 'condition'].includes(k)) c.error(`sequence.steps[${i}]: unknown key "${k}"`);
          if (st.condition !== undefined && typeof st.condition !== 'string') c.error(`sequence.steps[${i}].condition must be a JSONata expression`);
          const sm = c.match(st.match, `sequence.steps[${i}].match`);
          const m = sm ? withDefaultOutcome(sm) : undefined;
          steps.push({
            name: typeof st.name === 'string' ? st.name : `step ${i + 1}`,
            ...(m ? { match: m } : {}),
            ...(typeof st.condition === 'string' ? { condition: st.condition } : {}),
          });
        });
      sequence = { by, within: String(s.within), steps };
    }
    if (v.match !== undefined || v.condition !== undefined) c.error('a sequence rule puts match and condition in its steps');
    if (threshold) c.error('a rule is either a threshold or a sequence, not both');
  }
  let escalate: EscalateSpec[] | undefined;
  if (v.escalate !== undefined) {
    if (!Array.isArray(v.escalate)) c.error('escalate must be a list of {severity, when}');
    else
      escalate = v.escalate.flatMap((x, i) => {
        if (!isObj(x) || !(SEVERITIES as readonly string[]).includes(x.severity as string)) {
          c.error(`escalate[${i}] needs a severity and a when`);
          return [];
        }
        const when = c.match(x.when, `escalate[${i}].when`) ?? {};
        return [{ severity: x.severity as Severity, when }];
      });
  }
  const requires = c.strings(v.requires, 'requires');
  const exceptions = parseShippedExceptions(c, v.exceptions);
  const exNode = isMap(node) ? node.get('examples', true) : undefined;
  const examples = parseExamples(c, v.examples, exNode, lc);
  if (!id) return undefined;
  return {
    id,
    title: String(v.title ?? id),
    description: typeof v.description === 'string' ? v.description.trim() : '',
    severity: ((SEVERITIES as readonly string[]).includes(v.severity as string) ? v.severity : 'medium') as Severity,
    tags,
    ...(typeof v.summary === 'string' ? { summary: v.summary.trim() } : {}),
    ...(match ? { match } : {}),
    ...(typeof v.condition === 'string' ? { condition: v.condition.trim() } : {}),
    ...(details ? { details } : {}),
    ...((RULE_LEVELS as readonly string[]).includes(v.level as string) ? { level: v.level as Level } : {}),
    ...(threshold ? { threshold } : {}),
    ...(sequence ? { sequence } : {}),
    ...(escalate ? { escalate } : {}),
    ...(requires ? { requires } : {}),
    ...(exceptions ? { exceptions } : {}),
    enabled: v.enabled !== false,
    examples,
    file,
    line,
  };
}

/** Parses one rule file's text. */
export function parseRuleFile(text: string, file: string, into: RuleSet): void {
  const lc = new (yaml().LineCounter)();
  const doc = yaml().parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) into.issues.push({ level: 'error', file, line: e.linePos?.[0]?.line, message: `not valid YAML: ${e.message.split('\n')[0]}` });
    return;
  }
  const v = doc.toJS() as unknown;
  if (v === null || v === undefined) return;
  if (!isObj(v)) {
    into.issues.push({ level: 'error', file, line: 1, message: 'a rule file must be a mapping with rules: and/or lists:' });
    return;
  }
  for (const k of Object.keys(v)) {
    if (k !== 'rules' && k !== 'lists')
      into.issues.push({ level: 'error', file, line: lineOfNode(doc.get(k, true), lc), message: `unknown top-level key "${k}" (rules, lists)` });
  }
  if (v.lists !== undefined) {
    const listsNode = doc.get('lists', true);
    if (!isObj(v.lists)) into.issues.push({ level: 'error', file, line: lineOfNode(listsNode, lc), message: 'lists must map list names to lists of strings' });
    else
      for (const [name, items] of Object.entries(v.lists)) {
        const line = lineOfNode(isMap(listsNode) ? listsNode.get(name, true) : undefined, lc) ?? 1;
        let list: unknown = items;
        let description: string | undefined;
        if (isObj(items)) {
          description = typeof items.description === 'string' ? items.description : undefined;
          list = items.items;
        }
        if (!ID.test(name)) into.issues.push({ level: 'error', file, line, message: `list name "${name}" must be kebab-case` });
        if (list === null) list = [];
        if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' && typeof x !== 'number')) {
          into.issues.push({ level: 'error', file, line, message: `list ${name} must be a list of strings (or {description, items})` });
          continue;
        }
        const prev = into.lists.get(name);
        if (prev) into.issues.push({ level: 'error', file, line, message: `list ${name} is already defined at ${prev.file}:${prev.line}` });
        else into.lists.set(name, { name, items: list.map(String), file, line, ...(description ? { description } : {}) });
      }
  }
  if (v.rules !== undefined) {
    const rulesNode = doc.get('rules', true);
    if (!Array.isArray(v.rules)) {
      into.issues.push({ level: 'error', file, line: lineOfNode(rulesNode, lc), message: 'rules must be a list' });
      return;
    }
    v.rules.forEach((r, i) => {
      const node = isSeq(rulesNode) ? rulesNode.items[i] : undefined;
      const spec = parseRule(r, node, file, lc, into.issues);
      if (spec) into.rules.push(spec);
    });
  }
}

/** Reads every `*.yaml`/`*.yml` file of a rules directory (sorted by name), or one file. */
export function loadRuleSet(path: string, cache: RuleCache | undefined = bundledRuleCache()): RuleSet {
  const set: RuleSet = { rules: [], lists: new Map(), issues: [] };
  let files: string[];
  try {
    files = ruleFiles(path);
  } catch (e) {
    set.issues.push({ level: 'error', file: path, message: `cannot read rules: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
    return set;
  }
  if (files.length === 0) set.issues.push({ level: 'error', file: path, message: 'no rule files (*.yaml) in this directory' });
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      set.issues.push({ level: 'error', file: f, message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      continue;
    }
    const hit = cache?.files[contentKey(text)];
    if (hit) {
      addCachedFile(hit, f, set);
      if (cache?.expressions) set.expressions ??= new Map(Object.entries(cache.expressions));
    } else parseRuleFile(text, f, set);
  }
  const seen = new Map<string, RuleSpec>();
  for (const r of set.rules) {
    const prev = seen.get(r.id);
    if (prev) set.issues.push({ level: 'error', file: r.file, line: r.line, rule: r.id, message: `duplicate id: also defined at ${prev.file}:${prev.line}` });
    else seen.set(r.id, r);
  }
  return set;
}

function ruleFiles(path: string): string[] {
  return statSync(path).isDirectory()
    ? readdirSync(path)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
        .map((f) => join(path, f))
    : [path];
}

/*
 * The rule cache. Parsing the bundled rule files' YAML took ~0.25 s of every start (and the optimising compiler
 * another ~0.5 s of CPU on the parser's functions), more than the rest of the detector together. The build parses
 * them once and keeps the result (dist/rule-cache.json); a start takes a file's rules from there when the file's text
 * is exactly what was parsed, and parses any other file as usual. The cache is only used by the code that wrote it
 * (`parser`: the validity key of rule-cache-key.ts, which covers the reader, the compiler and what they import, and
 * the versions of yaml and jsonata), and only holds files that parsed without a single issue, so that a rule file's
 * problems are always found by reading it.
 */

/** A rule file that parsed with no issue: its lists and rules, without the file's path (set again when used). */
interface CachedRuleFile {
  lists: Omit<ListSpec, 'file'>[];
  rules: Omit<RuleSpec, 'file'>[];
}

export interface RuleCache {
  parser: string;
  /** The files `parser` was computed from, as the build found them (see FileStamp). */
  stamps?: FileStamp[];
  /** By the SHA-256 of the file's text. */
  files: Record<string, CachedRuleFile>;
  /** The cached rules' expressions' facts, by the expression's text (added by build-rule-cache.ts). */
  expressions?: Record<string, ExpressionFacts>;
}

function contentKey(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** This build's identity for the cache (see rule-cache-key.ts). */
function parserIdentity(): string {
  return ruleCacheKey();
}

const BUNDLED_CACHE = new URL('../rule-cache.json', import.meta.url);

/** The cache the build wrote beside the compiled code, when there is one and this parser wrote it. */
export function bundledRuleCache(): RuleCache | undefined {
  return readRuleCache(fileURLToPath(BUNDLED_CACHE));
}

export function readRuleCache(path: string): RuleCache | undefined {
  let c: RuleCache;
  try {
    c = JSON.parse(readFileSync(path, 'utf8')) as RuleCache;
  } catch {
    return undefined;
  }
  if (!c || typeof c.files !== 'object' || c.files === null) return undefined;
  return (c.stamps && stampsHold(buildRoot, c.stamps)) || c.parser === parserIdentity() ? c : undefined;
}

/** Parses the rule files of `dir` and writes the cache of those with no issue to `out` (default: the bundled cache). */
export function writeRuleCache(dir: string, out = fileURLToPath(BUNDLED_CACHE), cache = ruleCacheOf(dir)): RuleCache {
  writeFileSync(out, JSON.stringify(cache));
  return cache;
}

/** The cache of the rule files of `dir` that parse with no issue. */
export function ruleCacheOf(dir: string): RuleCache {
  const cache: RuleCache = { parser: parserIdentity(), stamps: ruleCacheStamps(), files: {} };
  for (const f of ruleFiles(dir)) {
    const text = readFileSync(f, 'utf8');
    const one: RuleSet = { rules: [], lists: new Map(), issues: [] };
    parseRuleFile(text, f, one);
    if (one.issues.length > 0) continue;
    cache.files[contentKey(text)] = {
      lists: [...one.lists.values()].map(({ file: _, ...l }) => l),
      rules: one.rules.map(({ file: _, ...r }) => r),
    };
  }
  return cache;
}

/** Adds a cached file's lists and rules, as parseRuleFile would have (a list defined by an earlier file is an error). */
function addCachedFile(c: CachedRuleFile, file: string, into: RuleSet): void {
  for (const l of c.lists) {
    const prev = into.lists.get(l.name);
    if (prev) into.issues.push({ level: 'error', file, line: l.line, message: `list ${l.name} is already defined at ${prev.file}:${prev.line}` });
    else into.lists.set(l.name, { ...l, file });
  }
  for (const r of c.rules) into.rules.push({ ...r, file });
}
