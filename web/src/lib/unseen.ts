import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type AlertRow, type Page } from './api.js';
import { AlertFeed } from './feed.js';

/**
 * The count of alerts that arrived while the analyst was on another page, for the navigation's badge: an analyst
 * reading a timeline must still see that something new fired. While `counting` (signed in, off the Alerts page) a
 * feed runs that only counts (it keeps no alerts); opening the Alerts page shows them, so the count is cleared and
 * the feed closed (that page runs its own).
 *
 * "Arrived while elsewhere" is measured from a resume point: the newest alert id the Alerts page showed, when it
 * showed every alert (no filter; a filtered page's newest id can be far behind), else the newest stored alert when
 * the analyst left or, if the console was opened elsewhere, when it was opened. Alerts already stored then are the
 * history, not news.
 */
export function useUnseenElsewhere(counting: boolean): { unseen: number; seen: (id: number) => void } {
  const [unseen, setUnseen] = useState(0);
  /** The highest alert id the (unfiltered) Alerts page has shown; 0 when it has not or was filtered. */
  const seenRef = useRef(0);
  useEffect(() => {
    if (!counting) {
      setUnseen(0);
      return;
    }
    let feed: AlertFeed | undefined;
    let gone = false;
    const start = (after: number) => {
      if (gone) return;
      feed = new AlertFeed({
        after,
        onState: () => {},
        // Only counted: the Alerts page loads them itself when opened.
        onAlerts: (batch) => setUnseen((n) => n + batch.length),
        flushMs: 250,
      });
    };
    const from = seenRef.current;
    seenRef.current = 0;
    if (from > 0) start(from);
    else
      api<Page<AlertRow>>('/alerts', { query: { limit: 1 } })
        .then((page) => start(page.items.reduce((m, a) => Math.max(m, a.id), 0)))
        // The badge is a convenience: without the newest id there is no resume point, so nothing is counted.
        .catch(() => {});
    return () => {
      gone = true;
      feed?.close();
    };
  }, [counting]);
  return {
    unseen,
    seen: (id: number) => {
      seenRef.current = id;
    },
  };
}
