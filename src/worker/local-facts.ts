import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

/** What a worker keeps and reads on its own machine: its id across restarts, and its Blender's version. */

export function readWorkerId(cacheDir: string): string | undefined {
  const file = path.join(cacheDir, 'worker-id');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

export function writeWorkerId(cacheDir: string, id: string): void {
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(path.join(cacheDir, 'worker-id'), `${id}\n`);
}

export async function readBlenderVersion(blenderPath: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(blenderPath, ['--version'], { timeout: 30_000 });
    return /Blender\s+([\d.]+)/.exec(stdout)?.[1] ?? stdout.split('\n')[0]!.trim();
  } catch (error) {
    throw new Error(`cannot run Blender at "${blenderPath}" (set blender_path in settings.conf): ${(error as Error).message}`);
  }
}

