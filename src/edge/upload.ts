import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FarmError } from '../farm/index.ts';
import { ensureDir, type ReceivedFile } from '../store/index.ts';


/** Enough of a file's start to recognise its format. */
const DEFAULT_HEAD_BYTES = 16;


/**
 * Uploads announced this small are read into memory and written with one call: on a busy
 * farm most results are small frames, and a stream pipeline per file cost more than the file.
 */
const SMALL_UPLOAD_BYTES = 1024 * 1024;

interface ReceiveOptions {
  maxBytes: number;
  headBytes?: number;
  isTruncated?: () => boolean;
  /** The size the sender announced (Content-Length), when it did. */
  announcedBytes?: number;
}

/**
 * Streams an upload to a temp file while hashing it, so a file of any size costs a few
 * buffers of memory. The caller checks it and then `commit`s (atomic rename) or
 * `discard`s it: a half-written file is never visible under its final name.
 */
export async function receiveToTemp(source: Readable, tmpDir: string, opts: ReceiveOptions): Promise<ReceivedFile> {
  await ensureDir(tmpDir);
  if (opts.announcedBytes !== undefined && opts.announcedBytes <= Math.min(SMALL_UPLOAD_BYTES, opts.maxBytes)) {
    return receiveSmall(source, tmpDir, opts);
  }
  const tempPath = tempPathIn(tmpDir);
  const hash = createHash('sha256');
  const headBytes = opts.headBytes ?? DEFAULT_HEAD_BYTES;
  let size = 0;
  let head = Buffer.alloc(0);
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > opts.maxBytes) {
        done(tooLarge(opts.maxBytes));
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
      throw tooLarge(opts.maxBytes);
    }
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
  return { tempPath, sha256: hash.digest('hex'), size, head };
}

async function receiveSmall(source: Readable, tmpDir: string, opts: ReceiveOptions): Promise<ReceivedFile> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > opts.maxBytes) throw tooLarge(opts.maxBytes);
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks, size);
  const tempPath = tempPathIn(tmpDir);
  try {
    await writeFile(tempPath, body, { flag: 'wx' });
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
  const head = Buffer.from(body.subarray(0, opts.headBytes ?? DEFAULT_HEAD_BYTES));
  return { tempPath, sha256: createHash('sha256').update(body).digest('hex'), size, head };
}

export function tooLarge(maxBytes: number): FarmError {
  return new FarmError('TOO_LARGE', `file is larger than the limit of ${formatBytes(maxBytes)}`);
}

function tempPathIn(tmpDir: string): string {
  return path.join(tmpDir, `upload-${randomBytes(8).toString('hex')}`);
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
