/**
 * A small Prometheus registry: counters and gauges with labels, rendered in the text exposition format. Gauges may
 * be computed at scrape time.
 */
import { getHeapStatistics } from 'node:v8';

type Labels = Record<string, string>;

function labelKey(l: Labels | undefined): string {
  if (!l) return '';
  const keys = Object.keys(l).sort();
  if (keys.length === 0) return '';
  return '{' + keys.map((k) => `${k}="${String(l[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',') + '}';
}

interface Family {
  type: 'counter' | 'gauge';
  help: string;
  values: Map<string, number>;
  collect?: () => { labels?: Labels; value: number }[];
}

export class Metrics {
  private families = new Map<string, Family>();
  private extra: (() => string)[] = [];

  private family(name: string, type: Family['type'], help: string): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { type, help, values: new Map() };
      this.families.set(name, f);
    }
    return f;
  }

  counter(name: string, help: string) {
    const f = this.family(name, 'counter', help);
    return {
      inc: (labels?: Labels, by = 1) => {
        const k = labelKey(labels);
        f.values.set(k, (f.values.get(k) ?? 0) + by);
      },
      get: (labels?: Labels) => f.values.get(labelKey(labels)) ?? 0,
    };
  }

  gauge(name: string, help: string) {
    const f = this.family(name, 'gauge', help);
    return {
      set: (v: number, labels?: Labels) => void f.values.set(labelKey(labels), v),
      get: (labels?: Labels) => f.values.get(labelKey(labels)) ?? 0,
    };
  }

  /** A gauge whose values are computed when scraped. */
  collect(name: string, help: string, fn: () => { labels?: Labels; value: number }[]): void {
    const f = this.family(name, 'gauge', help);
    f.collect = fn;
  }

  /** Text another module renders itself (e.g. Kafka consumer lag). */
  addRenderer(fn: () => string): void {
    this.extra.push(fn);
  }

  render(): string {
    let out = '';
    for (const [name, f] of this.families) {
      out += `# HELP ${name} ${f.help}\n# TYPE ${name} ${f.type}\n`;
      if (f.collect) {
        try {
          for (const v of f.collect()) out += `${name}${labelKey(v.labels)} ${v.value}\n`;
        } catch {
          // A failing collector must not break the scrape.
        }
      }
      for (const [k, v] of f.values) out += `${name}${k} ${v}\n`;
    }
    for (const fn of this.extra) out += fn();
    return out;
  }
}

/**
 * The process's memory, under the names Prometheus' client libraries use: the resident set of the whole process and
 * this thread's V8 heap and external memory (the store's writer thread has a heap of its own, in the resident set).
 */
export function registerProcessMetrics(m: Metrics): void {
  m.collect('process_resident_memory_bytes', 'Resident memory size in bytes', () => [{ value: process.memoryUsage.rss() }]);
  // V8's own figures, without the resident-set read that process.memoryUsage() adds each time.
  m.collect('nodejs_heap_size_used_bytes', 'V8 heap in use (main thread), bytes', () => [{ value: getHeapStatistics().used_heap_size }]);
  m.collect('nodejs_heap_size_total_bytes', 'V8 heap reserved (main thread), bytes', () => [{ value: getHeapStatistics().total_heap_size }]);
  m.collect('nodejs_external_memory_bytes', 'Memory of objects outside the V8 heap (buffers), bytes', () => [{ value: getHeapStatistics().external_memory }]);
}
