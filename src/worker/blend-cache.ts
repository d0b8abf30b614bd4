import { existsSync } from 'node:fs';
import type { BlendRef } from '../protocol/index.ts';
import { touch } from './cache-budget.ts';
import { cachedBlendPath } from './cache-paths.ts';
import type { FileFetcher } from './file-fetcher.ts';

/**
 * .blend files by SHA-256: each is fetched once per worker (from a peer or the server),
 * verified, and kept, so a job's hundredth frame costs no transfer. Concurrent requests
 * share one fetch.
 */
export class BlendCache {
  private readonly downloads = new Map<string, Promise<string>>();

  constructor(
    private readonly cacheDir: string,
    private readonly fetcher: FileFetcher,
  ) {}

  pathOf(sha256: string): string {
    return cachedBlendPath(this.cacheDir, sha256);
  }

  async get(blend: BlendRef): Promise<string> {
    const target = this.pathOf(blend.sha256);
    if (existsSync(target)) {
      await touch(target); // used now: the last to be trimmed (cache-budget.ts)
      return target;
    }
    let download = this.downloads.get(blend.sha256);
    if (!download) {
      download = this.fetcher
        .fetch(blend.sha256, target, 'downloadBlend', 'the .blend')
        .then(() => target)
        .finally(() => this.downloads.delete(blend.sha256));
      this.downloads.set(blend.sha256, download);
    }
    return download;
  }
}
