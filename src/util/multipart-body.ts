import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Writable } from 'node:stream';

/** A file part's bytes: in memory, or a file streamed from disk (its size known up front). */
export type PartSource = { buffer: Buffer } | { file: string; size: number };

export interface MultipartFile {
  field: string;
  fileName: string;
  source: PartSource;
}

/**
 * A multipart/form-data body written without holding its files in memory, with its exact
 * length known first (uploads send Content-Length, so the server can refuse an oversized
 * one before reading it). Used by every client that uploads: the CLI, workers, and the
 * benchmarks' simulated workers.
 */
export class MultipartBody {
  readonly boundary = `----archenland${randomBytes(12).toString('hex')}`;
  private readonly fieldsHead: Buffer;
  private readonly fileHeads: Buffer[];
  private readonly tail: Buffer;

  constructor(
    fields: Record<string, string>,
    private readonly files: readonly MultipartFile[],
  ) {
    this.fieldsHead = Buffer.from(
      Object.entries(fields)
        .map(([name, value]) => `--${this.boundary}\r\nContent-Disposition: form-data; name="${quoted(name)}"\r\n\r\n${value}\r\n`)
        .join(''),
    );
    this.fileHeads = files.map((file, index) =>
      Buffer.from(
        `${index > 0 ? '\r\n' : ''}--${this.boundary}\r\nContent-Disposition: form-data; name="${quoted(file.field)}"; filename="${quoted(file.fileName)}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
    );
    this.tail = Buffer.from(`${files.length > 0 ? '\r\n' : ''}--${this.boundary}--\r\n`);
  }

  get contentType(): string {
    return `multipart/form-data; boundary=${this.boundary}`;
  }

  get length(): number {
    const heads = this.fileHeads.reduce((sum, head) => sum + head.length, 0);
    const bodies = this.files.reduce((sum, { source }) => sum + ('buffer' in source ? source.buffer.length : source.size), 0);
    return this.fieldsHead.length + heads + bodies + this.tail.length;
  }

  /** Writes the body into `out` and ends it; `onFileBytes` counts file bytes as they go (progress bars). */
  async writeTo(out: Writable, onFileBytes: (bytes: number) => void = () => {}): Promise<void> {
    await write(out, this.fieldsHead);
    for (const [index, { source }] of this.files.entries()) {
      await write(out, this.fileHeads[index]!);
      if ('buffer' in source) {
        await write(out, source.buffer);
        onFileBytes(source.buffer.length);
        continue;
      }
      for await (const chunk of createReadStream(source.file) as AsyncIterable<Buffer>) {
        await write(out, chunk);
        onFileBytes(chunk.length);
      }
    }
    out.end(this.tail);
  }
}

/** Names go inside double quotes in a header: quotes and line breaks would end it early. */
function quoted(text: string): string {
  return text.replace(/["\r\n]/g, '_');
}

/** Writes a chunk, waiting for the stream to drain when its buffer is full. */
function write(out: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    out.once('error', onError);
    const flushed = out.write(chunk);
    const done = () => {
      out.off('error', onError);
      resolve();
    };
    if (flushed) done();
    else out.once('drain', done);
  });
}
