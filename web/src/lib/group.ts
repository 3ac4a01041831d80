import type { AlertRow } from './api.js';

/** Repeats of one rule on one identity and object, shown as one row with their count. */

export interface Group {
  key: string;
  latest: AlertRow;
  count: number;
  ids: number[];
}

const groupKey = (a: AlertRow) => `${a.rule}|${a.cluster}|${a.user}|${a.objectRef?.namespace ?? ''}|${a.objectRef?.name ?? ''}`;

/** Folds alerts (newest first) into groups keyed by rule, identity and object, newest group first. */
export function groupAlerts(alerts: AlertRow[]): Group[] {
  const byKey = new Map<string, Group>();
  const out: Group[] = [];
  for (const a of alerts) {
    const k = groupKey(a);
    const g = byKey.get(k);
    if (g) {
      g.count += a.count ?? 1;
      g.ids.push(a.id);
    } else {
      const ng = { key: k, latest: a, count: a.count ?? 1, ids: [a.id] };
      byKey.set(k, ng);
      out.push(ng);
    }
  }
  return out;
}
