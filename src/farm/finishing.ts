import { rename, stat } from 'node:fs/promises';
import { encodeVideo } from '../encoder/index.ts';
import type { FrameResult } from '../store/index.ts';
import type { Dispatcher } from './dispatch.ts';
import type { FarmState } from './state.ts';
import { now } from './state.ts';
import { dropTiles, stitchFrame } from './tile-files.ts';
import { noVideoReason } from '../jobs/index.ts';
import { jobRecord } from './job-record.ts';


/**
 * The end of a frame and of a job: a done frame is recorded, a split frame is stitched
 * from its tiles, and after a job's last frame its video is encoded (or the job fails
 * with what failed).
 */
export class Finisher {
  constructor(
    private readonly state: FarmState,
    private readonly dispatch: Dispatcher,
  ) {}

  /** Records a frame as done (rendered whole, or stitched from its tiles). */
  async frameDone(jobId: string, frame: number, result: FrameResult & { render_ms: number }): Promise<void> {
    this.state.views.addRenderTime(jobId, result.render_ms);
    this.state.views.announceFrame(await this.state.store.finishFrame(jobId, frame, result));
    this.state.videoStreams.frameDone(jobId, frame);
  }

  /**
   * A frame is done or failed for good: after the job's last one its rendering ends (a
   * paused job ends on resume), else only its counts changed.
   */
  async frameSettled(jobId: string, wasLast: boolean): Promise<void> {
    const job = await this.state.store.getJob(jobId);
    if (wasLast && job?.state !== 'paused') await this.finishRendering(jobId);
    else await this.state.views.publishJob(jobId);
  }

  /** Every tile of a frame is in: stitch them into the frame, which only then is done. */
  async stitch(jobId: string, frame: number): Promise<void> {
    const { scheduler, dataDir, views, log, options } = this.state;
    const queued = this.dispatch.tilingOf(jobId);
    const tiles = scheduler.tilesOf(jobId, frame);
    if (!queued || !tiles || queued.tiling.mode === 'off') return;
    const extension = queued.fileExtension;
    const output = dataDir.frameFile(jobId, frame, extension);
    try {
      await stitchFrame(dataDir, { jobId, frame, grid: tiles.grid, plan: queued.tiling, extension, output, ffmpegPath: options.ffmpegPath });
    } catch (error) {
      const message = `the tiles could not be stitched: ${(error as Error).message}`;
      log.error({ jobId, frame, err: error }, 'stitching failed');
      const outcome = scheduler.stitchFailed(jobId, frame);
      if (outcome.kind === 'unknown') return;
      await dropTiles(dataDir, jobId, frame);
      const failure = { attempts: outcome.attempts, error: message };
      const { store } = this.state;
      views.announceFrame(await (outcome.kind === 'failed' ? store.failFrame(jobId, frame, failure) : store.requeueFrame(jobId, frame, 'queued', failure)));
      await this.frameSettled(jobId, outcome.kind === 'failed' && outcome.jobFinished);
      this.dispatch.pump();
      return;
    }
    const renderMs = Math.round(scheduler.tileRenderMs(jobId, frame) ?? 0);
    const done = scheduler.frameStitched(jobId, frame);
    if (!done) return;
    log.info({ jobId, frame, tiles: tiles.states.length, renderMs }, 'frame stitched from tiles');
    await this.frameDone(jobId, frame, { worker_id: null, render_ms: renderMs, file: output, sha256: null });
    await this.frameSettled(jobId, done.jobFinished);
  }

  /**
   * The job cannot finish whatever the farm does (Scheduler.hopelessReason): it fails now
   * instead of waiting for ever. Unfinished frames go back to queued, so a retry takes them up.
   */
  async giveUp(jobId: string, reason: string): Promise<void> {
    const row = await this.state.store.getJob(jobId);
    if (!row || !['queued', 'rendering'].includes(row.state)) return;
    await this.dispatch.leaveScheduler(jobId);
    this.dispatch.releaseJob(jobId);
    await this.state.store.requeueRenderingFrames(jobId);
    await this.state.failJob(row, reason);
  }

  /** Every frame is either done or failed for good: encode, or report what failed. */
  async finishRendering(jobId: string): Promise<void> {
    const { store, views } = this.state;
    const row = await this.state.requireJob(jobId);
    if (!['queued', 'rendering', 'paused'].includes(row.state)) return;
    await this.dispatch.leaveScheduler(jobId);
    this.dispatch.releaseJob(jobId);
    const counts = views.countsOf(jobId);
    if (counts.failed > 0) {
      const [firstFailure] = await store.listFrames(jobId, 'failed');
      await this.state.failJob(row, `${counts.failed} of ${counts.total} frames failed; frame ${firstFailure?.number}: ${firstFailure?.error}`);
      return;
    }
    const { scene, overrides } = jobRecord(row);
    const noVideo = scene && noVideoReason(scene, overrides);
    if (noVideo) {
      this.state.log.info({ jobId }, noVideo);
      await this.state.setState(row, 'completed', { finished_at: now() });
      return;
    }
    await this.state.setState(row, 'encoding');
    // Not awaited: the upload that finished the last frame gets its answer now, not after ffmpeg.
    this.state.background(this.encode(jobId));
  }

  /**
   * Makes the job's video: the one streamed while it rendered when that is exactly what
   * encoding every frame now would make (VideoStreams.finish), else every frame now.
   */
  async encode(jobId: string): Promise<void> {
    const { dataDir, options, log, videoStreams, store } = this.state;
    const row = await this.state.requireJob(jobId);
    const output = dataDir.video(jobId);
    try {
      const streamed = await videoStreams.finish(jobId);
      if (streamed) {
        await rename(streamed, output);
      } else {
        // Cancelled (or deleted) while its stream ended: nothing more to make.
        if ((await store.getJob(jobId))?.state !== 'encoding') return;
        await encodeVideo({
          ffmpegPath: options.ffmpegPath,
          framesDir: dataDir.framesDir(jobId),
          extension: row.file_extension ?? 'png',
          fps: row.fps ?? 24,
          output,
        });
      }
      const how = streamed ? 'stream' : 'batch';
      videoStreams.made[how]++;
      await videoStreams.removeStaleOutputs(jobId);
      const { size } = await stat(output);
      log.info({ jobId, bytes: size, how }, 'video encoded');
      await this.state.setState(row, 'completed', { video_file: output, finished_at: now() });
    } catch (error) {
      log.error({ jobId, err: error }, 'video encoding failed');
      await this.state.failJob(row, `the frames rendered but the video could not be made: ${(error as Error).message}`);
    }
  }
}
