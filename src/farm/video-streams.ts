import { randomBytes } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { VideoStream } from '../encoder/index.ts';
import { noVideoReason } from '../jobs/index.ts';
import type { FarmState } from './state.ts';
import { jobRecord } from './job-record.ts';
import { identityOf, nextToFeed, whyNotStreamable, whyStreamDiffers, type FedFrame, type FileIdentity } from './video-plan.ts';

/** A job whose video is being encoded as its frames arrive. */
interface Live {
  kind: 'live';
  jobId: string;
  extension: string;
  /** Every frame of the job, in frame order. */
  frames: number[];
  done: Set<number>;
  fed: FedFrame[];
  /** Null while ffmpeg is being started. */
  stream: VideoStream | null;
  started: Promise<void>;
  output: string;
  /** The feeding loop, while it runs. */
  feeding: Promise<void> | null;
  /** Set once the stream is given up, stopped or ending: nothing more is fed. */
  over: boolean;
  /** Set when the job left rendering (drop). */
  dropped: boolean;
  /** Set once every frame is done and the video is being finished (finish). */
  finishing: boolean;
}

/** A job that tried and will be encoded the batch way when it ends (until it leaves rendering). */
interface Batch {
  kind: 'batch';
  reason: string;
}

/** Jobs' unfinished streaming outputs, one name per stream, so a stream never writes into another's file. */
const STREAM_OUTPUT = /^video\.stream-[0-9a-f]+\.mp4$/;

/**
 * Encodes jobs' videos while they render (issue #17): ffmpeg is fed each job's frames in
 * frame order as the run of done frames from the first one grows, so when the last frame
 * arrives only the frames after that run and x264's look-ahead are left to encode.
 *
 * At most `limit` jobs stream at once (setting video_streams); the others, jobs whose
 * frames ffmpeg cannot read from a pipe, and any stream that fails, are encoded the batch
 * way at the end, as are all jobs after a server restart until their next frame arrives
 * (a new stream then starts from the first frame). The streamed video is used only when
 * it is exactly what the batch encode would make (video-plan.ts, whyStreamDiffers).
 */
export class VideoStreams {
  private readonly jobs = new Map<string, Live | Batch>();
  /** Videos made since the server started, by how. */
  readonly made = { stream: 0, batch: 0 };

  constructor(
    private readonly state: FarmState,
    private readonly limit: number,
  ) {}

  /** Streams running (or starting). */
  get active(): number {
    let count = 0;
    for (const entry of this.jobs.values()) if (entry.kind === 'live') count++;
    return count;
  }

  /** Frames fed to the job's stream so far; undefined when it has none. */
  fedFrames(jobId: string): number | undefined {
    const entry = this.jobs.get(jobId);
    return entry?.kind === 'live' ? entry.fed.length : undefined;
  }

  /** The process id of the job's ffmpeg, while it streams. */
  ffmpegPid(jobId: string): number | undefined {
    const entry = this.jobs.get(jobId);
    return entry?.kind === 'live' ? entry.stream?.pid : undefined;
  }

  /** A frame of a rendering job is done (its file in place): feed it, and what it unblocks. */
  frameDone(jobId: string, frame: number): void {
    if (this.state.stopping) return;
    const entry = this.jobs.get(jobId);
    if (entry?.kind === 'batch') return;
    if (entry) {
      entry.done.add(frame);
      this.pump(entry);
    } else if (this.active < this.limit) {
      this.open(jobId);
    }
  }

  /**
   * The job left rendering (paused, cancelled, failed, deleted, or the server stops): its
   * stream, if any, stops and its file goes. A job that renders again starts a new one.
   */
  drop(jobId: string, why: string): void {
    const entry = this.jobs.get(jobId);
    this.jobs.delete(jobId);
    if (entry?.kind !== 'live') return;
    entry.over = true;
    entry.dropped = true;
    this.state.log.info({ jobId, why, fed: entry.fed.length }, 'video stream stopped');
    this.state.background(entry.started.then(() => entry.stream?.abort()));
  }

  /**
   * The server is stopping: streams of jobs still rendering stop (a restart starts them
   * anew); videos being finished are left to finish, as batch encodes under way are.
   */
  async stopAll(): Promise<void> {
    const live = [...this.jobs.entries()].filter((e): e is [string, Live] => e[1].kind === 'live' && !e[1].finishing);
    for (const [jobId] of live) this.drop(jobId, 'the server is stopping');
    await Promise.allSettled(live.map(([, entry]) => entry.started.then(() => entry.stream?.abort())));
  }

  /**
   * Every frame of the job is done: feeds the rest, ends the stream and returns the video
   * file, or null when the video must be encoded the batch way (no stream, or one whose
   * video might differ from the batch encode's; the reason is logged).
   */
  async finish(jobId: string): Promise<string | null> {
    const { log } = this.state;
    const entry = this.jobs.get(jobId);
    if (entry?.kind !== 'live') {
      this.jobs.delete(jobId);
      const reason = entry?.reason ?? (this.limit === 0 ? 'video_streams is 0' : 'none ran: no streaming encoder was free, or no frame came since the server started or the job resumed');
      log.info({ jobId, reason }, 'no video stream: encoding every frame now');
      return null;
    }
    entry.finishing = true;
    const startedAt = performance.now();
    const fedBefore = entry.fed.length;
    try {
      await entry.started;
      const done = (await this.state.store.listFrames(jobId, 'done')).map((f) => f.number);
      for (const n of done) entry.done.add(n);
      this.pump(entry);
      while (entry.feeding) await entry.feeding;
      const stream = entry.stream;
      if (entry.over || !stream) return null; // given up or stopped meanwhile, and logged then
      entry.over = true;
      const fedAt = performance.now();
      const { frames } = await stream.finish();
      const exitedAt = performance.now();
      const differs = whyStreamDiffers({
        fed: entry.fed,
        frames: entry.frames,
        done,
        encoded: frames,
        folder: await readdir(this.state.dataDir.framesDir(jobId)),
        extension: entry.extension,
        now: await this.identities(jobId, entry.fed),
      });
      if (differs) {
        log.warn({ jobId, reason: differs }, 'streamed video discarded: encoding every frame now');
        await rm(entry.output, { force: true });
        return null;
      }
      const ms = (from: number, to = performance.now()) => Math.round(to - from);
      // Where the wait after the last frame goes: feeding what it unblocked, x264 encoding
      // the frames it held back (input closed → ffmpeg exited), checking the files.
      log.info({ jobId, frames, fedBeforeEnd: fedBefore, catchUpMs: ms(startedAt, fedAt), flushMs: ms(fedAt, exitedAt), checkMs: ms(exitedAt) }, 'video stream finished');
      return entry.output;
    } catch (error) {
      if (entry.dropped) return null; // the job left encoding (cancelled): drop stopped ffmpeg
      log.warn({ jobId, err: error }, 'video stream failed at the end: encoding every frame now');
      await entry.stream?.abort();
      return null;
    } finally {
      if (this.jobs.get(jobId) === entry) this.jobs.delete(jobId);
    }
  }

  private open(jobId: string): void {
    const output = path.join(this.state.dataDir.jobDir(jobId), `video.stream-${randomBytes(6).toString('hex')}.mp4`);
    const entry: Live = {
      kind: 'live', jobId, extension: '', frames: [], done: new Set(), fed: [], stream: null, started: Promise.resolve(), output, feeding: null, over: false, dropped: false, finishing: false,
    };
    this.jobs.set(jobId, entry);
    entry.started = this.start(entry);
    this.state.background(entry.started);
  }

  private async start(entry: Live): Promise<void> {
    const { store, dataDir, options, log } = this.state;
    const { jobId } = entry;
    try {
      const row = await store.getJob(jobId);
      if (!row || !['queued', 'rendering'].includes(row.state)) {
        // Frames that finish while a job is paused: a stream starts when it renders again.
        if (this.jobs.get(jobId) === entry) this.jobs.delete(jobId);
        entry.over = true;
        return;
      }
      const { scene, overrides } = jobRecord(row);
      const frames = await store.listFrames(jobId);
      entry.extension = row.file_extension ?? 'png';
      entry.frames = frames.map((f) => f.number);
      for (const f of frames) if (f.state === 'done') entry.done.add(f.number);
      const unfit = (scene && noVideoReason(scene, overrides)) || whyNotStreamable(entry.frames, entry.extension);
      if (unfit) return this.giveUp(entry, unfit, 'info');
      await this.removeStaleOutputs(jobId);
      if (entry.over) return;
      entry.stream = VideoStream.open({ ffmpegPath: options.ffmpegPath, extension: entry.extension, fps: row.fps ?? 24, output: entry.output });
      log.info({ jobId, frames: entry.frames.length, done: entry.done.size, pid: entry.stream.pid }, 'video stream started');
    } catch (error) {
      return this.giveUp(entry, `it could not start: ${(error as Error).message}`, 'warn');
    }
    this.pump(entry);
  }

  /** Starts the feeding loop unless it runs; a frame done meanwhile is picked up by the loop or right after it. */
  private pump(entry: Live): void {
    if (entry.feeding || entry.over || !entry.stream) return;
    if (nextToFeed(entry.frames, entry.fed.length, entry.done) === undefined) return;
    const feeding = this.feed(entry, entry.stream).finally(() => {
      entry.feeding = null;
      this.pump(entry);
    });
    entry.feeding = feeding;
    this.state.background(feeding);
  }

  private async feed(entry: Live, stream: VideoStream): Promise<void> {
    const { dataDir } = this.state;
    try {
      for (let next = nextToFeed(entry.frames, entry.fed.length, entry.done); next !== undefined && !entry.over; next = nextToFeed(entry.frames, entry.fed.length, entry.done)) {
        const file = dataDir.frameFile(entry.jobId, next, entry.extension);
        const stats = await stream.append(file);
        entry.fed.push({ number: next, name: path.basename(file), identity: identityOf(stats) });
      }
    } catch (error) {
      if (!entry.over) await this.giveUp(entry, (error as Error).message, 'warn');
    }
  }

  /** This run of the job gets no stream: its video is encoded the batch way when it ends. */
  private async giveUp(entry: Live, reason: string, level: 'info' | 'warn'): Promise<void> {
    entry.over = true;
    if (this.jobs.get(entry.jobId) === entry) this.jobs.set(entry.jobId, { kind: 'batch', reason });
    this.state.log[level]({ jobId: entry.jobId, reason, fed: entry.fed.length }, 'no video stream for this job: its video is encoded when it ends');
    await entry.stream?.abort();
  }

  /** The fed files as they are now, to tell whether any was replaced. */
  private async identities(jobId: string, fed: readonly FedFrame[]): Promise<Map<string, FileIdentity | null>> {
    const dir = this.state.dataDir.framesDir(jobId);
    const now = await Promise.all(
      fed.map(async (f) => [f.name, await stat(path.join(dir, f.name), { bigint: true }).then(identityOf, () => null)] as const),
    );
    return new Map(now);
  }

  /**
   * Outputs of streams of an earlier run (a server killed mid-job leaves its ffmpeg to end
   * on its own): never the video itself nor a live stream's (one per job at a time).
   */
  async removeStaleOutputs(jobId: string): Promise<void> {
    const dir = this.state.dataDir.jobDir(jobId);
    const names = await readdir(dir).catch(() => [] as string[]);
    await Promise.all(names.filter((n) => STREAM_OUTPUT.test(n)).map((n) => rm(path.join(dir, n), { force: true })));
  }
}
