/**
 * The functions rule expressions can call besides JSONata's own (`$containers()`, `$inList(...)`, ...), each with its
 * JSONata signature, what it reads of the event, and its synchronous form; and the names lint checks expressions
 * against. Apart from expression.ts, which compiles and evaluates expressions with them.
 */
import { EVENT_FIELD_ORDER, type AuditEvent } from '../events/types.js';
import {
  addedCapabilities,
  containers,
  execCommand,
  rootContainers,
  execContainer,
  hostPaths,
  images,
  objectName,
  patchPaths,
  podSpecs,
  requestBody,
} from './facts.js';
import type { DetectionLists } from './lists.js';
import { admissionOf, nonRootUnset, registryOf, workloadNames } from './posture-facts.js';
import { compilePatterns } from './patterns.js';

export type BodyRead = 'requestObject' | 'responseObject';

/**
 * A helper's function. Declared as a method so that its parameters are checked bivariantly: each helper names the
 * types of its own arguments (JSONata's signature checks them at run time), which a plain `unknown[]` would refuse.
 */
type HelperFn = { call(root: AuditEvent, ...args: unknown[]): unknown }['call'];

interface HelperDef {
  /** What the helper reads from the event: decides the audit level a rule needs. */
  reads?: BodyRead;
  doc: string;
  /** Indexes of arguments that name a list. */
  listArgs?: number[];
  /** The helper's function: the event (the expression's root) first, then the expression's arguments. */
  make: (lists: DetectionLists) => HelperFn;
  signature?: string;
}

function asStrings(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.flatMap((x) => (typeof x === 'string' ? [x] : x === undefined || x === null ? [] : [String(x)]));
  return [typeof v === 'string' ? v : String(v)];
}

function asText(v: unknown): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Helper functions every condition and details expression can call. */
export const HELPERS: Record<string, HelperDef> = {
  obj: {
    reads: 'requestObject',
    doc: 'the object the request writes (a JSON patch turned into the partial object it writes)',
    make: () => (root) => {
      return requestBody(root);
    },
  },
  podSpecs: {
    reads: 'requestObject',
    doc: 'every pod spec the request writes: pods, pod templates of workloads, cronjob jobTemplates',
    make: () => (root) => {
      return podSpecs(root);
    },
  },
  containers: {
    reads: 'requestObject',
    doc: 'all containers, initContainers and ephemeralContainers of $podSpecs()',
    make: () => (root) => {
      return containers(root);
    },
  },
  images: {
    reads: 'requestObject',
    doc: 'the images of $containers()',
    make: () => (root) => {
      return images(root);
    },
  },
  hostPaths: {
    reads: 'requestObject',
    doc: 'paths of hostPath volumes of $podSpecs()',
    make: () => (root) => {
      return hostPaths(root);
    },
  },
  capabilities: {
    reads: 'requestObject',
    doc: 'capabilities added to any container, upper case without CAP_',
    make: () => (root) => {
      return addedCapabilities(root);
    },
  },
  rootContainers: {
    reads: 'requestObject',
    doc: "names of containers that run as root (runAsUser 0, or runAsNonRoot false, theirs or the pod's)",
    make: () => (root) => {
      return rootContainers(root);
    },
  },
  patchPaths: {
    reads: 'requestObject',
    doc: 'JSON pointers a patch writes',
    make: () => (root) => {
      return patchPaths(root);
    },
  },
  nonRootUnset: {
    reads: 'requestObject',
    doc: "names of containers with neither runAsNonRoot true nor a non-zero runAsUser (theirs or the pod's)",
    make: () => (root) => nonRootUnset(root),
  },
  registries: {
    reads: 'requestObject',
    doc: 'the registries of $images() (docker.io for an image without a registry host)',
    make: () => (root) => [...new Set(images(root).map(registryOf))],
  },
  admission: {
    doc: 'the decoded Pod Security and admission-policy annotations: {enforcePolicy, audit, denied, exempt, error, policyFailures}',
    make: () => (root) => admissionOf(root),
  },
  workload: {
    doc: "the object written and its top-level owner as Kind/name: {object, owner} (a ReplicaSet's pod: its Deployment)",
    make: () => (root) => workloadNames(root),
  },
  command: {
    doc: 'argv of an exec request (decoded command= parameters)',
    make: () => (root) => {
      return execCommand(root);
    },
  },
  commandLine: {
    doc: 'argv of an exec request joined by spaces',
    make: () => (root) => {
      return execCommand(root).join(' ');
    },
  },
  container: {
    doc: 'the container= parameter of an exec, attach or log request',
    make: () => (root) => {
      return execContainer(root);
    },
  },
  objectName: {
    doc: 'name of the object: objectRef, else the response or request body',
    make: () => (root) => {
      return objectName(root);
    },
  },
  isSystem: {
    doc: 'the user is a system identity (lists system-users, system-groups)',
    make: (lists) => (root) => {
      const u = root.user ?? {};
      return lists.isSystem(u.username ?? '', u.groups ?? []);
    },
  },
  isPerson: {
    doc: 'the user is a person: not a system:, service account, node or anonymous identity',
    make: (lists) => (root) => {
      const u = root.user ?? {};
      return lists.isPerson(u.username ?? '', u.groups ?? []);
    },
  },
  list: {
    doc: '$list(name): the values of a shared list',
    listArgs: [0],
    make: (lists) => (_root, name: string) => {
      return [...lists.get(name)];
    },
  },
  inList: {
    doc: '$inList(values, name): any value matches an entry (exact, glob or /regex/) of the list',
    listArgs: [1],
    make: (lists) => (_root, v: unknown, name: string) => {
      const t = lists.test(name);
      return asStrings(v).some((s) => t(s));
    },
  },
  allInList: {
    doc: '$allInList(values, name): every value matches an entry of the list (false when there are none)',
    listArgs: [1],
    make: (lists) => (_root, v: unknown, name: string) => {
      const t = lists.test(name);
      const s = asStrings(v);
      return s.length > 0 && s.every((x) => t(x));
    },
  },
  notInList: {
    doc: '$notInList(values, name): the values that match no entry of the list',
    listArgs: [1],
    make: (lists) => (_root, v: unknown, name: string) => {
      const t = lists.test(name);
      return asStrings(v).filter((x) => !t(x));
    },
  },
  pathUnder: {
    doc: '$pathUnder(paths, name): the paths at or under a prefix of the list (/etc matches /etc/x, / only itself)',
    listArgs: [1],
    make: (lists) => (_root, v: unknown, name: string) => {
      const t = lists.pathTest(name);
      return asStrings(v).filter((p) => t(p));
    },
  },
  textMatch: {
    doc: '$textMatch(text, name): the fragments of text (or of a value as JSON) matching a pattern of the list',
    listArgs: [1],
    make: (lists) => {
      // One global, case-insensitive copy of each list's pattern, reused: evaluations are synchronous, one at a time.
      const globals = new Map<string, RegExp | undefined>();
      return (_root, v: unknown, name: string) => {
        let g = globals.get(name);
        if (g === undefined && !globals.has(name)) {
          const re = lists.text(name);
          g = re ? new RegExp(re.source, 'gi') : undefined;
          globals.set(name, g);
        }
        if (!g) return [];
        const text = asText(v).slice(0, 1 << 20);
        const out = new Set<string>();
        g.lastIndex = 0;
        for (let m = g.exec(text); m !== null; m = g.exec(text)) {
          out.add(m[0]);
          if (out.size >= 20) break;
          // As matchAll does: an empty match moves on by one.
          if (m[0] === '') g.lastIndex++;
        }
        return [...out];
      };
    },
  },
  glob: {
    doc: '$glob(value, pattern): value matches a glob or /regex/',
    make: () => (_root, v: unknown, p: string) => {
      return asStrings(v).some((s) => compilePatterns([p])(s));
    },
  },
};

/** JSONata's own functions (for lint: a call to anything else is a typo). */
export const JSONATA_FUNCTIONS = new Set(
  (
    'sum count max min average string substring substringBefore substringAfter lowercase uppercase length trim pad match contains replace split join ' +
    'formatNumber formatBase formatInteger parseInteger number floor ceil round abs sqrt power random boolean not map zip filter single reduce sift ' +
    'keys lookup append exists spread merge reverse each error assert type sort shuffle distinct base64encode base64decode encodeUrlComponent ' +
    'encodeUrl decodeUrlComponent decodeUrl eval toMillis fromMillis clone now millis'
  ).split(' '),
);

/** Top-level fields of an audit event, for lint (and two that older logs and envelopes carry). */
export const EVENT_FIELDS = new Set<string>([...EVENT_FIELD_ORDER, 'metadata', 'timestamp']);
