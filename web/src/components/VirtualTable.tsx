import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/**
 * A table that stays fast at 100,000 rows: only the rows in view (and a few either side) are in the DOM, at a fixed
 * row height; scrolling near the end asks for the next page (the API's cursor).
 */

export interface Column<T> {
  key: string;
  label: string;
  width: number;
  render?: (row: T) => ComponentChildren;
  /** The value exported to CSV (default row[key]). */
}

export const ROW_HEIGHT = 28;
const OVERSCAN = 10;
/** Row elements recycled while scrolling: more than ever fit a screen plus the overscan either side. */
const SLOTS = 256;

export function VirtualTable<T extends { id?: number }>(props: {
  rows: T[];
  columns: Column<T>[];
  label: string;
  height?: number;
  hasMore?: boolean;
  loading?: boolean;
  onMore?: () => void;
  onRow?: (row: T) => void;
}) {
  const { rows, columns } = props;
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [viewH, setViewH] = useState(props.height ?? 520);
  const width = columns.reduce((s, c) => s + c.width, 0);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setViewH(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  // Ask for more when the end is within two screens.
  useEffect(() => {
    if (props.hasMore && !props.loading && (rows.length - 1) * ROW_HEIGHT - top < viewH * 2) props.onMore?.();
  }, [top, rows.length, props.hasMore, props.loading, viewH]);
  let frame = 0;
  const onScroll = () => {
    if (frame) return;
    // One state update per animation frame, however many scroll events arrive.
    frame = requestAnimationFrame(() => {
      frame = 0;
      setTop(box.current?.scrollTop ?? 0);
    });
  };
  const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((top + viewH) / ROW_HEIGHT) + OVERSCAN);
  const visible = rows.slice(first, last);
  const cols = columns.map((c) => `${c.width}px`).join(' ');
  return (
    <div class="vt">
      <div
        class="vt-scroll"
        ref={box}
        onScroll={onScroll}
        tabIndex={0}
        data-rows={rows.length}
        role="table"
        aria-label={props.label}
        aria-rowcount={rows.length + 1}
      >
        <div class="vt-head" role="row" style={{ gridTemplateColumns: cols, width: `${width}px` }}>
          {columns.map((c) => (
            <div role="columnheader" key={c.key}>
              {c.label}
            </div>
          ))}
        </div>
        <div class="vt-body" role="rowgroup" style={{ height: `${rows.length * ROW_HEIGHT}px`, width: `${width}px` }}>
          {visible.map((r, i) => (
            <div
              role="row"
              aria-rowindex={first + i + 2}
              class={`vt-row${props.onRow ? ' clickable' : ''}`}
              // Keyed by slot, not by row: scrolling reuses the same few row elements and only rewrites their
              // text and position, instead of building a screenful of new ones a frame.
              key={(first + i) % SLOTS}
              style={{ transform: `translateY(${(first + i) * ROW_HEIGHT}px)`, gridTemplateColumns: cols }}
              onClick={props.onRow ? () => props.onRow!(r) : undefined}
            >
              {columns.map((c) => (
                <div role="cell" key={c.key} title={String((r as Record<string, unknown>)[c.key] ?? '')}>
                  {c.render ? c.render(r) : String((r as Record<string, unknown>)[c.key] ?? '')}
                </div>
              ))}
            </div>
          ))}
        </div>
      </div>
      <p class="vt-foot" aria-live="polite">
        {rows.length.toLocaleString('en')} rows{props.loading ? ', loading…' : props.hasMore ? ', more on scroll' : ''}
      </p>
    </div>
  );
}
