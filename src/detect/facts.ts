/**
 * Facts about an audit event that many rules share and JSONata would compute slowly: the pod specs it carries
 * (wherever they sit), their containers, images, host paths and capabilities, the exec command, the paths a patch
 * touches. Computed in plain JavaScript once per event (memoised on the event object) and exposed to rule
 * conditions as helper functions (see expression.ts).
 */
import { isObject as isObj } from '../config/values.js';
import type { AuditEvent } from '../events/types.js';

type Obj = Record<string, unknown>;

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

interface Facts {
  container?: string;
  body?: Obj | null;
  podSpecs?: Obj[];
  containers?: Obj[];
  images?: string[];
  hostPaths?: string[];
  capabilities?: string[];
  command?: string[];
  patchPaths?: string[];
}

const memo = new WeakMap<AuditEvent, Facts>();

function factsOf(ev: AuditEvent): Facts {
  let f = memo.get(ev);
  if (!f) {
    f = {};
    memo.set(ev, f);
  }
  return f;
}

const MAX_PATCH_OPS = 2000;

function decodePointer(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

/**
 * A JSON patch (RFC 6902) as the partial object its add/replace operations build, so that rules read a JSON patch
 * the way they read a merge patch: `[{op: add, path: /spec/hostNetwork, value: true}]` becomes
 * `{spec: {hostNetwork: true}}`.
 */
export function patchToObject(ops: readonly unknown[]): Obj {
  const root: Obj = {};
  for (const op of ops.slice(0, MAX_PATCH_OPS)) {
    if (!isObj(op) || (op.op !== 'add' && op.op !== 'replace') || typeof op.path !== 'string' || !('value' in op)) continue;
    const segs = op.path.split('/').slice(1).map(decodePointer);
    if (segs.length === 0) {
      if (isObj(op.value)) Object.assign(root, op.value);
      continue;
    }
    let cur: Obj | unknown[] = root;
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      const last = i === segs.length - 1;
      const nextIsIndex = !last && (/^\d+$/.test(segs[i + 1]!) || segs[i + 1] === '-');
      if (Array.isArray(cur)) {
        const idx = seg === '-' ? cur.length : Number(seg);
        if (!Number.isInteger(idx) || idx > 10_000) break;
        if (last) cur[idx] = op.value;
        else {
          if (typeof cur[idx] !== 'object' || cur[idx] === null) cur[idx] = nextIsIndex ? [] : {};
          cur = cur[idx] as Obj | unknown[];
        }
      } else {
        if (seg === '__proto__' || seg === 'constructor' || seg === 'prototype') break;
        if (last) cur[seg] = op.value;
        else {
          if (typeof cur[seg] !== 'object' || cur[seg] === null) cur[seg] = nextIsIndex ? [] : {};
          cur = cur[seg] as Obj | unknown[];
        }
      }
    }
  }
  return root;
}

const NOT_A_BODY = new Set(['DeleteOptions', 'Status', 'WatchEvent']);

/**
 * The object a write request carries: the request body (a JSON patch turned into the partial object it writes), or,
 * when the policy logged no request body, the response body of a create or update. Undefined for reads, deletes and
 * events logged at Metadata level.
 */
export function requestBody(ev: AuditEvent): Obj | undefined {
  const f = factsOf(ev);
  if (f.body !== undefined) return f.body ?? undefined;
  let b: unknown = ev.requestObject;
  if (Array.isArray(b)) b = patchToObject(b);
  if (!isObj(b) || NOT_A_BODY.has(b.kind as string)) {
    const r = ev.responseObject;
    b = (ev.verb === 'create' || ev.verb === 'update') && isObj(r) && !NOT_A_BODY.has(r.kind as string) ? r : undefined;
  }
  f.body = (b as Obj | undefined) ?? null;
  return b as Obj | undefined;
}

const WORKLOAD_TEMPLATE_RESOURCES = new Set(['deployments', 'replicasets', 'statefulsets', 'daemonsets', 'jobs', 'replicationcontrollers']);
const WORKLOAD_TEMPLATE_KINDS = new Set(['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet', 'Job', 'ReplicationController']);

/**
 * Every pod spec the request writes: a Pod's spec (also for pods/ephemeralcontainers), the pod template of a
 * Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or ReplicationController, a PodTemplate's template, a CronJob's
 * jobTemplate, and any other object with a pod template at spec.template (custom workload kinds).
 */
export function podSpecs(ev: AuditEvent): Obj[] {
  const f = factsOf(ev);
  if (f.podSpecs) return f.podSpecs;
  const out: Obj[] = [];
  const b = requestBody(ev);
  if (b) {
    const kind = typeof b.kind === 'string' ? b.kind : '';
    const resource = ev.objectRef?.resource ?? '';
    const spec = isObj(b.spec) ? b.spec : undefined;
    if (kind === 'Pod' || (!kind && resource === 'pods')) {
      if (spec) out.push(spec);
    } else if (kind === 'PodTemplate' || (!kind && resource === 'podtemplates')) {
      const t = isObj(b.template) && isObj(b.template.spec) ? b.template.spec : undefined;
      if (t) out.push(t);
    } else if (kind === 'CronJob' || (!kind && resource === 'cronjobs')) {
      const jt = spec && isObj(spec.jobTemplate) && isObj(spec.jobTemplate.spec) ? spec.jobTemplate.spec : undefined;
      const t = jt && isObj(jt.template) && isObj(jt.template.spec) ? jt.template.spec : undefined;
      if (t) out.push(t);
    } else if (spec && isObj(spec.template) && isObj(spec.template.spec)) {
      if (WORKLOAD_TEMPLATE_KINDS.has(kind) || WORKLOAD_TEMPLATE_RESOURCES.has(resource) || Array.isArray(spec.template.spec.containers))
        out.push(spec.template.spec);
    }
  }
  f.podSpecs = out;
  return out;
}

/** All containers of all pod specs: containers, initContainers and ephemeralContainers. */
export function containers(ev: AuditEvent): Obj[] {
  const f = factsOf(ev);
  if (f.containers) return f.containers;
  const out: Obj[] = [];
  for (const s of podSpecs(ev)) {
    for (const k of ['initContainers', 'containers', 'ephemeralContainers']) {
      for (const c of arr(s[k])) if (isObj(c)) out.push(c);
    }
  }
  f.containers = out;
  return out;
}

export function images(ev: AuditEvent): string[] {
  const f = factsOf(ev);
  if (!f.images) f.images = containers(ev).flatMap((c) => (typeof c.image === 'string' ? [c.image] : []));
  return f.images;
}

/** Host paths of hostPath volumes of all pod specs. */
export function hostPaths(ev: AuditEvent): string[] {
  const f = factsOf(ev);
  if (!f.hostPaths) {
    f.hostPaths = podSpecs(ev).flatMap((s) =>
      arr(s.volumes).flatMap((v) => (isObj(v) && isObj(v.hostPath) && typeof v.hostPath.path === 'string' ? [v.hostPath.path] : [])),
    );
  }
  return f.hostPaths;
}

/** Capabilities added to any container, upper case without the CAP_ prefix. */
export function addedCapabilities(ev: AuditEvent): string[] {
  const f = factsOf(ev);
  if (!f.capabilities) {
    const set = new Set<string>();
    for (const c of containers(ev)) {
      const sc = c.securityContext;
      const caps = isObj(sc) && isObj(sc.capabilities) ? sc.capabilities.add : undefined;
      for (const cap of arr(caps)) if (typeof cap === 'string') set.add(cap.toUpperCase().replace(/^CAP_/, ''));
    }
    f.capabilities = [...set];
  }
  return f.capabilities;
}

/**
 * Containers that run as root: their own runAsUser (or else the pod's) is 0, or runAsNonRoot is explicitly false
 * (theirs, or else the pod's) with no non-zero user set. A pod-level setting in a spec without containers (a patch of
 * the template's securityContext) counts as `(pod)`.
 */
export function rootContainers(ev: AuditEvent): string[] {
  const out: string[] = [];
  for (const s of podSpecs(ev)) {
    const psc = isObj(s.securityContext) ? s.securityContext : {};
    const all = ['initContainers', 'containers', 'ephemeralContainers'].flatMap((k) => arr(s[k]).filter(isObj));
    const root = (sc: Obj) => {
      const uid = sc.runAsUser ?? psc.runAsUser;
      const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
      return uid === 0 || (nonRoot === false && (uid === undefined || uid === null));
    };
    if (all.length === 0) {
      if (root({})) out.push('(pod)');
      continue;
    }
    for (const c of all) if (root(isObj(c.securityContext) ? c.securityContext : {})) out.push(typeof c.name === 'string' ? c.name : '(unnamed)');
  }
  return out;
}

/** The argv of an exec request, decoded from the `command` query parameters. */
export function execCommand(ev: AuditEvent): string[] {
  const f = factsOf(ev);
  if (!f.command) {
    const uri = ev.requestURI ?? '';
    const q = uri.indexOf('?');
    f.command = q < 0 ? [] : new URLSearchParams(uri.slice(q + 1)).getAll('command');
  }
  return f.command;
}

/** The `container` query parameter of an exec, attach, portforward or log request. */
export function execContainer(ev: AuditEvent): string {
  const f = factsOf(ev);
  if (f.container === undefined) {
    const uri = ev.requestURI ?? '';
    const q = uri.indexOf('?');
    f.container = q < 0 ? '' : (new URLSearchParams(uri.slice(q + 1)).get('container') ?? '');
  }
  return f.container;
}

const MAX_PATHS = 500;

function flattenPaths(v: unknown, prefix: string, out: string[], depth: number): void {
  if (out.length >= MAX_PATHS) return;
  if (depth > 32 || typeof v !== 'object' || v === null || (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0)) {
    out.push(prefix || '/');
    return;
  }
  if (Array.isArray(v)) v.forEach((x, i) => flattenPaths(x, `${prefix}/${i}`, out, depth + 1));
  else for (const [k, x] of Object.entries(v)) flattenPaths(x, `${prefix}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`, out, depth + 1);
}

/**
 * The field paths a patch writes, as JSON pointers: the op paths of a JSON patch, the leaf paths of a merge or
 * strategic-merge patch. Empty for other verbs.
 */
export function patchPaths(ev: AuditEvent): string[] {
  const f = factsOf(ev);
  if (f.patchPaths) return f.patchPaths;
  const out: string[] = [];
  if (ev.verb === 'patch') {
    const b = ev.requestObject;
    if (Array.isArray(b)) {
      for (const op of b.slice(0, MAX_PATHS)) if (isObj(op) && typeof op.path === 'string') out.push(op.path);
    } else if (isObj(b)) flattenPaths(b, '', out, 0);
  }
  f.patchPaths = out;
  return out;
}

/** The name of the object a request is about, from objectRef, then the response, then the request body. */
export function objectName(ev: AuditEvent): string {
  if (ev.objectRef?.name) return ev.objectRef.name;
  for (const b of [ev.responseObject, ev.requestObject]) {
    const md = isObj(b) ? b.metadata : undefined;
    if (isObj(md) && typeof md.name === 'string' && md.name) return md.name;
  }
  const md = isObj(ev.requestObject) ? ev.requestObject.metadata : undefined;
  if (isObj(md) && typeof md.generateName === 'string' && md.generateName) return md.generateName + '*';
  return '';
}

/** `ReplicaSet/web-7d5b5` for an object a controller owns (from its body's ownerReferences); empty otherwise. */
export function controllerOwner(ev: AuditEvent): string {
  for (const b of [ev.requestObject, ev.responseObject]) {
    const md = isObj(b) ? b.metadata : undefined;
    const owners = isObj(md) ? arr(md.ownerReferences) : [];
    const ctl = owners.find((o) => isObj(o) && o.controller === true) as Obj | undefined;
    if (ctl && typeof ctl.kind === 'string' && typeof ctl.name === 'string') return `${ctl.kind}/${ctl.name}`;
  }
  return '';
}
