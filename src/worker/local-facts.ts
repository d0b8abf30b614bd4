import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** What a worker keeps on its own machine: its id across restarts. */

export function readWorkerId(cacheDir: string): string | undefined {
  const file = path.join(cacheDir, 'worker-id');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

export function writeWorkerId(cacheDir: string, id: string): void {
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(path.join(cacheDir, 'worker-id'), `${id}\n`);
}
