import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { log } from '../log.js';
import type { BatchSink } from '../pipeline/pipeline.js';

/**
 * `kaudit serve --demo` after the sample import: every so often, one request of the sample log that raises an alert
 * (an exec into a kube-system pod, a binding to cluster-admin, a secret read) is sent again as if it happened now,
 * with a new audit id, so a newcomer watching the console sees a live alert arrive.
 */

export interface DemoReplayOptions {
  sink: BatchSink;
  sampleLog: string;
  /** Before the first replay (default 8 s) and between replays (default 30 s). */
  firstMs?: number;
  everyMs?: number;
}

/** The sample's requests worth replaying: the alert-raising kinds above, every stage of each. */
function pickTemplates(text: string): object[][] {
  const byRequest = new Map<string, object[]>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let e: { auditID?: string; objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string }; verb?: string };
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    const o = e.objectRef ?? {};
    const interesting =
      (o.resource === 'pods' && (o.subresource === 'exec' || o.subresource === 'attach') && o.namespace === 'kube-system') ||
      (o.resource === 'clusterrolebindings' && e.verb === 'create') ||
      (o.resource === 'secrets' && (e.verb === 'get' || e.verb === 'list') && o.namespace === 'kube-system');
    if (!interesting || !e.auditID) continue;
    const list = byRequest.get(e.auditID) ?? [];
    list.push(e);
    byRequest.set(e.auditID, list);
  }
  // One template per kind of request, so the replays differ.
  const seen = new Set<string>();
  const out: object[][] = [];
  for (const events of byRequest.values()) {
    const o = (events[0] as { objectRef?: { resource?: string; subresource?: string } }).objectRef ?? {};
    const kind = `${o.resource}/${o.subresource ?? ''}`;
    if (seen.has(kind)) continue;
    seen.add(kind);
    out.push(events);
  }
  return out;
}

export function startDemoReplay(o: DemoReplayOptions): { stop(): void } {
  let templates: object[][];
  try {
    templates = pickTemplates(readFileSync(o.sampleLog, 'utf8'));
  } catch (e) {
    log.warn(`demo: no live replay (${(e as Error).message})`);
    return { stop() {} };
  }
  if (templates.length === 0) return { stop() {} };
  let n = 0;
  let timer: NodeJS.Timeout | undefined;
  const replay = () => {
    const events = templates[n++ % templates.length]!;
    const auditID = randomUUID();
    const now = Date.now();
    const records = events.map((e, i) => {
      const t = new Date(now + i * 15).toISOString().replace('Z', '000Z');
      const copy = {
        ...(e as Record<string, unknown>),
        auditID,
        requestReceivedTimestamp: new Date(now).toISOString().replace('Z', '000Z'),
        stageTimestamp: t,
      };
      return { value: copy, where: `demo:${n}:${i}` };
    });
    o.sink.submit({ source: 'demo-replay', cluster: 'demo', records }).then(
      (r) => {
        // A request that raises nothing here (rules tuned differently) is not replayed again.
        if (r.alerts.length === 0 && templates.length > 1) templates = templates.filter((t) => t !== events);
        log.info(
          `demo: replayed a ${(events[0] as { verb?: string }).verb} request as if just now (${r.alerts.length} alert${r.alerts.length === 1 ? '' : 's'})`,
        );
      },
      (e) => log.warn(`demo: replay failed: ${(e as Error).message}`),
    );
    timer = setTimeout(replay, o.everyMs ?? 30_000);
    timer.unref();
  };
  timer = setTimeout(replay, o.firstMs ?? 8_000);
  timer.unref();
  return {
    stop() {
      if (timer) clearTimeout(timer);
    },
  };
}
