/**
 * Durations as users write them in configs, rules and time arguments: `500ms`, `45s`, `10m`, `12h`, `30d`, `2w`.
 * Milliseconds, or undefined when the text is not a duration (callers say what they accept in their own errors).
 */
const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$/;
const MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

export function durationMs(s: string): number | undefined {
  const m = DURATION.exec(s);
  return m ? Number(m[1]) * MS[m[2] as keyof typeof MS] : undefined;
}
