import { readdir, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';

/** What a trim removed. */
export interface Trimmed {
  files: number;
  bytes: number;
}

/**
 * Keeps the worker's cache of .blend and project files under `maxBytes`: the files used
 * least recently go first (each use touches a file's mtime, see `touch`), never those of
 * the job at hand. Project trees are only hard links to cached files, so every tree but
 * the one in use is removed first: it is laid out again in a moment if ever needed.
 */
export async function trimCache(
  cacheDir: string,
  maxBytes: number,
  keep: { blend: string; tree?: string },
  /** Each cached file removed (the worker stops offering it to peers). */
  onRemoved: (file: string) => void = () => {},
): Promise<Trimmed> {
  const trimmed: Trimmed = { files: 0, bytes: 0 };
  const cached = [...(await filesIn(path.join(cacheDir, 'blends'))), ...(await filesIn(path.join(cacheDir, 'files')))];
  let total = cached.reduce((sum, file) => sum + file.size, 0);
  if (maxBytes <= 0 || total <= maxBytes) return trimmed;
  const trees = path.join(cacheDir, 'projects');
  for (const tree of await readdir(trees).catch(() => [] as string[])) {
    if (keep.tree && path.join(trees, tree) === keep.tree) continue;
    await rm(path.join(trees, tree), { recursive: true, force: true });
  }
  const inUse = new Set([keep.blend, ...(keep.tree ? await linkedFrom(keep.tree) : [])]);
  for (const file of cached.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
    if (total <= maxBytes) break;
    if (inUse.has(file.path) || inUse.has(`${file.ino}`)) continue;
    await rm(file.path, { force: true });
    onRemoved(file.path);
    total -= file.size;
    trimmed.files++;
    trimmed.bytes += file.size;
  }
  return trimmed;
}

/** Marks a cached file as just used, so it is the last to be trimmed. */
export async function touch(file: string): Promise<void> {
  const now = new Date();
  await utimes(file, now, now).catch(() => {});
}

interface CachedFile {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

async function filesIn(dir: string): Promise<CachedFile[]> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  const files: CachedFile[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => null);
    if (info?.isFile() && !name.endsWith('.part')) files.push({ path: file, size: info.size, mtimeMs: info.mtimeMs, ino: info.ino });
  }
  return files;
}

/** The inode numbers of the files a project tree links to: those cached files are in use. */
async function linkedFrom(tree: string): Promise<string[]> {
  return (await filesIn(tree)).map((file) => `${file.ino}`);
}
