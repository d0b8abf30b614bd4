import { mkdir, statfs } from 'node:fs/promises';

/** How often a worker short of disk space looks again. */
const SPACE_RECHECK_MS = 3000;

/**
 * The worker's `min_free_mb`: a frame or probe needs room in the cache folder. Short of it,
 * the worker hands its work back and waits, looking again now and then, until there is room.
 */
export class DiskSpace {
  private waiting = false;

  constructor(
    private readonly folder: string,
    private readonly minFreeMb: number,
    /** The worker's name, for the message. */
    private readonly worker: string,
  ) {}

  /** Why the folder cannot take more work, or null when it has room. */
  async shortage(): Promise<string | null> {
    await mkdir(this.folder, { recursive: true });
    const { bavail, bsize } = await statfs(this.folder);
    const freeMb = (bavail * bsize) / 1024 / 1024;
    if (freeMb >= this.minFreeMb) return null;
    return `worker ${this.worker} has only ${freeMb.toFixed(0)} MiB free in ${this.folder} (min_free_mb = ${this.minFreeMb}); free space there`;
  }

  /** Calls `onRoom` once the folder has room again (unless `stopped` says the worker is gone); one wait at a time. */
  waitForRoom(onRoom: () => void, stopped: () => boolean): void {
    if (this.waiting) return;
    this.waiting = true;
    const check = setInterval(() => {
      void this.shortage().then((short) => {
        if (short || stopped()) return;
        clearInterval(check);
        this.waiting = false;
        onRoom();
      });
    }, SPACE_RECHECK_MS);
    check.unref();
  }
}
