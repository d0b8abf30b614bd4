import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export class UploadError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

export interface ReceivedFile {
  tempPath: string;
  sha256: string;
  size: number;
  head: Buffer;
}

/**
 * Streams an upload to a temp file while hashing it, so a file of any size costs a few
 * buffers of memory. The caller checks it and then `commit`s (atomic rename) or
 * `discard`s it: a half-written file is never visible under its final name.
 */
export async function receiveToTemp(
  source: Readable,
  tmpDir: string,
  opts: { maxBytes: number; headBytes?: number; isTruncated?: () => boolean },
): Promise<ReceivedFile> {
  await ensureDir(tmpDir);
  const tempPath = path.join(tmpDir, `upload-${randomBytes(8).toString('hex')}`);
  const hash = createHash('sha256');
  const headBytes = opts.headBytes ?? 16;
  let size = 0;
  let head = Buffer.alloc(0);
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > opts.maxBytes) {
        done(new UploadError(`file is larger than the limit of ${formatBytes(opts.maxBytes)}`, 413));
        return;
      }
      if (head.length < headBytes) head = Buffer.concat([head, chunk.subarray(0, headBytes - head.length)]);
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(tempPath, { flags: 'wx' }));
    if (opts.isTruncated?.()) {
      throw new UploadError(`file is larger than the limit of ${formatBytes(opts.maxBytes)}`, 413);
    }
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
  return { tempPath, sha256: hash.digest('hex'), size, head };
}

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

async function ensureDir(dir: string): Promise<void> {
  if (made.has(dir)) return;
  await mkdir(dir, { recursive: true });
  if (made.size >= 10_000) made.clear(); // tiles make a folder per split frame: keep the set bounded
  made.add(dir);
}

export async function discardFile(tempPath: string): Promise<void> {
  await rm(tempPath, { force: true });
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** Out of space or quota: the caller pauses instead of failing, and nothing stored is touched. */
export function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
