import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { pipeline, Transform } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { mbpsToBytesPerSecond, TokenBucket } from './token-bucket.ts';

/** Read size of a served file: large enough that pacing costs few timers, small enough to interleave connections finely. */
const CHUNK_BYTES = 256 * 1024;

/**
 * What the server sends workers (.blend and project files), counted, and paced by one
 * bucket shared by every connection when `serve_limit_mbps` is set: the limit is on the
 * server's whole uplink, so 16 workers downloading at once share it instead of each
 * getting it (a per-connection limit would let 16 × the limit through).
 */
export class ServedFiles {
  private readonly bucket: TokenBucket | null;
  private sent = 0;

  constructor(limitMbps: number) {
    const rate = mbpsToBytesPerSecond(limitMbps);
    // A burst of 50 ms of the rate (at least one chunk) keeps the pacing smooth without letting bursts through.
    this.bucket = limitMbps > 0 ? new TokenBucket(rate, Math.max(CHUNK_BYTES, rate / 20), performance.now()) : null;
  }

  /** Bytes sent to workers since the server started (/metrics). */
  get bytesSent(): number {
    return this.sent;
  }

  /** Streams a stored file to a worker, paced by the shared limit. */
  async send(reply: FastifyReply, file: string, downloadName: string): Promise<FastifyReply> {
    const { size } = await stat(file);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', size)
      .header('content-disposition', `inline; filename="${downloadName}"`)
      // pipeline: a worker that hangs up mid-file closes the file too.
      .send(pipeline(createReadStream(file, { highWaterMark: CHUNK_BYTES }), this.pace(), () => {}));
  }

  /** A pass-through that holds each chunk until the bucket lets it go, and counts it. */
  private pace(): Transform {
    const bucket = this.bucket;
    return new Transform({
      highWaterMark: CHUNK_BYTES,
      transform: (chunk: Buffer, _encoding, done) => {
        this.sent += chunk.length;
        const waitMs = bucket ? bucket.take(chunk.length, performance.now()) : 0;
        if (waitMs <= 0) return done(null, chunk);
        setTimeout(() => done(null, chunk), waitMs);
      },
    });
  }
}

