import { durationMs } from './duration.js';

/**
 * RFC 3339 timestamps as the apiserver writes them (metav1.MicroTime: up to microseconds, usually `Z`), to and from
 * microseconds since the epoch. Date keeps only milliseconds, so the fraction is handled separately.
 */
const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:?\d\d)$/;

let lastPrefix = '';
let lastPrefixMs = 0;

function digits(s: string, from: number, n: number): number {
  let v = 0;
  for (let i = from; i < from + n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

let lastInput = '';
let lastOutput = NaN;

/** Microseconds since the epoch, or NaN when `s` is not an RFC 3339 timestamp. */
export function parseMicros(s: string): number {
  // Validation and normalisation of an event both ask for its time: the second is answered from here.
  if (s === lastInput) return lastOutput;
  lastOutput = parseMicrosUncached(s);
  lastInput = s;
  return lastOutput;
}

function parseMicrosUncached(s: string): number {
  // Fast path for what the apiserver writes: 2024-05-01T10:00:00.123456Z (UTC, up to 9 fraction digits). Events
  // come in bursts within one second, so the date-time part is cached.
  const n = s.length;
  if (n >= 20 && n <= 30 && s.charCodeAt(n - 1) === 90 /* Z */ && s.charCodeAt(10) === 84 /* T */ && (n === 20 || s.charCodeAt(19) === 46)) {
    const prefix = s.slice(0, 19);
    let ms: number;
    if (prefix === lastPrefix) ms = lastPrefixMs;
    else {
      const y = digits(s, 0, 4),
        mo = digits(s, 5, 2),
        d = digits(s, 8, 2),
        h = digits(s, 11, 2),
        mi = digits(s, 14, 2),
        se = digits(s, 17, 2);
      if (
        y < 0 ||
        mo < 1 ||
        mo > 12 ||
        d < 1 ||
        d > 31 ||
        h < 0 ||
        h > 23 ||
        mi < 0 ||
        mi > 59 ||
        se < 0 ||
        se > 60 ||
        s.charCodeAt(4) !== 45 ||
        s.charCodeAt(7) !== 45 ||
        s.charCodeAt(13) !== 58 ||
        s.charCodeAt(16) !== 58
      )
        return parseMicrosSlow(s);
      ms = utcMs(y, mo - 1, d, h, mi, se);
      lastPrefix = prefix;
      lastPrefixMs = ms;
    }
    if (n === 20) return ms * 1000;
    const fracLen = n - 21;
    if (fracLen < 1 || fracLen > 9) return parseMicrosSlow(s);
    const f = digits(s, 20, fracLen);
    if (f < 0) return parseMicrosSlow(s);
    const micros = fracLen <= 6 ? f * 10 ** (6 - fracLen) : Math.floor(f / 10 ** (fracLen - 6));
    return ms * 1000 + micros;
  }
  return parseMicrosSlow(s);
}

/** Date.UTC, but a year below 100 is that year (Date.UTC reads 0-99 as 1900-1999). */
function utcMs(y: number, mo: number, d: number, h: number, mi: number, s: number): number {
  if (y >= 100) return Date.UTC(y, mo, d, h, mi, s);
  const t = new Date(Date.UTC(2000, mo, d, h, mi, s));
  t.setUTCFullYear(y);
  return t.getTime();
}

function parseMicrosSlow(s: string): number {
  const m = RFC3339.exec(s);
  if (!m) return NaN;
  if (+m[2]! < 1 || +m[2]! > 12 || +m[3]! < 1 || +m[3]! > 31 || +m[4]! > 23 || +m[5]! > 59 || +m[6]! > 60) return NaN;
  const ms = utcMs(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
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
  const ago = durationMs(s);
  if (ago !== undefined) return Math.round((now - ago) * 1000);
  if (/^\d{4}-\d\d-\d\d$/.test(s)) return Date.parse(s + 'T00:00:00Z') * 1000;
  if (/^\d{9,11}(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1e6);
  const us = parseMicros(s);
  if (Number.isNaN(us)) {
    throw new Error(`bad time "${s}": use RFC 3339 (2024-05-01T10:00:00Z), a date (2024-05-01), epoch seconds, or a duration ago (30m, 2h, 7d)`);
  }
  return us;
}
