import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** A file received into the data folder's tmp/, checksummed, not yet in its place. */
export interface ReceivedFile {
  tempPath: string;
  sha256: string;
  size: number;
  head: Buffer;
}

/** Moves a received file into its place in the data folder, atomically (rename). */
export async function commitFile(tempPath: string, finalPath: string): Promise<void> {
  const dir = path.dirname(finalPath);
  await ensureDir(dir);
  try {
    await rename(tempPath, finalPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    // The folder went away since it was made (a job deleted and its id reused, a cleanup): make it again.
    made.delete(dir);
    await ensureDir(dir);
    await rename(tempPath, finalPath);
  }
}

/** Folders this process made; a busy farm commits hundreds of files a second into a few folders. */
const made = new Set<string>();

/** Makes a folder once per process: later calls for it cost nothing. */
export async function ensureDir(dir: string): Promise<void> {
  if (made.has(dir)) return;
  await mkdir(dir, { recursive: true });
  if (made.size >= 10_000) made.clear(); // tiles make a folder per split frame: keep the set bounded
  made.add(dir);
}

export async function discardFile(tempPath: string): Promise<void> {
  await rm(tempPath, { force: true });
}

