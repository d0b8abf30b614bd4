import type { Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

/** Bytes gathered before one write to the file. */
export const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * The end of a download: hashes every chunk as it arrives and writes the chunks to a new
 * file in batches of about 1 MiB, one writev each. The file is created (never an existing
 * one) as the stream starts, so the stream takes part in a pipeline at once and no error of
 * the body goes unheard meanwhile; it is closed when the stream finishes or fails ('close').
 *
 * Why not fs.WriteStream: sockets deliver 64 KiB chunks, and a WriteStream whose disk keeps
 * up writes most of them on their own: a thread-pool round trip (thread wake-ups) each.
 * When 16 workers share two cores (bench/peer-transfer.ts) every wake-up is a context
 * switch. With 1 MiB batches one 512 MB download made 1 800 write calls instead of 3 300
 * and a third fewer futex calls (strace), and the benchmark's workers spent about a tenth
 * less CPU per MB. Larger batches gained nothing and hold more memory per download.
 */
export class HashingFileSink extends Writable {
  /** Bytes received so far (all hashed; written once the last batch is flushed). */
  bytes = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private file: FileHandle | undefined;

  constructor(
    private readonly path: string,
    private readonly hash: Hash,
    /** Sees each chunk's size as it arrives (a peer's speed check). */
    private readonly onBytes?: (bytes: number) => void,
    private readonly batchBytes = WRITE_BATCH_BYTES,
  ) {
    super({ highWaterMark: batchBytes });
  }

  override _construct(done: (error?: Error | null) => void): void {
    open(this.path, 'wx').then((file) => {
      this.file = file;
      done();
    }, done);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < this.batchBytes) return done();
    this.flush().then(() => done(), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.flush().then(() => done(), done);
  }

  /** Finished or failed: the file is closed, once a write under way is done (FileHandle.close waits for it). */
  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    const closing = this.file?.close() ?? Promise.resolve();
    closing.then(() => done(error), (closeError: Error) => done(error ?? closeError));
  }

  /** Writes what is pending; a short write (rare, but allowed by writev) goes on with the rest. */
  private async flush(): Promise<void> {
    let buffers = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    while (buffers.length > 0) {
      const written = await this.writev(buffers);
      if (written === 0) throw new Error('could not write to the cache: no bytes written');
      buffers = withoutFirst(buffers, written);
    }
  }

  /** One writev to the file; resolves with the bytes written (a method of its own for tests). */
  protected async writev(buffers: Buffer[]): Promise<number> {
    return (await this.file!.writev(buffers)).bytesWritten;
  }
}

/** The buffers after the first `bytes` bytes (views, not copies). */
function withoutFirst(buffers: Buffer[], bytes: number): Buffer[] {
  let skip = bytes;
  let index = 0;
  while (index < buffers.length && skip >= buffers[index]!.length) skip -= buffers[index++]!.length;
  const rest = buffers.slice(index);
  if (skip > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(skip);
  return rest;
}
