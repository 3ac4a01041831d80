/**
 * JSONata conditions and details: compiled once per rule, with the shared helper functions registered on every
 * expression, and every evaluation bounded in time and depth. The input of an expression is the (redacted) audit
 * event; helpers read facts about it computed once per event in JavaScript (facts.ts).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type jsonata from 'jsonata';
import type { AuditEvent } from '../events/types.js';
import type { ExpressionFacts } from './expression-facts.js';
import type { DetectionLists } from './lists.js';
import { compileSync, NotCovered, SyncTimeout, type SyncHelper } from './jsonata-sync.js';
import { EVENT_FIELDS, HELPERS, JSONATA_FUNCTIONS, type BodyRead } from './expression-helpers.js';

export { EVENT_FIELDS, HELPERS, JSONATA_FUNCTIONS, type BodyRead };

/**
 * jsonata by require, not import: an ES import of a CommonJS module first scans its source for export names, and
 * scanning jsonata's 300 KB cost ~50 ms of every detecting command's start and ~0.2 s of the optimising compiler's
 * CPU (the scanner ran long enough to be optimised three times). Required when an expression is first parsed: with
 * the rule cache's expression facts, a start parses none.
 */
let jsonataLib: typeof jsonata | undefined;
const compileJsonata = (source: string, opts: jsonata.JsonataOptions): jsonata.Expression =>
  (jsonataLib ??= createRequire(import.meta.url)('jsonata') as typeof jsonata)(source, opts);

export class ExpressionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExpressionError';
  }
}

export interface ExpressionAnalysis {
  /** Bodies the expression reads (directly or through helpers). */
  reads: Set<BodyRead>;
  /** Event fields read at the top level (for lint). */
  rootFields: Set<string>;
  /** Functions called. */
  functions: Set<string>;
  /** Lists named by literal arguments of list helpers. */
  lists: Set<string>;
  /** Variables referenced that are not bound in the expression. */
  freeVariables: Set<string>;
  /** Functions called that are neither helpers, JSONata's own, nor bound in the expression. */
  unknownFunctions: Set<string>;
}

type AstNode = Omit<jsonata.ExprNode, 'type'> & { type: string } & Record<string, unknown>;

/** Walks a JSONata AST and reports what it reads and calls. */
export function analyse(ast: jsonata.ExprNode): ExpressionAnalysis {
  const a: ExpressionAnalysis = {
    reads: new Set(),
    rootFields: new Set(),
    functions: new Set(),
    lists: new Set(),
    freeVariables: new Set(),
    unknownFunctions: new Set(),
  };
  const bound = new Set<string>(['', '$']);
  const visit = (n: unknown, atRoot: boolean): void => {
    if (Array.isArray(n)) {
      for (const x of n) visit(x, atRoot);
      return;
    }
    if (typeof n !== 'object' || n === null) return;
    const node = n as AstNode;
    switch (node.type) {
      case 'name': {
        const v = String(node.value);
        if (v === 'requestObject' || v === 'responseObject') a.reads.add(v);
        if (atRoot) a.rootFields.add(v);
        visitChildren(node, false);
        return;
      }
      case 'path': {
        const steps = (node.steps ?? []) as unknown[];
        steps.forEach((s, i) => visit(s, atRoot && i === 0));
        return;
      }
      case 'variable': {
        const v = String(node.value);
        if (!bound.has(v) && !HELPERS[v] && !JSONATA_FUNCTIONS.has(v)) a.freeVariables.add(v);
        visitChildren(node, false);
        return;
      }
      case 'bind': {
        const lhs = node.lhs as AstNode | undefined;
        if (lhs && lhs.type === 'variable') bound.add(String(lhs.value));
        visit(node.rhs, atRoot);
        return;
      }
      case 'lambda': {
        for (const arg of (node.arguments ?? []) as AstNode[]) if (arg.type === 'variable') bound.add(String(arg.value));
        visit(node.body, false);
        return;
      }
      case 'function':
      case 'partial': {
        const proc = node.procedure as AstNode | undefined;
        if (proc && proc.type === 'variable') {
          const name = String(proc.value);
          a.functions.add(name);
          const h = HELPERS[name];
          if (!h && !JSONATA_FUNCTIONS.has(name)) a.unknownFunctions.add(name);
          if (h?.reads) a.reads.add(h.reads);
          const args = (node.arguments ?? []) as AstNode[];
          for (const i of h?.listArgs ?? []) {
            const arg = args[i];
            if (arg && arg.type === 'string') a.lists.add(String(arg.value));
          }
        } else visit(proc, atRoot);
        visit(node.arguments, atRoot);
        visitChildren(node, false, ['procedure', 'arguments']);
        return;
      }
      default:
        visitChildren(node, atRoot);
    }
  };
  const visitChildren = (node: AstNode, atRoot: boolean, skip: string[] = []): void => {
    for (const [k, v] of Object.entries(node)) {
      if (k === 'position' || k === 'type' || k === 'value' || skip.includes(k)) continue;
      // Predicates, filters and grouping run relative to the step's items, not the event.
      const nested = k === 'stages' || k === 'predicate' || k === 'group' || k === 'focus' || k === 'tuple';
      visit(v, nested ? false : atRoot);
    }
  };
  visit(ast, true);
  // A variable bound anywhere counts as bound (JSONata scoping is lexical; lint only needs the typo case).
  for (const v of [...a.freeVariables]) if (bound.has(v)) a.freeVariables.delete(v);
  for (const v of [...a.unknownFunctions]) if (bound.has(v)) a.unknownFunctions.delete(v);
  return a;
}

/** Helpers that read only the request and response bodies: all of them give nothing for an event without bodies. */
const BODY_HELPERS = new Set(
  Object.entries(HELPERS)
    .filter(([, h]) => h.reads)
    .map(([n]) => n),
);
/** Helpers that read only their arguments. */
const PURE_HELPERS = new Set(['list', 'inList', 'allInList', 'notInList', 'pathUnder', 'textMatch', 'glob']);
/** JSONata functions whose value does not follow from their arguments alone. */
const IMPURE_FUNCTIONS = new Set(['now', 'millis', 'random', 'eval']);

/**
 * True when the expression reads nothing of the event but its request and response bodies (directly, or through
 * the body helpers), so its value for any event without either body is one constant. Conservative: any construct not
 * known to keep to that (the context `$` or root `$$` at the top level, lambdas, wildcards, the parent operator,
 * functions called on the implicit context, impure functions) makes it false.
 */
export function readsOnlyBodies(ast: jsonata.ExprNode): boolean {
  const ok = (n: unknown, atRoot: boolean): boolean => {
    if (Array.isArray(n)) return n.every((x) => ok(x, atRoot));
    if (typeof n !== 'object' || n === null) return true;
    const node = n as AstNode;
    // Grouping, focus and index bindings and positional steps: not worth reasoning about here.
    if (node.group !== undefined || node.focus !== undefined || node.tuple !== undefined || node.index !== undefined) return false;
    const rel = (k: string) => ok(node[k], false);
    switch (node.type) {
      case 'string':
      case 'number':
      case 'value':
      case 'regex':
        return true;
      case 'name':
        return (!atRoot || node.value === 'requestObject' || node.value === 'responseObject') && rel('stages') && rel('predicate');
      case 'variable':
        // `$` is the context: the event itself at the top level; `$$` is always the event.
        return (!atRoot || node.value !== '') && node.value !== '$' && rel('stages') && rel('predicate');
      case 'path': {
        const steps = (node.steps ?? []) as unknown[];
        return steps.every((st, i) => ok(st, atRoot && i === 0)) && !node.group;
      }
      case 'filter':
        return ok(node.expr, false);
      case 'binary':
        return ok(node.lhs, atRoot) && ok(node.rhs, atRoot) && rel('stages') && rel('predicate');
      case 'unary':
        return ok(node.expression, atRoot) && ok(node.expressions, atRoot) && ok(node.lhs, atRoot) && rel('stages') && rel('predicate');
      case 'condition':
        return ok(node.condition, atRoot) && ok(node.then, atRoot) && ok(node.else, atRoot);
      case 'block':
        return ok(node.expressions, atRoot) && rel('stages') && rel('predicate');
      case 'bind':
        return ok(node.rhs, atRoot);
      case 'function': {
        const proc = node.procedure as AstNode | undefined;
        if (!proc || proc.type !== 'variable') return false;
        const name = String(proc.value);
        const args = (node.arguments ?? []) as unknown[];
        const known = BODY_HELPERS.has(name) || PURE_HELPERS.has(name) || (JSONATA_FUNCTIONS.has(name) && !IMPURE_FUNCTIONS.has(name) && args.length > 0);
        return known && ok(args, atRoot) && rel('stages') && rel('predicate');
      }
      default:
        return false;
    }
  };
  return ok(ast, true);
}

export interface ExpressionOptions {
  timeoutMs: number;
  /**
   * Evaluate with the synchronous evaluator where it covers the expression (default true); false: always JSONata's
   * own evaluator (tests compare the two).
   */
  sync?: boolean;
}

const listKeys = new WeakMap<DetectionLists, string>();
/** A hash of every list's name and values, computed once per set of lists. */
function listsKey(lists: DetectionLists): string {
  let k = listKeys.get(lists);
  if (k === undefined) {
    const entries = [...lists.values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    k = createHash('sha256').update(JSON.stringify(entries)).digest('hex');
    listKeys.set(lists, k);
  }
  return k;
}

/** What valueNow returns when the expression must be evaluated by JSONata (call value). */
export const DEFER: unique symbol = Symbol('defer to JSONata');

/**
 * A compiled JSONata expression with the helpers registered, bounded in time and depth. Evaluated synchronously
 * (jsonata-sync.ts) when that evaluator covers it, by JSONata otherwise and whenever the synchronous evaluation throws:
 * JSONata's value or error is the one of record.
 */
export class RuleExpression {
  readonly analysis: ExpressionAnalysis;
  /** The parsed expression; parsed on first use when the rule cache gave its facts. */
  private parsed: jsonata.Expression | undefined;
  /**
   * The synchronous evaluator: null until first needed, then the function, or undefined when it does not cover the
   * expression. Compiled on first use, as are JSONata's helper registrations: a start compiles every enabled rule's
   * expressions (~0.1 s of a one-event import went to these two), and most rules meet no event in a short import.
   */
  private syncFn: ((ev: unknown) => unknown) | undefined | null = null;
  private why: string | undefined;
  private registered = false;
  private readonly helperFns: Record<string, SyncHelper> = {};

  /**
   * `known`: the expression's facts from the rule cache (expression-facts.ts), which spare parsing it until it is
   * first evaluated. Without them it is parsed and analysed here.
   */
  constructor(
    readonly source: string,
    private readonly lists: DetectionLists,
    private readonly opts: ExpressionOptions,
    private readonly known?: ExpressionFacts,
  ) {
    if (known) {
      this.analysis = {
        reads: new Set(known.reads),
        rootFields: new Set(known.rootFields),
        functions: new Set(known.functions),
        lists: new Set(known.lists),
        freeVariables: new Set(known.freeVariables),
        unknownFunctions: new Set(known.unknownFunctions),
      };
    } else this.analysis = analyse(this.expr.ast());
    for (const l of this.analysis.lists) if (!lists.has(l)) throw new ExpressionError(`unknown list "${l}"`);
  }

  private get expr(): jsonata.Expression {
    if (this.parsed) return this.parsed;
    try {
      return (this.parsed = compileJsonata(this.source, { timeout: this.opts.timeoutMs, stack: 400 } as jsonata.JsonataOptions));
    } catch (e) {
      throw new ExpressionError(jsonataMessage(e));
    }
  }

  /**
   * The facts the rule cache keeps (expression-facts.ts). The truth without bodies of a body-only expression is kept
   * only when no helper it calls is made from the lists (a helper whose `make` takes no argument cannot read them): the
   * config can change the lists, not the expression.
   */
  async facts(): Promise<ExpressionFacts> {
    const a = this.analysis;
    const facts: ExpressionFacts = {
      reads: [...a.reads],
      rootFields: [...a.rootFields],
      functions: [...a.functions],
      lists: [...a.lists],
      freeVariables: [...a.freeVariables],
      unknownFunctions: [...a.unknownFunctions],
    };
    const listFree = a.unknownFunctions.size === 0 && [...a.functions].every((f) => (HELPERS[f] ? HELPERS[f].make.length === 0 : JSONATA_FUNCTIONS.has(f)));
    if (!readsOnlyBodies(this.expr.ast())) facts.bodyless = null;
    else if (listFree) facts.bodyless = (await this.bodylessTruth()) ?? null;
    else facts.bodylessFor = { lists: listsKey(this.lists), truth: (await this.bodylessTruth()) ?? null };
    return facts;
  }

  /** The helpers bound to the lists, made once for both evaluators. */
  private helpers(): Record<string, SyncHelper> {
    if (Object.keys(this.helperFns).length === 0) for (const [name, h] of Object.entries(HELPERS)) this.helperFns[name] = h.make(this.lists) as SyncHelper;
    return this.helperFns;
  }

  /** JSONata's own evaluator, with the helpers registered. */
  private jsonata(): jsonata.Expression {
    if (this.registered) return this.expr;
    const helpers = this.helpers();
    for (const [name, h] of Object.entries(HELPERS)) {
      const fn = helpers[name]!;
      this.expr.registerFunction(
        name,
        function (this: { environment: { lookup(n: string): unknown } }, ...args: unknown[]) {
          return fn(this.environment.lookup('$'), ...args);
        } as never,
        h.signature,
      );
    }
    this.registered = true;
    return this.expr;
  }

  private get sync(): ((ev: unknown) => unknown) | undefined {
    if (this.syncFn !== null) return this.syncFn;
    this.syncFn = undefined;
    this.why = 'disabled';
    if (this.opts.sync !== false) {
      try {
        this.syncFn = compileSync(this.expr.ast(), this.helpers(), this.opts.timeoutMs);
        this.why = undefined;
      } catch (e) {
        // NotCovered, or a tree of a shape this evaluator did not expect: either way JSONata evaluates it.
        this.why = e instanceof NotCovered ? e.message : `cannot compile: ${(e as Error).message}`;
      }
    }
    return this.syncFn;
  }

  /** Why the synchronous evaluator does not cover this expression (undefined when it does). */
  get notCovered(): string | undefined {
    void this.sync;
    return this.why;
  }

  /**
   * The expression's value for an event when the synchronous evaluator gives it, else DEFER (then call value). Throws
   * ExpressionError on a timeout.
   */
  valueNow(ev: AuditEvent): unknown {
    if (!this.sync) return DEFER;
    try {
      return this.sync(ev);
    } catch (e) {
      if (e instanceof SyncTimeout) throw new ExpressionError(e.message);
      // A type error, an argument JSONata refuses, a construct met only at run time: JSONata says what it is.
      return DEFER;
    }
  }

  /** The expression's value for an event. Throws ExpressionError (with JSONata's message) on failure or timeout. */
  async value(ev: AuditEvent): Promise<unknown> {
    const v = this.valueNow(ev);
    if (v !== DEFER) return v;
    try {
      return await this.jsonata().evaluate(ev);
    } catch (e) {
      throw new ExpressionError(jsonataMessage(e));
    }
  }

  /** The expression as a condition when the synchronous evaluator gives it, else undefined (then call test). */
  testNow(ev: AuditEvent): boolean | undefined {
    const v = this.valueNow(ev);
    return v === DEFER ? undefined : truthy(v);
  }

  /** The expression as a condition: true for true, a non-empty string, a non-zero number, a non-empty array or object. */
  async test(ev: AuditEvent): Promise<boolean> {
    return truthy(await this.value(ev));
  }

  /**
   * For an expression that reads only the bodies (readsOnlyBodies): its truth for every event with neither a request
   * nor a response body, found once by evaluating it on an event with nothing in it. Undefined for other expressions.
   */
  async bodylessTruth(): Promise<boolean | undefined> {
    if (this.known?.bodyless !== undefined) return this.known.bodyless ?? undefined;
    const forLists = this.known?.bodylessFor;
    if (forLists && forLists.lists === listsKey(this.lists)) return forLists.truth ?? undefined;
    if (!readsOnlyBodies(this.expr.ast())) return undefined;
    try {
      return truthy(await this.jsonata().evaluate({}));
    } catch {
      return undefined;
    }
  }
}

export function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.some(truthy);
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function jsonataMessage(e: unknown): string {
  const err = e as { message?: string; code?: string; position?: number; token?: string };
  const msg = err.message ?? String(e);
  return err.position !== undefined ? `${msg} (at character ${err.position}${err.code ? `, ${err.code}` : ''})` : msg;
}
