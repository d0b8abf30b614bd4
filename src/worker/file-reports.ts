import { MAX_FILES_PER_MESSAGE, type WorkerMessage } from '../protocol/index.ts';
import { heldFiles } from './cache-paths.ts';

/**
 * Tells the server which files this worker holds, so it can point other workers here:
 * the whole cache on every connect (`reset`), then each file as it arrives or is evicted.
 * A report that cannot be sent (disconnected) is dropped: the next connect lists all.
 */
export class FileReports {
  constructor(
    private readonly cacheDir: string,
    private readonly send: (message: WorkerMessage) => boolean,
  ) {}

  /** Lists every file the cache holds, in messages of at most MAX_FILES_PER_MESSAGE. */
  async connected(): Promise<void> {
    const held = await heldFiles(this.cacheDir);
    for (let start = 0; start === 0 || start < held.length; start += MAX_FILES_PER_MESSAGE) {
      if (!this.send({ type: 'files', added: held.slice(start, start + MAX_FILES_PER_MESSAGE), removed: [], reset: start === 0 })) return;
    }
  }

  added(sha256: string): void {
    this.send({ type: 'files', added: [sha256], removed: [], reset: false });
  }

  removed(sha256s: readonly string[]): void {
    for (let start = 0; start < sha256s.length; start += MAX_FILES_PER_MESSAGE) {
      this.send({ type: 'files', added: [], removed: sha256s.slice(start, start + MAX_FILES_PER_MESSAGE), reset: false });
    }
  }
}
