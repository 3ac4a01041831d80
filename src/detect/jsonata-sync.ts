/**
 * A synchronous evaluator for the part of JSONata that rule conditions and details use: paths, predicates, operators,
 * conditionals, blocks and variables, array constructors, regex literals, the helpers and JSONata's synchronous
 * functions. JSONata 2's own evaluator is async at every node of the tree (an await, a guard and environment lookups
 * per node), which made it about half of detection's cost; the same tree walked here in plain calls costs a fraction.
 *
 * It follows jsonata 2.x's evaluator step for step (jsonata.js: evaluate, evaluatePath, evaluateStep, evaluateFilter,
 * evaluateBinary, evaluateUnary, ...), including its sequences (arrays flagged `sequence`, `keepSingleton`, `cons`,
 * `outerWrapper`) and how they collapse, so that values come out the same, shape included; the built-in functions are
 * JSONata's own (their implementations and argument signatures, fetched from the library), not copies. What it does not
 * cover is refused when the expression is compiled (the expression then always goes to JSONata): lambdas, partial
 * application, `~>`, wildcards, descendants, parent `%`, sorting, grouping, object constructors, focus and index
 * bindings, ranges, higher-order and asynchronous functions, variables naming functions. At run time anything that
 * throws (a type error, an argument JSONata would refuse) is handed to JSONata, which gives the value or the error of
 * record: this evaluator never decides an error on its own, except a timeout.
 */
import { createRequire } from 'node:module';
import type jsonata from 'jsonata';

type Node = { type: string; value?: unknown } & Record<string, any>;
/** A compiled node: the node's value for an input, in an environment. */
type Eval = (input: unknown, env: Frame) => unknown;
/** A sequence: an array JSONata made (as opposed to one from the data), with its flags. */
type Seq = unknown[] & { sequence?: boolean; keepSingleton?: boolean; cons?: boolean; outerWrapper?: boolean; tupleStream?: boolean };

/** Why an expression is left to JSONata (a construct this evaluator does not cover). */
export class NotCovered extends Error {}

/** An evaluation that ran past its time limit (JSONata's own check is per node; this one is per 1024 nodes). */
export class SyncTimeout extends Error {
  constructor(ms: number) {
    super(`Expression evaluation timeout: Check for infinite loop (after ${ms} ms)`);
  }
}

interface NativeFunction {
  _jsonata_function: true;
  implementation: (...args: unknown[]) => unknown;
  signature?: { validate(args: unknown[], context: unknown): unknown[] };
}

/**
 * JSONata's functions that compute their value synchronously from their arguments. `contains` is here too: JSONata's
 * is async only to await a matcher, and a regex literal's matcher is synchronous (see callContains).
 */
const SYNC_FUNCTIONS = (
  'sum count max min average string substring substringBefore substringAfter lowercase uppercase length trim pad join number floor ' +
  'ceil round abs sqrt power boolean not keys lookup append exists spread merge reverse type distinct base64encode base64decode ' +
  'encodeUrlComponent encodeUrl decodeUrlComponent decodeUrl contains'
).split(' ');

/** Every name JSONata binds in its static frame or per expression: a variable with such a name is a function. */
const JSONATA_NAMES = new Set([
  ...SYNC_FUNCTIONS,
  ...'match replace split formatNumber formatBase formatInteger parseInteger random map zip filter single reduce sift each error assert sort shuffle eval toMillis fromMillis clone now millis'.split(
    ' ',
  ),
]);

const requireHere = createRequire(import.meta.url);
const jsonataLib = requireHere('jsonata') as typeof jsonata;

/**
 * The jsonata release whose evaluator this one follows (package.json pins exactly this version). Another release may
 * evaluate differently, so with any other installed every expression goes to JSONata itself: correct, only slower.
 */
export const MIRRORED_JSONATA_VERSION = '2.2.2';
/** The jsonata release installed. */
export const INSTALLED_JSONATA_VERSION = (requireHere('jsonata/package.json') as { version: string }).version;

/** JSONata's own function objects (implementation and signature), fetched once by evaluating `$name`. */
const natives = new Map<string, NativeFunction>();
for (const name of SYNC_FUNCTIONS) {
  const f = (await jsonataLib('$' + name).evaluate(null)) as NativeFunction | undefined;
  if (!f || f._jsonata_function !== true || typeof f.implementation !== 'function') throw new Error(`jsonata has no function $${name}`);
  natives.set(name, f);
}

function seq(): Seq {
  const s: Seq = [];
  s.sequence = true;
  return s;
}

function seq1(v: unknown): Seq {
  const s = seq();
  s.push(v);
  return s;
}

/** What JSONata's functions get as `this`. */
const FOCUS_BASE = {
  createSequence(...a: unknown[]): Seq {
    return a.length === 1 ? seq1(a[0]) : seq();
  },
};

const nBoolean = natives.get('boolean')!.implementation;
const nString = natives.get('string')!.implementation;
const nLookup = natives.get('lookup')!.implementation;
const nAppend = natives.get('append')!.implementation;

function boolean(v: unknown): boolean | undefined {
  return nBoolean.call(FOCUS_BASE, v) as boolean | undefined;
}

function isSequence(v: unknown): v is Seq {
  return Array.isArray(v) && (v as Seq).sequence === true;
}

function isFunction(v: unknown): boolean {
  return (
    typeof v === 'function' ||
    (typeof v === 'object' && v !== null && ((v as NativeFunction)._jsonata_function === true || (v as { _jsonata_lambda?: boolean })._jsonata_lambda === true))
  );
}

/** JSONata's isNumeric: a number that is not NaN; an infinite one is an error (D1001), here a hand-over. */
function isNumeric(n: unknown): n is number {
  if (typeof n !== 'number' || Number.isNaN(n)) return false;
  if (!Number.isFinite(n)) throw new NotCovered('infinite number');
  return true;
}

function isArrayOfNumbers(v: unknown): boolean {
  return Array.isArray(v) && v.every((x) => isNumeric(x));
}

function isDeepEqual(l: unknown, r: unknown): boolean {
  if (l === r) return true;
  if (typeof l === 'object' && typeof r === 'object' && l !== null && r !== null) {
    if (Array.isArray(l) && Array.isArray(r)) {
      if (l.length !== r.length) return false;
      for (let i = 0; i < l.length; i++) if (!isDeepEqual(l[i], r[i])) return false;
      return true;
    }
    const lk = Object.getOwnPropertyNames(l).sort();
    const rk = Object.getOwnPropertyNames(r).sort();
    if (lk.length !== rk.length) return false;
    for (let i = 0; i < lk.length; i++) if (lk[i] !== rk[i]) return false;
    for (const k of lk) if (!isDeepEqual((l as Record<string, unknown>)[k], (r as Record<string, unknown>)[k])) return false;
    return true;
  }
  return false;
}

/** A scope of variables, as JSONata's frames: a block opens one, `:=` binds in the current one. */
class Frame {
  private readonly vars = new Map<string, unknown>();
  constructor(private readonly parent?: Frame) {}
  bind(name: string, v: unknown): void {
    this.vars.set(name, v);
  }
  lookup(name: string): unknown {
    for (let f: Frame | undefined = this; f; f = f.parent) if (f.vars.has(name)) return f.vars.get(name);
    return undefined;
  }
}

/** Per-evaluation limits (an evaluation is synchronous: one at a time). */
let ticks = 0;
let deadline = 0;
let limitMs = 0;

function tick(): void {
  if ((++ticks & 1023) === 0 && Date.now() > deadline) throw new SyncTimeout(limitMs);
}

/** A helper as the synchronous evaluator calls it: the event (the root) first, then the expression's arguments. */
export type SyncHelper = (root: unknown, ...args: unknown[]) => unknown;

interface Compiler {
  helpers: Record<string, SyncHelper>;
  /** Variables the expression binds with `:=` anywhere (lexical enough: there are no lambdas here). */
  bound: Set<string>;
  depth: number;
}

/** The deepest tree JSONata evaluates under the `stack` limit kaudit sets (400) with room to spare. */
const MAX_DEPTH = 150;

/**
 * Compiles an expression's tree (`jsonata(src).ast()`), or throws NotCovered when it uses something this evaluator
 * does not cover. The function returned evaluates it for a root value within `timeoutMs`; it throws NotCovered (or
 * anything else) when JSONata must decide, SyncTimeout when out of time.
 */
export function compileSync(ast: jsonata.ExprNode, helpers: Record<string, SyncHelper>, timeoutMs: number): (input: unknown) => unknown {
  if (INSTALLED_JSONATA_VERSION !== MIRRORED_JSONATA_VERSION)
    throw new NotCovered(`jsonata ${INSTALLED_JSONATA_VERSION} is installed; this evaluator follows ${MIRRORED_JSONATA_VERSION}`);
  const c: Compiler = { helpers, bound: new Set(), depth: 0 };
  collectBinds(ast as unknown as Node, c.bound);
  for (const b of c.bound) if (helpers[b] || JSONATA_NAMES.has(b) || b === '' || b === '$') throw new NotCovered(`binds $${b}`);
  const root = compile(ast as unknown as Node, c);
  return (input: unknown) => {
    ticks = 0;
    limitMs = timeoutMs;
    deadline = Date.now() + timeoutMs;
    const env = new Frame();
    env.bind('$', input);
    // As jsonata's evaluate(): an array input is one value, wrapped.
    if (Array.isArray(input) && !isSequence(input)) {
      input = seq1(input);
      (input as Seq).outerWrapper = true;
    }
    return root(input, env);
  };
}

function collectBinds(n: unknown, out: Set<string>): void {
  if (Array.isArray(n)) {
    for (const x of n) collectBinds(x, out);
    return;
  }
  if (typeof n !== 'object' || n === null || n instanceof RegExp) return;
  const node = n as Node;
  if (node.type === 'bind' && node.lhs?.type === 'variable') out.add(String(node.lhs.value));
  for (const [k, v] of Object.entries(node)) if (k !== 'position') collectBinds(v, out);
}

/** jsonata's evaluate(): the node, its predicates, and the collapse of the resulting sequence. */
function compile(node: Node, c: Compiler): Eval {
  if (++c.depth > MAX_DEPTH) throw new NotCovered('nested too deeply');
  if (node.group !== undefined) throw new NotCovered('grouping');
  if (node.focus !== undefined || node.index !== undefined || node.tuple !== undefined || node.ancestor !== undefined)
    throw new NotCovered('focus/index binding');
  const core = compileCore(node, c);
  const preds = ((node.predicate ?? []) as Node[]).map((p) => compileFilter(p, c));
  const keepArray = node.keepArray === true;
  c.depth--;
  // A literal is never a sequence, and a variable holds a value this wrapper has already collapsed: without
  // predicates or `[]` the wrapper would hand either back unchanged.
  if (preds.length === 0 && !keepArray && (node.type === 'string' || node.type === 'number' || node.type === 'value' || node.type === 'variable')) return core;
  return (input, env) => {
    tick();
    let result = core(input, env);
    for (const p of preds) result = p(result, env);
    if (result && isSequence(result) && !result.tupleStream) {
      if (keepArray) result.keepSingleton = true;
      if (result.length === 0) result = undefined;
      else if (result.length === 1) result = result.keepSingleton ? result : result[0];
    }
    return result;
  };
}

function compileCore(node: Node, c: Compiler): Eval {
  switch (node.type) {
    case 'path':
      return compilePath(node, c);
    case 'binary':
      return compileBinary(node, c);
    case 'unary':
      return compileUnary(node, c);
    case 'name': {
      const name = String(node.value);
      return (input) => nLookup.call(FOCUS_BASE, input, name);
    }
    case 'string':
    case 'number':
    case 'value': {
      const v = node.value;
      return () => v;
    }
    case 'condition': {
      const cond = compile(node.condition, c);
      const then = compile(node.then, c);
      const otherwise = node.else !== undefined ? compile(node.else, c) : undefined;
      return (input, env) => (boolean(cond(input, env)) ? then(input, env) : otherwise ? otherwise(input, env) : undefined);
    }
    case 'block': {
      const exprs = (node.expressions as Node[]).map((x) => compile(x, c));
      return (input, env) => {
        const frame = new Frame(env);
        let result: unknown;
        for (const x of exprs) result = x(input, frame);
        return result;
      };
    }
    case 'bind': {
      if (node.lhs?.type !== 'variable') throw new NotCovered('bind');
      const name = String(node.lhs.value);
      const rhs = compile(node.rhs, c);
      return (input, env) => {
        const v = rhs(input, env);
        env.bind(name, v);
        return v;
      };
    }
    case 'regex':
      return compileRegex(node);
    case 'function':
      return compileFunction(node, c);
    case 'variable': {
      const name = String(node.value);
      if (name === '') return (input) => (input && (input as Seq).outerWrapper ? (input as Seq)[0] : input);
      if (name !== '$' && !c.bound.has(name) && (c.helpers[name] || JSONATA_NAMES.has(name))) throw new NotCovered(`function $${name} as a value`);
      return (_input, env) => env.lookup(name);
    }
    default:
      throw new NotCovered(node.type);
  }
}

/** jsonata's evaluatePath, for paths without tuple streams (focus, index, ancestors), sorting or grouping. */
function compilePath(node: Node, c: Compiler): Eval {
  const stepNodes = node.steps as Node[];
  if (stepNodes.length === 0) throw new NotCovered('empty path');
  const firstIsVariable = stepNodes[0]!.type === 'variable';
  const firstCons = stepNodes[0]!.consarray === true;
  const steps = stepNodes.map((s) => {
    if (s.type === 'sort') throw new NotCovered('sort');
    const stages = ((s.stages ?? []) as Node[]).map((st) => {
      if (st.type !== 'filter') throw new NotCovered(`stage ${st.type}`);
      return compileFilter(st, c);
    });
    return { ev: compile(s, c), stages };
  });
  const keepSingletonArray = node.keepSingletonArray === true;
  const last = steps.length - 1;
  return (input, env) => {
    let inputSeq: unknown = Array.isArray(input) && !firstIsVariable ? input : seq1(input);
    let resultSeq: any;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      if (i === 0 && firstCons) resultSeq = step.ev(inputSeq, env);
      else resultSeq = evaluateStep(step.ev, step.stages, inputSeq as unknown[], env, i === last);
      if (resultSeq === undefined || resultSeq.length === 0) break;
      inputSeq = resultSeq;
    }
    if (keepSingletonArray) {
      if (Array.isArray(resultSeq) && (resultSeq as Seq).cons && !(resultSeq as Seq).sequence) resultSeq = seq1(resultSeq);
      resultSeq.keepSingleton = true;
    }
    return resultSeq;
  };
}

type Filter = (input: unknown, env: Frame) => Seq | unknown[];

function evaluateStep(ev: Eval, stages: Filter[], input: unknown[], env: Frame, lastStep: boolean): Seq | unknown[] {
  const result = seq();
  for (let i = 0; i < input.length; i++) {
    let res: unknown = ev(input[i], env);
    for (const st of stages) res = st(res, env);
    if (res !== undefined) result.push(res);
  }
  if (lastStep && result.length === 1 && Array.isArray(result[0]) && !isSequence(result[0])) return result[0] as unknown[];
  const out = seq();
  for (const res of result) {
    if (!Array.isArray(res) || (res as Seq).cons) out.push(res);
    else for (const v of res) out.push(v);
  }
  return out;
}

/** jsonata's evaluateFilter: a numeric literal picks by position, anything else keeps items it holds for. */
function compileFilter(p: Node, c: Compiler): Filter {
  const pred = p.expr as Node;
  if (pred.type === 'number') {
    const at = Math.floor(pred.value as number);
    return (input) => {
      let results: Seq | unknown[] = seq();
      const items: unknown[] = Array.isArray(input) ? input : seq1(input);
      const index = at < 0 ? items.length + at : at;
      const item = items[index];
      if (item !== undefined) {
        if (Array.isArray(item)) results = item;
        else results.push(item);
      }
      return results;
    };
  }
  const ev = compile(pred, c);
  return (input, env) => {
    const results = seq();
    if (input && (input as Seq).tupleStream) throw new NotCovered('tuple stream');
    const items: unknown[] = Array.isArray(input) ? input : seq1(input);
    for (let index = 0; index < items.length; index++) {
      const item = items[index];
      let res = ev(item, env);
      if (isNumeric(res)) res = [res];
      if (isArrayOfNumbers(res)) {
        for (const ires of res as number[]) {
          let ii = Math.floor(ires);
          if (ii < 0) ii = items.length + ii;
          if (ii === index) results.push(item);
        }
      } else if (boolean(res)) results.push(item);
    }
    return results;
  };
}

function compileBinary(node: Node, c: Compiler): Eval {
  const op = String(node.value);
  const lhs = compile(node.lhs, c);
  const rhs = compile(node.rhs, c);
  const boolize = (v: unknown) => boolean(v) ?? false;
  switch (op) {
    case 'and':
      return (input, env) => boolize(lhs(input, env)) && boolize(rhs(input, env));
    case 'or':
      return (input, env) => boolize(lhs(input, env)) || boolize(rhs(input, env));
    case '+':
    case '-':
    case '*':
    case '/':
    case '%':
      return (input, env) => numeric(lhs(input, env), rhs(input, env), op);
    case '=':
    case '!=': {
      // Either side undefined: false for both operators.
      const equal = op === '=';
      return (input, env) => {
        const l = lhs(input, env);
        const r = rhs(input, env);
        return l === undefined || r === undefined ? false : isDeepEqual(l, r) === equal;
      };
    }
    case '<':
    case '<=':
    case '>':
    case '>=':
      return (input, env) => compare(lhs(input, env), rhs(input, env), op);
    case '&':
      return (input, env) => {
        const l = lhs(input, env);
        const r = rhs(input, env);
        const ls = l === undefined ? '' : (nString.call(FOCUS_BASE, l) as string);
        const rs = r === undefined ? '' : (nString.call(FOCUS_BASE, r) as string);
        return ls.concat(rs);
      };
    case 'in':
      return (input, env) => {
        const l = lhs(input, env);
        let r = rhs(input, env);
        if (l === undefined || r === undefined) return false;
        if (!Array.isArray(r)) r = [r];
        for (const x of r as unknown[]) if (x === l) return true;
        return false;
      };
    default:
      throw new NotCovered(`operator ${op}`);
  }
}

function numeric(l: unknown, r: unknown, op: string): number | undefined {
  if (l !== undefined && !isNumeric(l)) throw new NotCovered('T2001');
  if (r !== undefined && !isNumeric(r)) throw new NotCovered('T2002');
  if (l === undefined || r === undefined) return undefined;
  const a = l as number;
  const b = r as number;
  switch (op) {
    case '+':
      return a + b;
    case '-':
      return a - b;
    case '*':
      return a * b;
    case '/':
      return a / b;
    default:
      return a % b;
  }
}

function compare(l: unknown, r: unknown, op: string): boolean | undefined {
  const lt = typeof l;
  const rt = typeof r;
  const lok = lt === 'undefined' || lt === 'string' || lt === 'number';
  const rok = rt === 'undefined' || rt === 'string' || rt === 'number';
  if (!lok || !rok) throw new NotCovered('T2010');
  if (lt === 'undefined' || rt === 'undefined') return undefined;
  if (lt !== rt) throw new NotCovered('T2009');
  const a = l as string | number;
  const b = r as string | number;
  return op === '<' ? a < b : op === '<=' ? a <= b : op === '>' ? a > b : a >= b;
}

function compileUnary(node: Node, c: Compiler): Eval {
  if (node.value === '-') {
    const x = compile(node.expression, c);
    return (input, env) => {
      const v = x(input, env);
      if (v === undefined) return undefined;
      if (isNumeric(v)) return -v;
      throw new NotCovered('D1002');
    };
  }
  if (node.value !== '[') throw new NotCovered(`unary ${String(node.value)}`);
  const items = (node.expressions as Node[]).map((item) => {
    // jsonata evaluates an array constructor's items concurrently: bindings inside them are left to it.
    const binds = new Set<string>();
    collectBinds(item, binds);
    if (binds.size > 0) throw new NotCovered('binding inside an array constructor');
    return { ev: compile(item, c), nested: item.value === '[' };
  });
  const cons = node.consarray === true;
  return (input, env) => {
    let result: unknown[] = [];
    for (const it of items) {
      const v = it.ev(input, env);
      if (v === undefined) continue;
      if (it.nested) result.push(v);
      else result = nAppend.call(FOCUS_BASE, result, v) as unknown[];
    }
    if (cons) Object.defineProperty(result, 'cons', { enumerable: false, configurable: false, value: true });
    return result;
  };
}

/** jsonata's evaluateRegex: a matcher function over a copy of the literal. */
function compileRegex(node: Node): Eval {
  const literal = node.value as RegExp;
  return () => {
    const re = new RegExp(literal);
    const closure = (str: string, fromIndex?: number): unknown => {
      re.lastIndex = fromIndex || 0;
      const m = re.exec(str);
      if (m === null) return undefined;
      const result = { match: m[0], start: m.index, end: m.index + m[0].length, groups: m.slice(1), next: () => undefined as unknown };
      result.next = () => {
        if (re.lastIndex >= str.length) return undefined;
        const next = closure(str, re.lastIndex) as { match: string } | undefined;
        if (next && next.match === '') throw new NotCovered('D1004');
        return next;
      };
      return result;
    };
    return closure;
  };
}

function compileFunction(node: Node, c: Compiler): Eval {
  const proc = node.procedure as Node;
  if (proc?.type !== 'variable') throw new NotCovered('computed function');
  const name = String(proc.value);
  if (c.bound.has(name)) throw new NotCovered(`bound function $${name}`);
  const args = (node.arguments as Node[]).map((a) => compile(a, c));
  const helper = c.helpers[name];
  if (helper) {
    return (input, env) => {
      const values: unknown[] = [];
      for (const a of args) {
        const v = a(input, env);
        if (isFunction(v)) throw new NotCovered('function argument to a helper');
        values.push(v);
      }
      return helper(env.lookup('$'), ...values);
    };
  }
  const f = natives.get(name);
  if (!f) throw new NotCovered(`function $${name}`);
  if (name === 'contains') {
    return (input, env) => {
      const [str, token] = f.signature!.validate(
        args.map((a) => a(input, env)),
        input,
      ) as [string | undefined, unknown];
      if (str === undefined || token === undefined) return undefined;
      if (typeof token === 'string') return str.indexOf(token) !== -1;
      // A regex literal's matcher, called as jsonata's evaluateMatcher calls it.
      if (typeof token !== 'function') throw new NotCovered('contains: token');
      const m = token(str) as { start?: unknown; end?: unknown; groups?: unknown; next?: unknown } | undefined;
      if (m && !(typeof m.start === 'number' || Array.isArray(m.groups) || typeof m.next === 'function')) throw new NotCovered('T1010');
      return m !== undefined;
    };
  }
  return (input, env) => {
    const values: unknown[] = [];
    for (const a of args) {
      const v = a(input, env);
      if (isFunction(v)) throw new NotCovered('function argument');
      values.push(v);
    }
    const validated = f.signature ? f.signature.validate(values, input) : values;
    // Of JSONata's functions only $eval reads `this.input`; the ones here need only createSequence.
    const r = f.implementation.apply(FOCUS_BASE, validated);
    if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') throw new NotCovered('async result');
    return r;
  };
}
