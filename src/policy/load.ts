/**
 * Reading an audit.k8s.io/v1 Policy the way kube-apiserver does (k8s.io/apiserver pkg/audit/policy/reader.go), but
 * saying out loud what the apiserver only logs:
 *  - YAML is read as YAML 1.1 (the apiserver's YAML library: `on`/`yes` are booleans) and JSON is YAML too;
 *  - only `apiVersion: audit.k8s.io/v1` loads (v1alpha1 and v1beta1 were dropped in 1.24); `kind` must be Policy
 *    or absent (the decoder fills it in);
 *  - field names are case-sensitive; an unknown or duplicated field makes the apiserver fall back to lenient
 *    decoding, which drops the field silently (a mis-indented `verbs:` widens its rule): kaudit reports each one;
 *  - a value of the wrong type (a string where a list is expected) fails the whole file;
 *  - `null` leaves a field at its zero value.
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseAllDocuments, type Document, type Node as YamlNode } from 'yaml';
import type { GroupResources, Policy, PolicyRule } from './types.js';
import { emptyRule } from './types.js';

export const POLICY_API_VERSION = 'audit.k8s.io/v1';

export interface PolicyIssue {
  /** Field path in the apiserver's notation: `rules[3].level`, `omitStages[0]`; "" for the document. */
  path: string;
  message: string;
  line?: number;
  column?: number;
}

export interface LoadedPolicy {
  /** File name (or `<stdin>`, `<inline>`), for messages. */
  source: string;
  /** null when the apiserver could not decode the file at all (see `decodeErrors`). */
  policy: Policy | null;
  /** The fields as decoded when only apiVersion or kind is wrong: still worth validating, to list every problem. */
  decoded?: Policy;
  /** Problems that make the apiserver refuse the file before validation: syntax, version, wrong types. */
  decodeErrors: PolicyIssue[];
  /** Fields the apiserver ignores (unknown, wrongly cased, duplicated, extra documents). */
  unknownFields: PolicyIssue[];
  /** Line of each rule (1-based), when known. */
  ruleLines: (number | undefined)[];
  /** Line of a field path, when known. */
  lineOf(path: string): number | undefined;
}

type FieldKind = 'string' | 'strings' | 'bool' | 'optbool' | 'rules' | 'groupResources' | 'meta';

const POLICY_FIELDS: Record<string, FieldKind> = {
  apiVersion: 'string',
  kind: 'string',
  metadata: 'meta',
  rules: 'rules',
  omitStages: 'strings',
  omitManagedFields: 'bool',
};

const RULE_FIELDS: Record<string, FieldKind> = {
  level: 'string',
  users: 'strings',
  userGroups: 'strings',
  verbs: 'strings',
  resources: 'groupResources',
  namespaces: 'strings',
  nonResourceURLs: 'strings',
  omitStages: 'strings',
  omitManagedFields: 'optbool',
};

const GROUP_RESOURCE_FIELDS: Record<string, FieldKind> = {
  group: 'string',
  resources: 'strings',
  resourceNames: 'strings',
};

/** ObjectMeta fields; kaudit does not look inside them beyond the names. */
const META_FIELDS = new Set([
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
]);

class DecodeError extends Error {}

interface Ctx {
  doc: Document;
  lc: LineCounter;
  decodeErrors: PolicyIssue[];
  unknown: PolicyIssue[];
  lines: Map<string, number>;
}

function pos(ctx: Ctx, n: YamlNode | null | undefined): { line?: number; column?: number } {
  const r = n?.range;
  if (!r) return {};
  const p = ctx.lc.linePos(r[0]);
  return { line: p.line, column: p.col };
}

function resolve(ctx: Ctx, n: unknown): YamlNode | null {
  if (n === null || n === undefined) return null;
  if (isAlias(n)) return (n.resolve(ctx.doc) as YamlNode | undefined) ?? null;
  return n as YamlNode;
}

function describe(n: YamlNode): string {
  if (isMap(n)) return 'a mapping';
  if (isSeq(n)) return 'a list';
  if (isScalar(n)) {
    const v = n.value;
    if (typeof v === 'boolean') return `the boolean ${v}`;
    if (typeof v === 'number' || typeof v === 'bigint') return `the number ${String(v)}`;
    return `the value ${JSON.stringify(v)}`;
  }
  return 'a value';
}

function typeError(ctx: Ctx, path: string, n: YamlNode, want: string): never {
  ctx.decodeErrors.push({ path, message: `expected ${want}, found ${describe(n)}: kube-apiserver refuses the whole file`, ...pos(ctx, n) });
  throw new DecodeError();
}

function isNull(n: YamlNode | null): boolean {
  return n === null || (isScalar(n) && n.value === null);
}

function decodeString(ctx: Ctx, n: YamlNode | null, path: string): string {
  if (isNull(n)) return '';
  if (isScalar(n!) && typeof n.value === 'string') return n.value;
  return typeError(ctx, path, n!, 'a string');
}

function decodeBool(ctx: Ctx, n: YamlNode | null, path: string): boolean | undefined {
  if (isNull(n)) return undefined;
  if (isScalar(n!) && typeof n.value === 'boolean') return n.value;
  return typeError(ctx, path, n!, 'true or false');
}

function decodeStrings(ctx: Ctx, n: YamlNode | null, path: string): string[] {
  if (isNull(n)) return [];
  if (!isSeq(n!)) return typeError(ctx, path, n!, 'a list of strings');
  return n.items.map((item, i) => {
    const p = `${path}[${i}]`;
    const r = resolve(ctx, item);
    const at = pos(ctx, r);
    if (at.line !== undefined) ctx.lines.set(p, at.line);
    return decodeString(ctx, r, p);
  });
}

function keyName(ctx: Ctx, k: unknown): string {
  const r = resolve(ctx, k);
  if (r && isScalar(r)) return String(r.value);
  return '?';
}

const ALL_FIELD_NAMES = [...Object.keys(POLICY_FIELDS), ...Object.keys(RULE_FIELDS), ...Object.keys(GROUP_RESOURCE_FIELDS)];

function unknownFieldMessage(name: string, path: string, parentPath: string, parentFields: Record<string, FieldKind> | undefined): string {
  const sameCase = ALL_FIELD_NAMES.find((f) => f !== name && f.toLowerCase() === name.toLowerCase());
  if (parentFields && sameCase && sameCase in parentFields) {
    return `unknown field "${name}": field names are case-sensitive, did you mean "${sameCase}"? kube-apiserver ignores it`;
  }
  // A rule field written inside a resources entry (one indentation level too deep) is the classic mistake.
  const m = /^(rules\[\d+\])\.resources\[\d+\]$/.exec(parentPath);
  if (m && name in RULE_FIELDS) {
    return `unknown field "${name}" in a resources entry: kube-apiserver ignores it, so this rule does not restrict ${name} at all; to restrict the rule, indent it as ${m[1]}.${name}`;
  }
  void path;
  return `unknown field "${name}": kube-apiserver ignores it`;
}

/** Walks a mapping with a fixed field set; calls `take` for each known field (last occurrence wins, as in Go). */
function walkMap(
  ctx: Ctx,
  n: YamlNode | null,
  path: string,
  fields: Record<string, FieldKind>,
  want: string,
  take: (field: string, kind: FieldKind, value: YamlNode | null, fieldPath: string) => void,
): void {
  if (isNull(n)) return;
  if (!isMap(n!)) typeError(ctx, path, n!, want);
  const seen = new Set<string>();
  const m = n as import('yaml').YAMLMap;
  for (const pair of m.items) {
    const name = keyName(ctx, pair.key);
    const fieldPath = path === '' ? name : `${path}.${name}`;
    const keyNode = resolve(ctx, pair.key);
    const at = pos(ctx, keyNode);
    if (at.line !== undefined) ctx.lines.set(fieldPath, at.line);
    if (!(name in fields)) {
      ctx.unknown.push({ path: fieldPath, message: unknownFieldMessage(name, fieldPath, path, fields), ...at });
      continue;
    }
    if (seen.has(name)) {
      ctx.unknown.push({ path: fieldPath, message: `duplicate field "${name}": kube-apiserver keeps only the last one`, ...at });
    }
    seen.add(name);
    take(name, fields[name]!, resolve(ctx, pair.value), fieldPath);
  }
}

function decodeGroupResources(ctx: Ctx, n: YamlNode | null, path: string): GroupResources[] {
  if (isNull(n)) return [];
  if (!isSeq(n!)) return typeError(ctx, path, n!, 'a list of {group, resources, resourceNames}');
  return n.items.map((item, i) => {
    const p = `${path}[${i}]`;
    const r = resolve(ctx, item);
    const at = pos(ctx, r);
    if (at.line !== undefined) ctx.lines.set(p, at.line);
    const gr: GroupResources = { group: '', resources: [], resourceNames: [] };
    walkMap(ctx, r, p, GROUP_RESOURCE_FIELDS, 'a mapping with group, resources, resourceNames', (f, _k, v, fp) => {
      if (f === 'group') gr.group = decodeString(ctx, v, fp);
      else if (f === 'resources') gr.resources = decodeStrings(ctx, v, fp);
      else gr.resourceNames = decodeStrings(ctx, v, fp);
    });
    return gr;
  });
}

function decodeRules(ctx: Ctx, n: YamlNode | null, path: string, ruleLines: (number | undefined)[]): PolicyRule[] {
  if (isNull(n)) return [];
  if (!isSeq(n!)) return typeError(ctx, path, n!, 'a list of rules');
  return n.items.map((item, i) => {
    const p = `${path}[${i}]`;
    const r = resolve(ctx, item);
    const at = pos(ctx, r);
    ruleLines[i] = at.line;
    if (at.line !== undefined) ctx.lines.set(p, at.line);
    const rule = emptyRule();
    walkMap(ctx, r, p, RULE_FIELDS, 'a rule (a mapping)', (f, kind, v, fp) => {
      switch (f) {
        case 'level':
          rule.level = decodeString(ctx, v, fp);
          break;
        case 'resources':
          rule.resources = decodeGroupResources(ctx, v, fp);
          break;
        case 'omitManagedFields': {
          const b = decodeBool(ctx, v, fp);
          if (b === undefined) delete rule.omitManagedFields;
          else rule.omitManagedFields = b;
          break;
        }
        default:
          if (kind === 'strings') (rule as unknown as Record<string, string[]>)[f] = decodeStrings(ctx, v, fp);
      }
    });
    return rule;
  });
}

function decodeMeta(ctx: Ctx, n: YamlNode | null, path: string): void {
  if (isNull(n)) return;
  if (!isMap(n!)) typeError(ctx, path, n!, 'a mapping (ObjectMeta)');
  for (const pair of (n as import('yaml').YAMLMap).items) {
    const name = keyName(ctx, pair.key);
    if (!META_FIELDS.has(name)) {
      ctx.unknown.push({
        path: `${path}.${name}`,
        message: `unknown field "${name}" in metadata: kube-apiserver ignores it`,
        ...pos(ctx, resolve(ctx, pair.key)),
      });
    }
  }
}

/** Decodes policy text (YAML or JSON). Never throws for bad input: problems are in the result. */
export function parsePolicy(text: string, source = '<inline>'): LoadedPolicy {
  const lc = new LineCounter();
  const lines = new Map<string, number>();
  const ruleLines: (number | undefined)[] = [];
  const result: LoadedPolicy = {
    source,
    policy: null,
    decodeErrors: [],
    unknownFields: [],
    ruleLines,
    lineOf: (p: string) => {
      // Fall back to the closest enclosing path that has a line.
      let q = p;
      while (q !== '') {
        const l = lines.get(q);
        if (l !== undefined) return l;
        const cut = Math.max(q.lastIndexOf('.'), q.lastIndexOf('['));
        q = cut > 0 ? q.slice(0, cut) : '';
      }
      return undefined;
    },
  };
  const docs = parseAllDocuments(text, { version: '1.1', uniqueKeys: false, lineCounter: lc, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [];
  const doc = list[0];
  if (!doc || doc.contents === null) {
    result.decodeErrors.push({ path: '', message: 'the file holds no policy (it is empty)' });
    return result;
  }
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const p = e.linePos?.[0];
      result.decodeErrors.push({ path: '', message: `not valid YAML: ${e.message.split('\n')[0]}`, line: p?.line, column: p?.col });
    }
    return result;
  }
  const ctx: Ctx = { doc, lc, decodeErrors: result.decodeErrors, unknown: result.unknownFields, lines };
  for (let i = 1; i < list.length; i++) {
    const d = list[i]!;
    if (d.contents === null) continue;
    result.unknownFields.push({
      path: '',
      message: `YAML document ${i + 1} is ignored: kube-apiserver reads only the first document of the file`,
      ...pos(ctx, d.contents as YamlNode),
    });
  }
  const policy: Policy = { rules: [], omitStages: [], omitManagedFields: false };
  let apiVersion = '';
  let kind = '';
  try {
    walkMap(ctx, resolve(ctx, doc.contents), '', POLICY_FIELDS, 'a Policy (a mapping with apiVersion, kind and rules)', (f, _k, v, fp) => {
      switch (f) {
        case 'apiVersion':
          apiVersion = decodeString(ctx, v, fp);
          break;
        case 'kind':
          kind = decodeString(ctx, v, fp);
          break;
        case 'metadata':
          decodeMeta(ctx, v, fp);
          break;
        case 'rules':
          policy.rules = decodeRules(ctx, v, fp, ruleLines);
          break;
        case 'omitStages':
          policy.omitStages = decodeStrings(ctx, v, fp);
          break;
        case 'omitManagedFields':
          policy.omitManagedFields = decodeBool(ctx, v, fp) ?? false;
          break;
      }
    });
  } catch (e) {
    if (e instanceof DecodeError) return result;
    throw e;
  }
  if (apiVersion !== POLICY_API_VERSION) {
    const why =
      apiVersion === ''
        ? 'apiVersion is missing'
        : /^audit\.k8s\.io\/v1(alpha1|beta1)$/.test(apiVersion)
          ? `apiVersion ${apiVersion} is no longer served (removed in Kubernetes 1.24)`
          : `apiVersion ${JSON.stringify(apiVersion)} is not an audit policy version`;
    result.decodeErrors.push({ path: 'apiVersion', message: `${why}: use apiVersion: ${POLICY_API_VERSION}`, line: lines.get('apiVersion') });
  }
  // A missing kind is filled in from the type being decoded into; a wrong one is refused.
  if (kind !== 'Policy' && kind !== '') {
    result.decodeErrors.push({ path: 'kind', message: `kind ${JSON.stringify(kind)} is not Policy`, line: lines.get('kind') });
  }
  if (result.decodeErrors.length === 0) result.policy = policy;
  else result.decoded = policy;
  return result;
}

export async function loadPolicyFile(path: string): Promise<LoadedPolicy> {
  const text = await readFile(path, 'utf8');
  return parsePolicy(text, path);
}
