import { clusterName, isObject, typeName } from './common.js';
import type { Envelope, EnvelopeItem } from './types.js';

/**
 * Azure Kubernetes Service audit logs: Azure Monitor diagnostic records of category `kube-audit` (every event) or
 * `kube-audit-admin` (all but get and list), whose `properties.log` is the audit event's JSON text. Shapes read:
 * `{"records": [...]}` documents (what a diagnostic setting sends to Event Hubs) and single records (a storage
 * account's `insights-logs-kube-audit` blobs hold one a line). The cluster comes from `resourceId`
 * (`/SUBSCRIPTIONS/.../PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/NAME`, which Azure writes in capitals;
 * Azure resource names are case-insensitive, so it is lower-cased).
 */

export const AKS_CATEGORIES = new Set(['kube-audit', 'kube-audit-admin']);

export function clusterOfResourceId(id: unknown): string | undefined {
  if (typeof id !== 'string') return undefined;
  const m = /\/managedclusters\/([^/]+)\/?$/i.exec(id);
  return m ? clusterName(m[1]!.toLowerCase()) : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return isObject(v) && typeof v.category === 'string' && isObject(v.properties) && ('resourceId' in v || 'time' in v || 'operationName' in v);
}

function recordItem(r: unknown, where: string | undefined, out: EnvelopeItem[]): void {
  const w = (s: string) => (where === undefined ? s : `${where} ${s}`);
  if (!isObject(r)) {
    out.push({ error: `diagnostic record is ${typeName(r)}, not an object`, where: where });
    return;
  }
  if (!AKS_CATEGORIES.has(r.category as string)) {
    out.push({ error: `diagnostic record of category ${JSON.stringify(r.category)}, not kube-audit or kube-audit-admin`, where });
    return;
  }
  const props = r.properties;
  const log = isObject(props) ? props.log : undefined;
  if (typeof log !== 'string' && !isObject(log)) {
    out.push({ error: `diagnostic record properties.log is ${typeName(log)}, not the event's JSON text`, where });
    return;
  }
  const cluster = clusterOfResourceId(r.resourceId);
  const item: EnvelopeItem = { value: log, where: w('properties.log') };
  if (cluster !== undefined) item.cluster = cluster;
  out.push(item);
}

export const aks: Envelope = {
  name: 'aks',
  matches(v) {
    if (!isObject(v)) return false;
    if (Array.isArray(v.records)) return v.records.length === 0 || isRecord(v.records[0]) || (isObject(v.records[0]) && 'category' in v.records[0]);
    return isRecord(v);
  },
  unwrap(v) {
    const out: EnvelopeItem[] = [];
    if (isObject(v) && Array.isArray(v.records)) v.records.forEach((r, i) => recordItem(r, `records[${i}]`, out));
    else recordItem(v, undefined, out);
    return out;
  },
};
