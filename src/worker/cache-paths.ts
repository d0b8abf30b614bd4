import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { sha256Schema } from '../protocol/index.ts';

/**
 * Where the worker's cache keeps content-addressed files: a .blend as blends/<sha256>.blend,
 * a project file as files/<first two hex digits>/<sha256>. Only complete, verified files
 * have these names (downloads go to a temp name and are renamed once their hash matched),
 * so a file found here may be served to peers. Paths are built from a checked SHA-256 only.
 */

export function cachedBlendPath(cacheDir: string, sha256: string): string {
  return path.join(cacheDir, 'blends', `${sha256Schema.parse(sha256)}.blend`);
}

export function cachedFilePath(cacheDir: string, sha256: string): string {
  const sha = sha256Schema.parse(sha256);
  return path.join(cacheDir, 'files', sha.slice(0, 2), sha);
}

/** The SHA-256 a cached file is stored under, or null for anything else (temp files, trees). */
export function shaOfCachedPath(cacheDir: string, file: string): string | null {
  const relative = path.relative(cacheDir, file).split(path.sep);
  const [folder, ...rest] = relative;
  if (folder === 'blends' && rest.length === 1) {
    const sha = rest[0]!.replace(/\.blend$/, '');
    return rest[0]!.endsWith('.blend') && sha256Schema.safeParse(sha).success ? sha : null;
  }
  if (folder === 'files' && rest.length === 2) {
    const [prefix, sha] = rest as [string, string];
    return sha256Schema.safeParse(sha).success && sha.startsWith(prefix) ? sha : null;
  }
  return null;
}

/** Every content-addressed file the cache holds, by SHA-256. */
export async function heldFiles(cacheDir: string): Promise<string[]> {
  const held = new Set<string>();
  for (const folder of ['blends', 'files']) {
    const names = await readdir(path.join(cacheDir, folder), { recursive: true }).catch(() => [] as string[]);
    for (const name of names) {
      const sha = shaOfCachedPath(cacheDir, path.join(cacheDir, folder, name));
      if (sha) held.add(sha);
    }
  }
  return [...held];
}
