import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/**
 * Stacked bars over time with uPlot (canvas, ~50 kB, no dependencies): each series drawn as the running sum of
 * itself and those below it, largest sum first so every band shows. Dragging across the chart selects a time range
 * (`onBrush`).
 */

export interface Timeline {
  buckets: string[];
  bucketSeconds: number;
  series: { name: string; counts: number[] }[];
}

const PALETTE: Record<string, string> = { critical: '#b3001b', high: '#e4572e', medium: '#f0a202', low: '#4f86c6', info: '#8a94a6' };
const CYCLE = ['#2b6cb0', '#2f855a', '#c05621', '#6b46c1', '#b83280', '#2c7a7b', '#975a16', '#4a5568', '#a0aec0'];

export function StackedChart(props: { data: Timeline; title: string; onBrush?: (since: Date, until: Date) => void; height?: number }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const box = el.current;
    if (!box || props.data.buckets.length === 0) return;
    const xs = props.data.buckets.map((b) => new Date(b).getTime() / 1000);
    const sums: number[][] = [];
    let acc = new Array(xs.length).fill(0);
    for (const s of props.data.series) {
      acc = acc.map((v, i) => v + (s.counts[i] ?? 0));
      sums.push(acc);
    }
    const order = props.data.series.map((_, i) => i).reverse();
    // Bars start at their bucket's start and fill 90% of it (at least 3 px, so a lone bucket in a long window shows).
    const bars = uPlot.paths.bars!({ size: [0.9, Infinity, 3], align: 1 });
    const opts: uPlot.Options = {
      width: Math.max(280, box.clientWidth),
      height: props.height ?? 240,
      legend: { show: true, live: false },
      cursor: { drag: { x: true, y: false, setScale: false } },
      // The last bucket ends one bucket after its start.
      scales: { x: { time: true, range: (_u, min, max) => [min, max + props.data.bucketSeconds] } },
      axes: [{ stroke: '#445' }, { stroke: '#445', size: 48 }],
      series: [
        {},
        ...order.map((i) => {
          const name = props.data.series[i]!.name;
          const color = PALETTE[name] ?? CYCLE[i % CYCLE.length]!;
          return {
            label: name,
            stroke: color,
            fill: color,
            width: 0,
            paths: bars,
            points: { show: false },
            value: (_u: uPlot, _v: number, _s: number, idx: number | null) => (idx === null ? '' : String(props.data.series[i]!.counts[idx] ?? 0)),
          };
        }),
      ],
      hooks: {
        setSelect: [
          (u) => {
            if (!props.onBrush || u.select.width < 4) return;
            const a = u.posToVal(u.select.left, 'x');
            const b = u.posToVal(u.select.left + u.select.width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            props.onBrush(new Date(a * 1000), new Date(b * 1000));
          },
        ],
      },
    };
    const plot = new uPlot(opts, [xs, ...order.map((i) => sums[i]!)] as uPlot.AlignedData, box);
    const ro = new ResizeObserver(() => plot.setSize({ width: Math.max(280, box.clientWidth), height: props.height ?? 240 }));
    ro.observe(box);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [props.data]);
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      {props.data.buckets.length === 0 ? (
        <p class="muted">No data in this window.</p>
      ) : (
        <div
          ref={el}
          role="img"
          aria-label={`${props.title}: ${props.data.series.map((s) => `${s.name} ${s.counts.reduce((a, b) => a + b, 0)}`).join(', ')}`}
        />
      )}
    </figure>
  );
}
