/**
 * RFC 3339 timestamps as the apiserver writes them (metav1.MicroTime: up to microseconds, usually `Z`), to and from
 * microseconds since the epoch. Date keeps only milliseconds, so the fraction is handled separately.
 */
const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:?\d\d)$/;

/** Microseconds since the epoch, or NaN when `s` is not an RFC 3339 timestamp. */
export function parseMicros(s: string): number {
  const m = RFC3339.exec(s);
  if (!m) return NaN;
  const ms = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  if (Number.isNaN(ms)) return NaN;
  const frac = m[7] ? Math.floor(Number((m[7] + '000000').slice(0, 6))) : 0;
  let offsetMin = 0;
  const tz = m[8]!;
  if (tz !== 'Z' && tz !== 'z') {
    const sign = tz[0] === '-' ? -1 : 1;
    const digits = tz.slice(1).replace(':', '');
    offsetMin = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4)));
  }
  return (ms - offsetMin * 60_000) * 1000 + frac;
}

/** RFC 3339 in UTC with exactly six fractional digits. */
export function formatMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString(); // 2024-01-02T03:04:05.678Z
  const micros = String(us - Math.floor(us / 1_000_000) * 1_000_000).padStart(6, '0');
  return `${iso.slice(0, 19)}.${micros}Z`;
}

/**
 * Accepts what users type for --since/--until: RFC 3339, a date (`2024-05-01`), epoch seconds, or a duration before
 * now (`15m`, `2h`, `7d`). Returns microseconds since the epoch, or throws with a message that says what is accepted.
 */
export function parseTimeArg(s: string, now = Date.now()): number {
  const d = /^(\d+(?:\.\d+)?)(s|m|h|d|w)$/.exec(s.trim());
  if (d) {
    const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[d[2] as 's' | 'm' | 'h' | 'd' | 'w'];
    return Math.round((now - Number(d[1]) * unit * 1000) * 1000);
  }
  if (/^\d{4}-\d\d-\d\d$/.test(s)) return Date.parse(s + 'T00:00:00Z') * 1000;
  if (/^\d{9,11}(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1e6);
  const us = parseMicros(s);
  if (Number.isNaN(us)) {
    throw new Error(`bad time "${s}": use RFC 3339 (2024-05-01T10:00:00Z), a date (2024-05-01), epoch seconds, or a duration ago (30m, 2h, 7d)`);
  }
  return us;
}
