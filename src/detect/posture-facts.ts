/**
 * Facts the posture rules (detections/posture.yaml, CIS Kubernetes Benchmark 5.x) and the admission rules
 * (detections/admission.yaml) read, memoised per event like facts.ts: the decoded admission annotations, the
 * workload written and its owner, the containers that do not ensure a non-root user, and the images' registries.
 */
import { isObject as isObj } from '../config/values.js';
import { decodeAdmission, type AdmissionSignals } from '../events/admission.js';
import type { AuditEvent } from '../events/types.js';
import { workloadOf, type WorkloadOf } from '../events/workload.js';
import { podSpecs } from './facts.js';

interface PostureFacts {
  admission?: AdmissionSignals | null;
  workload?: WorkloadOf;
}

const memo = new WeakMap<AuditEvent, PostureFacts>();

function factsOf(ev: AuditEvent): PostureFacts {
  let f = memo.get(ev);
  if (!f) memo.set(ev, (f = {}));
  return f;
}

/** The admission signals of the event's annotations (events/admission.ts), or undefined. */
export function admissionOf(ev: AuditEvent): AdmissionSignals | undefined {
  const f = factsOf(ev);
  if (f.admission === undefined) f.admission = decodeAdmission(ev) ?? null;
  return f.admission ?? undefined;
}

/** The object written and its top-level owner, each as `Kind/name` (events/workload.ts). */
export function workloadNames(ev: AuditEvent): { object: string; owner: string } {
  const f = factsOf(ev);
  const w = (f.workload ??= workloadOf(ev));
  return { object: `${w.object.kind}/${w.object.name}`, owner: `${w.owner.kind}/${w.owner.name}` };
}

/**
 * Containers that do not ensure a non-root user (CIS 5.2.6): neither runAsNonRoot true nor a non-zero runAsUser,
 * theirs or inherited from the pod's securityContext. Unlike rootContainers (explicit root), an unset field counts:
 * the image then decides, and most images run as root.
 */
export function nonRootUnset(ev: AuditEvent): string[] {
  const out: string[] = [];
  for (const s of podSpecs(ev)) {
    const psc = isObj(s.securityContext) ? s.securityContext : {};
    for (const k of ['initContainers', 'containers', 'ephemeralContainers']) {
      for (const c of Array.isArray(s[k]) ? (s[k] as unknown[]) : []) {
        if (!isObj(c)) continue;
        const sc = isObj(c.securityContext) ? c.securityContext : {};
        const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
        const uid = sc.runAsUser ?? psc.runAsUser;
        if (nonRoot !== true && !(typeof uid === 'number' && uid > 0)) out.push(typeof c.name === 'string' ? c.name : '(unnamed)');
      }
    }
  }
  return out;
}

/**
 * The registry of an image reference, as the container runtime resolves it: the first path component when it names
 * a host (has a `.` or a `:`, or is `localhost`), else Docker Hub (`docker.io`).
 */
export function registryOf(image: string): string {
  const slash = image.indexOf('/');
  if (slash < 0) return 'docker.io';
  const first = image.slice(0, slash);
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : 'docker.io';
}
