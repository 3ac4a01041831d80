/**
 * The checks kube-apiserver runs on a decoded policy before it starts (k8s.io/apiserver pkg/apis/audit/validation and
 * the rule count check of pkg/audit/policy/reader.go), in the same order, restated. Any error here stops the
 * apiserver from starting with this policy.
 *
 * One deliberate difference: the apiserver reports a bad group as `rules[i].resources.group` (without the entry's
 * index); kaudit names the entry, `rules[i].resources[j].group`, so that the line can be found.
 */
import { LEVELS, STAGES } from '../events/types.js';
import type { GroupResources, Policy, PolicyRule } from './types.js';

export type FieldErrorType = 'Required' | 'NotSupported' | 'Invalid';

export interface FieldError {
  path: string;
  type: FieldErrorType;
  message: string;
}

// RFC 1123 subdomain, as Kubernetes checks API group names.
const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN = new RegExp(`^${DNS1123_LABEL}(\\.${DNS1123_LABEL})*$`);

export function isDnsSubdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

function validateLevel(level: string, path: string): FieldError[] {
  if ((LEVELS as readonly string[]).includes(level)) return [];
  if (level === '') return [{ path, type: 'Required', message: `a level is required: one of ${LEVELS.join(', ')}` }];
  return [{ path, type: 'NotSupported', message: `${JSON.stringify(level)} is not a level: use one of ${LEVELS.join(', ')} (case matters)` }];
}

function validateNonResourceURLs(urls: string[], path: string): FieldError[] {
  const out: FieldError[] = [];
  urls.forEach((url, i) => {
    if (url === '*') return;
    const p = `${path}[${i}]`;
    if (!url.startsWith('/')) out.push({ path: p, type: 'Invalid', message: `${JSON.stringify(url)}: a non-resource URL must begin with "/"` });
    if (url !== '' && url.slice(0, -1).includes('*')) {
      out.push({ path: p, type: 'Invalid', message: `${JSON.stringify(url)}: a "*" wildcard is allowed only as the last character` });
    }
  });
  return out;
}

function validateResources(grs: GroupResources[], path: string): FieldError[] {
  const out: FieldError[] = [];
  grs.forEach((gr, i) => {
    const p = `${path}[${i}]`;
    if (gr.group !== '' && gr.group !== '*' && !isDnsSubdomain(gr.group)) {
      const hint = gr.group.includes('/') ? ' (name the group without its version, e.g. "rbac.authorization.k8s.io")' : '';
      out.push({
        path: `${p}.group`,
        type: 'Invalid',
        message: `${JSON.stringify(gr.group)} is not a valid API group: groups are lower-case DNS subdomains of at most 253 characters${hint}`,
      });
    }
    if (gr.resourceNames.length > 0 && gr.resources.length === 0) {
      out.push({ path: `${p}.resourceNames`, type: 'Invalid', message: 'resourceNames need at least one resource in the same entry' });
    }
  });
  return out;
}

function validateOmitStages(stages: string[], path: string): FieldError[] {
  const out: FieldError[] = [];
  stages.forEach((s, i) => {
    if (!(STAGES as readonly string[]).includes(s)) {
      out.push({ path: `${path}[${i}]`, type: 'Invalid', message: `${JSON.stringify(s)} is not a stage: use ${STAGES.join(', ')}` });
    }
  });
  return out;
}

function validateRule(r: PolicyRule, path: string): FieldError[] {
  const out = [
    ...validateLevel(r.level, `${path}.level`),
    ...validateNonResourceURLs(r.nonResourceURLs, `${path}.nonResourceURLs`),
    ...validateResources(r.resources, `${path}.resources`),
    ...validateOmitStages(r.omitStages, `${path}.omitStages`),
  ];
  if (r.nonResourceURLs.length > 0 && (r.resources.length > 0 || r.namespaces.length > 0)) {
    out.push({
      path: `${path}.nonResourceURLs`,
      type: 'Invalid',
      message: 'a rule cannot match both resources (resources, namespaces) and non-resource URLs: split it in two rules',
    });
  }
  return out;
}

/** Every reason kube-apiserver would refuse this (decoded) policy; empty when it loads. */
export function validatePolicy(p: Policy): FieldError[] {
  const out = [...validateOmitStages(p.omitStages, 'omitStages')];
  p.rules.forEach((r, i) => out.push(...validateRule(r, `rules[${i}]`)));
  if (p.rules.length === 0)
    out.push({ path: 'rules', type: 'Required', message: 'a policy needs at least one rule: kube-apiserver refuses a policy with 0 rules' });
  return out;
}
