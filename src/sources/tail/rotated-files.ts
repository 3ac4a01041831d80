/**
 * The files of one audit log in the order they were written: its rotated copies beside it, oldest first, then the
 * live file. Rotated copies are recognised by name:
 *
 * - lumberjack (kube-apiserver's --audit-log-path): `audit-2026-11-01T10-00-00.000.log`, the rotation time (UTC, or
 *   local time with LocalTime) put before the extension, then `.gz` once compressed;
 * - logrotate: `audit.log.1` (a higher number is older), or with dateext `audit.log-20261101`, each maybe `.gz`.
 *
 * Order comes from the names, not from modification times: gzip writes a backup's `.gz` after its lines were written
 * (lumberjack compresses in the background, newest backups first), so mtimes misorder them. While a backup is being
 * compressed both `x.log` and `x.log.gz` exist and the `.gz` is incomplete: the plain file is the one listed (lumberjack
 * removes it only once the `.gz` is complete, so a `.gz` listed alone is complete).
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';

export type RotationScheme = 'lumberjack' | 'numbered' | 'dated';

export interface LogFile {
  path: string;
  name: string;
  /** The name without `.gz`: what a backup is called before and after compression. */
  base: string;
  gz: boolean;
  /** The live file (the tailed path itself). */
  live: boolean;
  scheme?: RotationScheme;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

const LUMBERJACK_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{3})$/;

interface Rank {
  scheme: RotationScheme;
  /** Smaller is older. */
  key: number | string;
}

/** How a name beside the live file `liveName` is a rotated copy of it, or undefined when it is not one. */
export function rotationRank(name: string, liveName: string): Rank | undefined {
  const base = name.endsWith('.gz') ? name.slice(0, -3) : name;
  if (base === liveName) return undefined;
  const ext = extname(liveName);
  const stem = liveName.slice(0, liveName.length - ext.length);
  if (base.startsWith(stem + '-') && base.endsWith(ext)) {
    const m = LUMBERJACK_TIME.exec(base.slice(stem.length + 1, base.length - ext.length));
    if (m) {
      const [, y, mo, d, h, mi, s, ms] = m.map(Number) as number[];
      return { scheme: 'lumberjack', key: Date.UTC(y!, mo! - 1, d!, h!, mi!, s!, ms!) };
    }
  }
  if (base.startsWith(liveName + '.')) {
    const n = base.slice(liveName.length + 1);
    if (/^\d+$/.test(n)) return { scheme: 'numbered', key: -Number(n) };
  }
  // dateext: a suffix of digits and date punctuation (`-20261101`, `-2026-11-01`, `-20261101-1761955200`), so that
  // `audit.log.lock` or `audit.log.bak` beside the log are not taken for its rotated files.
  if (/^[-.]\d[\dT:_.-]*$/.test(base.slice(liveName.length)) && base.startsWith(liveName)) return { scheme: 'dated', key: base };
  return undefined;
}

const SCHEME_ORDER: Record<RotationScheme, number> = { dated: 0, numbered: 1, lumberjack: 2 };

/** Every file of the log at `livePath`, oldest first, the live file (when it exists) last. */
export async function logFilesInWriteOrder(livePath: string): Promise<LogFile[]> {
  // A file that vanishes between the directory's listing and its stat is a backup just compressed (its .gz was made
  // before it was removed, after the listing), and a live file that changed is a rotation during the listing: list
  // again, or a backup would be missing from this listing.
  for (let attempt = 0; ; attempt++) {
    const files = await listOnce(livePath);
    if (files || attempt >= 20) return files ?? [];
  }
}

async function listOnce(livePath: string): Promise<LogFile[] | undefined> {
  const dir = dirname(livePath);
  const liveName = basename(livePath);
  // The live file before the listing: if a rotation renames it while the directory is read, the listing may hold
  // neither its backup's name (read before the rename) nor it as the live file (the path names the new one when it is
  // stat'ed), and the new file would be taken for the successor of the one before.
  const liveBefore = await stat(livePath).catch(() => undefined);
  const ranked: { f: LogFile; rank: Rank }[] = [];
  for (const name of await readdir(dir)) {
    const rank = rotationRank(name, liveName);
    if (!rank) continue;
    let st;
    try {
      st = await stat(join(dir, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      continue;
    }
    if (!st.isFile()) continue;
    const gz = name.endsWith('.gz');
    ranked.push({
      f: {
        path: join(dir, name),
        name,
        base: gz ? name.slice(0, -3) : name,
        gz,
        live: false,
        scheme: rank.scheme,
        dev: st.dev,
        ino: st.ino,
        size: st.size,
        mtimeMs: st.mtimeMs,
      },
      rank,
    });
  }
  // A backup being compressed: keep the plain file, which is complete, and not its half-written .gz.
  const plain = new Set(ranked.filter((r) => !r.f.gz).map((r) => r.f.base));
  const files = ranked.filter((r) => !(r.f.gz && plain.has(r.f.base)));
  files.sort((a, b) => {
    const s = SCHEME_ORDER[a.rank.scheme] - SCHEME_ORDER[b.rank.scheme];
    if (s !== 0) return s;
    const ka = a.rank.key;
    const kb = b.rank.key;
    if (ka !== kb) return typeof ka === 'number' && typeof kb === 'number' ? ka - kb : String(ka) < String(kb) ? -1 : 1;
    return a.f.mtimeMs - b.f.mtimeMs;
  });
  const out = files.map((r) => r.f);
  const st = await stat(livePath).catch(() => undefined);
  if (liveBefore && (!st || st.ino !== liveBefore.ino || st.dev !== liveBefore.dev)) return undefined;
  if (st?.isDirectory()) throw Object.assign(new Error(`EISDIR: ${livePath} is a directory, not a log file`), { code: 'EISDIR' });
  if (st?.isFile())
    out.push({ path: livePath, name: liveName, base: liveName, gz: false, live: true, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });
  return out;
}
