/**
 * Alert summaries: a template per rule (`{user} {verbPast} {target}`) rendered for the event that raised the alert,
 * so every alert names who did what to which object.
 */
import type { NormalisedEvent } from '../events/types.js';
import { controllerOwner } from './facts.js';
import { eventObjectName } from './match.js';

const PAST: Record<string, string> = {
  create: 'created',
  update: 'updated',
  patch: 'patched',
  delete: 'deleted',
  deletecollection: 'deleted a collection of',
  get: 'read',
  list: 'listed',
  watch: 'watched',
  proxy: 'proxied to',
};

export function verbPast(verb: string): string {
  return PAST[verb] ?? `${verb}`;
}

export function singular(resource: string): string {
  if (resource.endsWith('sses')) return resource.slice(0, -2);
  if (resource.endsWith('ies')) return resource.slice(0, -3) + 'y';
  if (resource.endsWith('s')) return resource.slice(0, -1);
  return resource;
}

function pathOf(uri: string): string {
  const q = uri.indexOf('?');
  return q < 0 ? uri : uri.slice(0, q);
}

/** `default/web-1` or `web-1` (cluster-scoped) or the request path for non-resource requests. */
export function objectLabel(e: NormalisedEvent): string {
  if (e.resource === '') return pathOf(e.event.requestURI);
  const name = eventObjectName(e);
  if (!name) return e.namespace ? `${e.namespace}/*` : '*';
  return e.namespace ? `${e.namespace}/${name}` : name;
}

/** `pod default/web-1`, `exec of pod default/web-1`, `clusterrole admin`, `path /version`. */
export function targetLabel(e: NormalisedEvent): string {
  if (e.resource === '') return `path ${objectLabel(e)}`;
  const kind = singular(e.resource);
  const base = `${kind} ${objectLabel(e)}`;
  return e.subresource ? `${e.subresource} of ${base}` : base;
}

/**
 * The object part of an alert's group key: a controller-made object groups under its owner (the pods of one
 * ReplicaSet are one group), others under their own name.
 */
export function groupObject(e: NormalisedEvent): string {
  if (e.resource === '') return pathOf(e.event.requestURI);
  const owner = e.verb === 'create' ? controllerOwner(e.event) : '';
  const res = `${e.resource}${e.subresource ? '/' + e.subresource : ''}${e.apiGroup ? '.' + e.apiGroup : ''}`;
  return owner ? `${e.namespace}/${owner}` : `${res}:${objectLabel(e)}`;
}

export const PLACEHOLDERS = new Set([
  'user',
  'groups',
  'verb',
  'verbPast',
  'resource',
  'subresource',
  'kind',
  'namespace',
  'name',
  'object',
  'target',
  'sourceIP',
  'userAgent',
  'code',
  'decision',
  'command',
  'container',
  'impersonatedUser',
  'requestURI',
  'path',
  'cluster',
  'count',
  'window',
  'key',
]);

const TOKEN = /\{([A-Za-z][\w.-]*)\}/g;

/** Placeholders of a template that are neither known fields nor `details.<name>` of the rule. */
export function unknownPlaceholders(template: string, details: readonly string[]): string[] {
  const out: string[] = [];
  for (const m of template.matchAll(TOKEN)) {
    const k = m[1]!;
    if (PLACEHOLDERS.has(k)) continue;
    if (k.startsWith('details.') && details.includes(k.slice(8))) continue;
    out.push(k);
  }
  return out;
}

function show(v: unknown): string {
  try {
    return showValue(v);
  } catch {
    // A value nested deeper than the stack allows (a detail taken from a request body).
    return '[nested too deeply to show]';
  }
}

function showValue(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.map(showValue).join(', ');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export interface SummaryExtras {
  count?: number;
  window?: string;
  key?: string;
  details?: Record<string, unknown>;
}

export function renderSummary(template: string, e: NormalisedEvent, x: SummaryExtras = {}): string {
  const out = template.replace(TOKEN, (whole, k: string) => {
    switch (k) {
      case 'user':
        return e.user || '(unknown user)';
      case 'groups':
        return e.groups.join(', ');
      case 'verb':
        return e.verb;
      case 'verbPast':
        return verbPast(e.verb);
      case 'resource':
        return e.resource;
      case 'subresource':
        return e.subresource;
      case 'kind':
        return singular(e.resource);
      case 'namespace':
        return e.namespace;
      case 'name':
        return eventObjectName(e);
      case 'object':
        return objectLabel(e);
      case 'target':
        return targetLabel(e);
      case 'sourceIP':
        return e.sourceIP;
      case 'userAgent':
        return e.userAgent;
      case 'code':
        return String(e.code);
      case 'decision':
        return e.decision;
      case 'command':
        return e.command;
      case 'container':
        return e.container;
      case 'impersonatedUser':
        return e.impersonatedUser;
      case 'requestURI':
        return e.event.requestURI;
      case 'path':
        return pathOf(e.event.requestURI);
      case 'cluster':
        return e.cluster;
      case 'count':
        return x.count === undefined ? '' : String(x.count);
      case 'window':
        return x.window ?? '';
      case 'key':
        return x.key ?? '';
      default:
        if (k.startsWith('details.')) return show(x.details?.[k.slice(8)]);
        return whole;
    }
  });
  return out.replace(/\s+/g, ' ').trim();
}
