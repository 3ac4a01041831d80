/**
 * Which writers are alive, for the pending-detection marks (see SqliteStore.orphanBlobs): a mark names its writer as
 * "pid:instance".
 */
/** Writers open in this process (see ownerAlive). */
export const LIVE_OWNERS = new Set<string>();

/**
 * Whether the writer named by a pending mark may still finish it: a writer of this process while its SqliteStore is open,
 * or any writer of another process that is still running (a store is a local file, so its writers share this host).
 */
export function ownerAlive(owner: string): boolean {
  if (LIVE_OWNERS.has(owner)) return true;
  const pid = Number(owner.slice(0, owner.indexOf(':')));
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
