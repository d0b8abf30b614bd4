import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { BigIntStats } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { lastLines, videoOutputArgs } from './ffmpeg.ts';

/**
 * ffmpeg's demuxer for a sequence of images of one format concatenated on a pipe. It
 * finds where each image ends by parsing it, which ffmpeg can do for PNG and JPEG only:
 * TIFF and EXR frames cannot be streamed (their videos are encoded at the end).
 */
const PIPE_DEMUXERS: Readonly<Record<string, string>> = { png: 'png_pipe', jpg: 'jpeg_pipe' };

export function canStreamFormat(extension: string): boolean {
  return Object.hasOwn(PIPE_DEMUXERS, extension);
}

export interface StreamRequest {
  ffmpegPath: string;
  /** Frame files' extension: `png` or `jpg` (canStreamFormat). */
  extension: string;
  fps: number;
  output: string;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when ffmpeg could not be started at all. */
  error?: Error;
}

/**
 * One video encoded while its frames arrive: an ffmpeg process that reads the frame files'
 * bytes, one after another, on its standard input. Its arguments after the input are the
 * batch encode's (videoOutputArgs), and the image decoder is the same, so the video is
 * byte for byte the batch encode's of the same files in the same order (test/video-stream.test.ts).
 *
 * Each `append` says exactly which file it fed (stat of the open descriptor it read), so
 * the caller can check at the end that no fed file was replaced since.
 */
export class VideoStream {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private readonly exit: Promise<Exit>;
  private exited: Exit | null = null;
  private stderr = '';
  private closing = false;
  private framesFed = 0;
  /** Frames ffmpeg reports as encoded, and as duplicated or dropped to keep the rate, from its `-progress` lines. */
  private framesEncoded = 0;
  private framesPatched = 0;

  private constructor(private readonly request: StreamRequest) {
    const demuxer = PIPE_DEMUXERS[request.extension];
    if (!demuxer) throw new Error(`${request.extension} frames cannot be streamed to ffmpeg`);
    // One decoding thread: with frame threads the image decoder holds back a frame per extra
    // thread until it sees the next one or the end, which adds to the wait after the last
    // frame (flush CPU 0.41 → 0.32 s at 1080p on 2 cores). Frames come one at a time here,
    // and a frame decodes to the same pixels however many threads decode it.
    const input = ['-f', demuxer, '-framerate', String(request.fps), '-threads', '1', '-i', 'pipe:0'];
    const args = ['-hide_banner', '-loglevel', 'error', '-y', ...input, ...videoOutputArgs(request.fps, request.output)];
    this.child = spawn(request.ffmpegPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exit = new Promise<Exit>((resolve) => {
      this.child.once('error', (error) => resolve({ code: null, signal: null, error }));
      this.child.once('close', (code, signal) => resolve({ code, signal }));
    }).then((exit) => (this.exited = exit));
    // A write after ffmpeg died fails with EPIPE here; the exit says why it died.
    this.child.stdin.on('error', () => undefined);
    let pending = '';
    this.child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const [key, value] = line.split('=');
        if (key === 'frame') this.framesEncoded = Number(value);
        else if (key === 'dup_frames' || key === 'drop_frames') this.framesPatched = Math.max(this.framesPatched, Number(value));
      }
    });
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
  }

  /** Starts ffmpeg; it waits for the first frame. */
  static open(request: StreamRequest): VideoStream {
    return new VideoStream(request);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get fed(): number {
    return this.framesFed;
  }

  /**
   * Feeds one frame file; resolves with the stat of exactly the bytes fed once ffmpeg has
   * room for more (the pipe's back-pressure keeps at most one frame in memory here).
   * Rejects when the file cannot be read or ffmpeg has stopped.
   */
  async append(file: string): Promise<BigIntStats> {
    this.assertRunning();
    const handle = await open(file, 'r');
    let stats: BigIntStats;
    let bytes: Buffer;
    try {
      stats = await handle.stat({ bigint: true });
      bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
    if (BigInt(bytes.length) !== stats.size) throw new Error(`${file} changed while it was read`);
    this.assertRunning();
    await this.write(bytes);
    this.framesFed++;
    return stats;
  }

  /**
   * No more frames: waits for ffmpeg to finish the video. Rejects unless it made one
   * video frame of each frame fed and said nothing: a frame it could not decode shows as
   * an error, a frame missing or duplicated to keep the rate, or fewer frames (the image
   * parser lost its place), and the batch encode may treat such a frame differently.
   */
  async finish(): Promise<{ frames: number }> {
    this.assertRunning();
    this.closing = true;
    this.child.stdin.end();
    const exit = await this.exit;
    if (exit.code !== 0) throw this.failure(exit);
    if (this.framesEncoded !== this.framesFed) {
      throw new Error(`ffmpeg encoded ${this.framesEncoded} frames of the ${this.framesFed} it was given`);
    }
    if (this.framesPatched > 0) throw new Error('ffmpeg duplicated or dropped frames to keep the frame rate');
    if (this.stderr.trim()) throw new Error(`ffmpeg reported: ${lastLines(this.stderr, 5)}`);
    return { frames: this.framesEncoded };
  }

  /** Stops ffmpeg at once and removes what it wrote. */
  async abort(): Promise<void> {
    this.closing = true;
    if (!this.exited) this.child.kill('SIGKILL');
    await this.exit;
    await rm(this.request.output, { force: true });
  }

  private assertRunning(): void {
    if (this.exited) throw this.failure(this.exited);
    if (this.closing) throw new Error('the video stream is closed');
  }

  private async write(bytes: Buffer): Promise<void> {
    if (this.child.stdin.write(bytes)) return;
    const drained = new Promise<'drained'>((resolve) => this.child.stdin.once('drain', () => resolve('drained')));
    const outcome = await Promise.race([drained, this.exit]);
    if (outcome !== 'drained') throw this.failure(outcome);
  }

  private failure(exit: Exit): Error {
    if (exit.error) return new Error(`could not run ffmpeg (${this.request.ffmpegPath}): ${exit.error.message}`);
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    const said = lastLines(this.stderr, 5);
    return new Error(`ffmpeg ${how}${said ? `: ${said}` : ''}`);
  }
}
