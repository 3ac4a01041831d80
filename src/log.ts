/**
 * One-line log messages on stderr. Never pass secrets or tokens here: messages are written as given.
 * Repeated messages of one kind are rate-limited so a flood of bad input cannot flood the log.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

let minLevel: LogLevel = (process.env.KAUDIT_LOG_LEVEL as LogLevel) in RANK ? (process.env.KAUDIT_LOG_LEVEL as LogLevel) : 'info';
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(l: LogLevel): void {
  minLevel = l;
}

export function setLogSink(fn: (line: string) => void): void {
  sink = fn;
}

const buckets = new Map<string, { windowStart: number; n: number; suppressed: number }>();

function emit(level: LogLevel, msg: string, kind?: string): void {
  if (RANK[level] < RANK[minLevel]) return;
  const oneLine = msg.replace(/[\r\n]+/g, ' ');
  if (kind) {
    // At most 20 messages of one kind per 10 s; then a count of what was suppressed.
    const now = Date.now();
    let b = buckets.get(kind);
    if (!b || now - b.windowStart > 10_000) {
      if (b && b.suppressed > 0) sink(`${new Date(now).toISOString()} ${level} ${kind}: ${b.suppressed} more similar messages suppressed`);
      b = { windowStart: now, n: 0, suppressed: 0 };
      buckets.set(kind, b);
    }
    if (++b.n > 20) {
      b.suppressed++;
      return;
    }
  }
  sink(`${new Date().toISOString()} ${level} ${oneLine}`);
}

export const log = {
  debug: (m: string) => emit('debug', m),
  info: (m: string) => emit('info', m),
  warn: (m: string, kind?: string) => emit('warn', m, kind),
  error: (m: string, kind?: string) => emit('error', m, kind),
};
