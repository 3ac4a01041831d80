/**
 * The patterns rules, lists and tuning use for names: an exact string, a glob (`*` any run of characters, `?` one
 * character) or a regular expression written `re:...` (`rei:...` ignores case). Compiled once into a single test: a
 * Set lookup for the exact strings, one combined RegExp for the rest. (Not `/.../`: lists hold paths.)
 */
export type StringTest = (s: string) => boolean;

const GLOB_SPECIAL = /[*?]/;

function escapeRegExp(s: string): string {
  return s.replace(/[.+^${}()|[\]\\*?]/g, '\\$&');
}

export function globToRegExpSource(glob: string): string {
  let out = '';
  for (const ch of glob) {
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else out += escapeRegExp(ch);
  }
  return out;
}

/** Whether a pattern is a regular expression (`re:...` or `rei:...`). */
export function isRegexPattern(p: string): boolean {
  return p.startsWith('re:') || p.startsWith('rei:');
}

function regexSource(p: string): string {
  return p.startsWith('rei:') ? p.slice(4) : p.slice(3);
}

/** Throws with a readable message when a pattern is a malformed regular expression. */
export function checkPattern(p: string): void {
  if (isRegexPattern(p)) new RegExp(regexSource(p));
}

const NEVER: StringTest = () => false;

export function compilePatterns(patterns: readonly string[]): StringTest {
  if (patterns.length === 0) return NEVER;
  const exact = new Set<string>();
  const sources: string[] = [];
  const ci: string[] = [];
  for (const p of patterns) {
    if (isRegexPattern(p)) {
      if (p.startsWith('rei:')) ci.push(`(?:${regexSource(p)})`);
      else sources.push(`(?:${regexSource(p)})`);
    } else if (GLOB_SPECIAL.test(p)) sources.push(`(?:^${globToRegExpSource(p)}$)`);
    else exact.add(p);
  }
  const re = sources.length ? new RegExp(sources.join('|')) : undefined;
  const reI = ci.length ? new RegExp(ci.join('|'), 'i') : undefined;
  if (!re && !reI) {
    if (exact.size === 1) {
      const only = [...exact][0]!;
      return (s) => s === only;
    }
    return (s) => exact.has(s);
  }
  return (s) => exact.has(s) || (re !== undefined && re.test(s)) || (reI !== undefined && reI.test(s));
}

/**
 * Host path prefixes: `/etc` matches `/etc` and `/etc/kubernetes` but not `/etcd`; `/` matches only the root itself
 * (every path is under it, and mounting `/` is what matters). Trailing slashes and `.` segments are normalised first,
 * so `/etc/` and `/./etc` count as `/etc`.
 */
export function normaliseHostPath(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return '/' + parts.join('/');
}

export function compilePathPrefixes(prefixes: readonly string[]): StringTest {
  const norm = prefixes.map(normaliseHostPath);
  return (path: string) => {
    const p = normaliseHostPath(path);
    for (const pre of norm) {
      if (pre === '/') {
        if (p === '/') return true;
      } else if (p === pre || p.startsWith(pre + '/')) return true;
    }
    return false;
  };
}

/** Text patterns (plain strings are substrings, `re:` regular expressions), case-insensitive, for free text. */
export function compileTextPatterns(patterns: readonly string[]): RegExp | undefined {
  if (patterns.length === 0) return undefined;
  const parts = patterns.map((p) => (isRegexPattern(p) ? `(?:${regexSource(p)})` : escapeRegExp(p)));
  return new RegExp(parts.join('|'), 'i');
}
