import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { encodeVideo } from '../encoder/index.ts';
import {
  fileExtensionOf,
  frameCount,
  framesOf,
  MAX_FRAMES_PER_JOB,
  type FarmEvent,
  type Frame,
  type FrameRange,
  type Job,
  type JobDetail,
  type JobOptions,
  type JobState,
  type SceneInfo,
  type SceneOverrides,
  type ServerToWorker,
  type Worker,
  type WorkerHello,
} from '../protocol/index.ts';
import { Scheduler, assertTransition, type Assignment } from '../scheduler/index.ts';
import type { JobRow, Store } from '../store/index.ts';
import type { Logger } from '../util/log.ts';
import type { DataDir } from './data-dir.ts';
import { commitFile, discardFile, type ReceivedFile } from './upload.ts';
import { emptyCounts, frameView, jobView, workerView } from './views.ts';

export interface FarmOptions {
  ffmpegPath: string;
  /** A frame is tried this many more times after its first failure. */
  frameRetries: number;
}

/** How the farm talks to one connected worker; the WebSocket edge implements it. */
export interface WorkerLink {
  send(message: ServerToWorker): void;
  close(reason: string): void;
}

interface ConnectedWorker {
  id: string;
  link: WorkerLink;
  current: { jobId: string; frame: number; percent: number } | null;
}

export class FarmError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

export const newId = () => randomBytes(8).toString('hex');
const now = () => new Date().toISOString();

/**
 * The farm's application service: it owns the job life cycle and applies the
 * scheduler's decisions to the store, the workers and the observers. Transport-free:
 * the HTTP and WebSocket edges call it and pass it `WorkerLink`s.
 */
export class Farm extends EventEmitter<{ event: [FarmEvent] }> {
  private readonly scheduler: Scheduler;
  private readonly workers = new Map<string, ConnectedWorker>();
  /** job id -> worker probing its scene (null: waiting for a worker). */
  private readonly probes = new Map<string, string | null>();
  private readonly pending = new Set<Promise<unknown>>();
  private stopping = false;

  constructor(
    private readonly store: Store,
    private readonly dataDir: DataDir,
    private readonly options: FarmOptions,
    private readonly log: Logger,
  ) {
    super();
    this.scheduler = new Scheduler({ maxAttempts: options.frameRetries + 1, blockAfterFailures: 3 });
  }

  /** Rebuilds the in-memory queue from the store after a (re)start. */
  async restore(): Promise<void> {
    const requeued = await this.store.requeueRenderingFrames();
    for (const job of await this.store.listJobsInState(['probing', 'queued', 'rendering', 'encoding'])) {
      if (job.state === 'probing') this.probes.set(job.id, null);
      else if (job.state === 'encoding') this.background(this.encode(job.id));
      else {
        const open = await this.store.listFrames(job.id, 'queued');
        this.scheduler.addJob({ jobId: job.id, priority: job.priority, seq: job.seq, frames: open.map((f) => f.number) });
        if (open.length === 0) this.background(this.finishRendering(job.id));
      }
    }
    this.log.info({ requeued }, 'farm state restored');
  }

  // ---- jobs ------------------------------------------------------------------

  async submitJob(upload: ReceivedFile, options: JobOptions, fileName: string): Promise<Job> {
    await commitFile(upload.tempPath, this.dataDir.blend(upload.sha256));
    const row = await this.store.insertJob({
      id: newId(),
      name: options.name ?? displayName(fileName),
      state: 'probing',
      priority: options.priority,
      allow_scripts: options.allowScripts ? 1 : 0,
      blend_sha256: upload.sha256,
      blend_size: upload.size,
      requested_json: JSON.stringify({
        frames: options.frames,
        fileFormat: options.fileFormat,
        resolutionPercentage: options.resolutionPercentage,
        samples: options.samples,
      }),
      overrides_json: JSON.stringify({
        engine: null,
        resolutionPercentage: options.resolutionPercentage ?? null,
        samples: options.samples ?? null,
        fileFormat: options.fileFormat ?? null,
      } satisfies SceneOverrides),
      scene_json: null,
      frame_start: null,
      frame_end: null,
      frame_step: null,
      fps: null,
      file_extension: null,
      video_file: null,
      error: null,
      created_at: now(),
      started_at: null,
      finished_at: null,
    });
    this.log.info({ jobId: row.id, name: row.name, size: upload.size }, 'job submitted');
    this.probes.set(row.id, null);
    await this.publishJob(row.id);
    this.requestProbes();
    return this.getJob(row.id);
  }

  async getJob(id: string): Promise<Job> {
    const row = await this.requireJob(id);
    const counts = await this.store.frameCounts(id);
    return jobView(row, counts.get(id));
  }

  async getJobDetail(id: string): Promise<JobDetail> {
    const job = await this.getJob(id);
    const frames = await this.store.listFrames(id);
    return { ...job, frameList: frames.map((f) => frameView(f, this.progressOf(id, f.number))) };
  }

  async listJobs(): Promise<Job[]> {
    const counts = await this.store.frameCounts();
    return (await this.store.listJobs()).map((row) => jobView(row, counts.get(row.id)));
  }

  async cancelJob(id: string): Promise<Job> {
    const row = await this.requireJob(id);
    if (['completed', 'failed', 'cancelled'].includes(row.state)) {
      throw new FarmError(`job ${id} is already ${row.state}`, 409);
    }
    this.probes.delete(id);
    this.scheduler.removeJob(id);
    await this.setState(row, 'cancelled', { finished_at: now() });
    this.releaseJob(id);
    this.pump();
    return this.getJob(id);
  }

  /** The file a frame was saved to, for download. */
  async frameFile(jobId: string, frame: number): Promise<string> {
    const row = await this.store.getFrame(jobId, frame);
    if (!row) throw new FarmError(`job ${jobId} has no frame ${frame}`, 404);
    if (row.state !== 'done' || !row.file) throw new FarmError(`frame ${frame} is not rendered yet`, 404);
    return row.file;
  }

  async videoFile(jobId: string): Promise<string> {
    const row = await this.requireJob(jobId);
    if (!row.video_file) throw new FarmError(`job ${jobId} has no video yet`, 404);
    return row.video_file;
  }

  async doneFrames(jobId: string): Promise<Array<{ number: number; file: string }>> {
    await this.requireJob(jobId);
    const frames = await this.store.listFrames(jobId, 'done');
    return frames.filter((f) => f.file).map((f) => ({ number: f.number, file: f.file! }));
  }

  // ---- workers -------------------------------------------------------------------

  async workerConnected(hello: WorkerHello, link: WorkerLink): Promise<string> {
    const id = hello.workerId ?? newId();
    const previous = this.workers.get(id);
    if (previous) {
      // The same machine reconnected before its old socket timed out: the new one wins.
      this.workers.delete(id);
      previous.link.close('replaced by a newer connection');
      this.returnFramesOf(id);
    }
    this.workers.set(id, { id, link, current: null });
    await this.store.upsertWorker({
      id,
      name: hello.name,
      host: hello.host,
      threads: hello.threads,
      blender_version: hello.blenderVersion,
    });
    link.send({ type: 'welcome', workerId: id, protocol: hello.protocol });
    this.log.info({ workerId: id, name: hello.name, host: hello.host }, 'worker connected');
    await this.publishWorker(id);
    this.requestProbes();
    return id;
  }

  workerReady(workerId: string): void {
    const worker = this.workers.get(workerId);
    if (!worker) return;
    worker.current = null;
    this.scheduler.workerReady(workerId);
    this.background(this.publishWorker(workerId));
    this.pump();
  }

  workerProgress(workerId: string, jobId: string, frame: number, percent: number): void {
    const worker = this.workers.get(workerId);
    if (!worker?.current || worker.current.jobId !== jobId || worker.current.frame !== frame) return;
    worker.current.percent = percent;
    this.background(this.publishWorker(workerId));
  }

  async workerDisconnected(workerId: string, link: WorkerLink): Promise<void> {
    const worker = this.workers.get(workerId);
    if (!worker || worker.link !== link || this.stopping) return; // an older, replaced connection, or shutdown
    this.workers.delete(workerId);
    this.log.warn({ workerId }, 'worker disconnected');
    this.returnFramesOf(workerId);
    for (const [jobId, prober] of this.probes) if (prober === workerId) this.probes.set(jobId, null);
    await this.store.touchWorker(workerId);
    await this.publishWorker(workerId);
    this.requestProbes();
    this.pump();
  }

  async listWorkers(): Promise<Worker[]> {
    return (await this.store.listWorkers()).map((row) => workerView(row, this.liveState(row.id)));
  }

  /** The worker uploaded a rendered frame: the first valid result for a frame wins. */
  async frameUploaded(
    workerId: string,
    jobId: string,
    frame: number,
    upload: ReceivedFile,
    renderMs: number,
  ): Promise<{ accepted: boolean; reason?: string }> {
    const job = await this.store.getJob(jobId);
    const row = job && (await this.store.getFrame(jobId, frame));
    if (!job || !row) {
      await discardFile(upload.tempPath);
      throw new FarmError(`job ${jobId} has no frame ${frame}`, 404);
    }
    if (row.state === 'done' || !this.scheduler.hasJob(jobId)) {
      await discardFile(upload.tempPath);
      return { accepted: false, reason: row.state === 'done' ? 'frame already done' : `job is ${job.state}` };
    }
    const file = this.dataDir.frameFile(jobId, frame, job.file_extension ?? 'png');
    await commitFile(upload.tempPath, file);
    const outcome = this.scheduler.frameDone(jobId, frame, workerId);
    if (outcome.kind !== 'accepted') return { accepted: false, reason: 'frame already done' };
    for (const other of outcome.cancel) this.workers.get(other.workerId)?.link.send({ type: 'cancel', jobId, frame });
    const worker = this.workers.get(workerId);
    if (worker?.current?.jobId === jobId && worker.current.frame === frame) worker.current = null;
    await this.store.updateFrame(jobId, frame, {
      state: 'done',
      worker_id: workerId,
      render_ms: Math.round(renderMs),
      file,
      sha256: upload.sha256,
      error: null,
      finished_at: now(),
    });
    await this.store.recordRenderedFrame(workerId, Math.round(renderMs));
    await this.publishFrame(jobId, frame);
    await this.publishWorker(workerId);
    if (outcome.jobFinished) await this.finishRendering(jobId);
    else await this.publishJob(jobId);
    return { accepted: true };
  }

  async frameFailed(workerId: string, jobId: string, frame: number, error: string, log: string): Promise<void> {
    const outcome = this.scheduler.frameFailed(jobId, frame, workerId);
    if (outcome.kind === 'unknown') return;
    this.log.warn({ workerId, jobId, frame, attempts: outcome.attempts, error }, 'frame failed');
    const worker = this.workers.get(workerId);
    if (worker?.current?.jobId === jobId && worker.current.frame === frame) worker.current = null;
    await this.store.updateFrame(jobId, frame, {
      state: outcome.kind === 'failed' ? 'failed' : 'queued',
      worker_id: outcome.kind === 'failed' ? workerId : null,
      attempts: outcome.attempts,
      error,
      log,
    });
    await this.publishFrame(jobId, frame);
    if (outcome.kind === 'failed' && outcome.jobFinished) await this.finishRendering(jobId);
    else await this.publishJob(jobId);
    this.pump();
  }

  async probeSucceeded(workerId: string, jobId: string, scene: SceneInfo): Promise<void> {
    if (this.probes.get(jobId) !== workerId) return;
    this.probes.delete(jobId);
    const row = await this.store.getJob(jobId);
    if (!row || row.state !== 'probing') return;
    const requested = JSON.parse(row.requested_json) as { frames?: FrameRange };
    const overrides = JSON.parse(row.overrides_json) as SceneOverrides;
    const range = requested.frames ?? { start: scene.frameStart, end: scene.frameEnd, step: scene.frameStep };
    if (range.end < range.start || frameCount(range) > MAX_FRAMES_PER_JOB) {
      await this.failJob(row, `the scene's frame range ${range.start}-${range.end} cannot be rendered`);
      return;
    }
    const format = overrides.fileFormat ?? scene.fileFormat;
    const extension = fileExtensionOf[format];
    if (!extension) {
      await this.failJob(row, `the scene saves ${format} images, which the farm cannot collect; choose PNG, JPEG, OPEN_EXR or TIFF`);
      return;
    }
    const frames = framesOf(range);
    await this.store.insertFrames(jobId, frames);
    await this.setState(row, 'queued', {
      scene_json: JSON.stringify(scene),
      frame_start: range.start,
      frame_end: range.end,
      frame_step: range.step,
      fps: scene.fps,
      file_extension: extension,
    });
    this.log.info({ jobId, frames: frames.length, engine: scene.engine }, 'scene probed, job queued');
    this.scheduler.addJob({ jobId, priority: row.priority, seq: row.seq, frames });
    this.pump();
  }

  async probeFailed(workerId: string, jobId: string, error: string): Promise<void> {
    if (this.probes.get(jobId) !== workerId) return;
    this.probes.delete(jobId);
    const row = await this.store.getJob(jobId);
    if (row?.state === 'probing') await this.failJob(row, `could not read the scene: ${error}`);
  }

  /**
   * Runs work the caller does not wait for (edges, timers, fan-out), logging its errors
   * and keeping it counted so `stop` can let it finish before the store closes.
   */
  background(work: Promise<unknown>): void {
    this.pending.add(work);
    work
      .catch((error) => this.log.error({ err: error }, 'background farm task failed'))
      .finally(() => this.pending.delete(work));
  }

  /** Stops taking part in events and waits for work under way; then the store may close. */
  async stop(): Promise<void> {
    this.stopping = true;
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  // ---- internals -----------------------------------------------------------------

  /** Hands pending frames to idle workers. */
  private pump(): void {
    for (const assignment of this.scheduler.dispatch()) this.background(this.assign(assignment));
  }

  private async assign({ workerId, jobId, frame }: Assignment): Promise<void> {
    const worker = this.workers.get(workerId);
    const row = await this.store.getJob(jobId);
    if (!worker || !row) return;
    worker.current = { jobId, frame, percent: 0 };
    worker.link.send({
      type: 'render',
      jobId,
      frame,
      blend: { sha256: row.blend_sha256, size: row.blend_size },
      allowScripts: row.allow_scripts === 1,
      overrides: JSON.parse(row.overrides_json),
      fileExtension: row.file_extension ?? 'png',
    });
    await this.store.updateFrame(jobId, frame, { state: 'rendering', worker_id: workerId });
    if (row.state === 'queued') await this.setState(row, 'rendering', { started_at: row.started_at ?? now() });
    await this.publishFrame(jobId, frame);
    await this.publishWorker(workerId);
  }

  private returnFramesOf(workerId: string): void {
    for (const { jobId, frame } of this.scheduler.workerLost(workerId)) {
      this.background(
        this.store.updateFrame(jobId, frame, { state: 'queued', worker_id: null }).then(() => this.publishFrame(jobId, frame)),
      );
    }
  }

  /** Sends each job waiting for its scene to be read to a connected worker. */
  private requestProbes(): void {
    for (const [jobId, prober] of this.probes) {
      if (prober !== null) continue;
      const worker = this.pickProber();
      if (!worker) return;
      this.probes.set(jobId, worker.id);
      this.background(
        this.store.getJob(jobId).then((row) => {
          if (!row) return;
          worker.link.send({
            type: 'probe',
            jobId,
            blend: { sha256: row.blend_sha256, size: row.blend_size },
            allowScripts: row.allow_scripts === 1,
          });
        }),
      );
    }
  }

  /** Probing takes a couple of seconds beside a render, so an idle worker is best but any will do. */
  private pickProber(): ConnectedWorker | undefined {
    const all = [...this.workers.values()];
    return all.find((w) => this.scheduler.isIdle(w.id)) ?? all.find((w) => !w.current) ?? all[0];
  }

  /** Every frame is either done or failed for good: encode, or report what failed. */
  private async finishRendering(jobId: string): Promise<void> {
    this.scheduler.removeJob(jobId);
    this.releaseJob(jobId);
    const row = await this.requireJob(jobId);
    const counts = (await this.store.frameCounts(jobId)).get(jobId) ?? emptyCounts();
    if (counts.failed > 0) {
      const [firstFailure] = await this.store.listFrames(jobId, 'failed');
      await this.failJob(row, `${counts.failed} of ${counts.total} frames failed; frame ${firstFailure?.number}: ${firstFailure?.error}`);
      return;
    }
    await this.setState(row, 'encoding');
    await this.encode(jobId);
  }

  private async encode(jobId: string): Promise<void> {
    const row = await this.requireJob(jobId);
    const output = this.dataDir.video(jobId);
    try {
      await encodeVideo({
        ffmpegPath: this.options.ffmpegPath,
        framesDir: this.dataDir.framesDir(jobId),
        extension: row.file_extension ?? 'png',
        fps: row.fps ?? 24,
        output,
      });
      const { size } = await stat(output);
      this.log.info({ jobId, bytes: size }, 'video encoded');
      await this.setState(row, 'completed', { video_file: output, finished_at: now() });
    } catch (error) {
      this.log.error({ jobId, err: error }, 'video encoding failed');
      await this.failJob(row, `the frames rendered but the video could not be made: ${(error as Error).message}`);
    }
  }

  private async failJob(row: JobRow, error: string): Promise<void> {
    this.log.warn({ jobId: row.id, error }, 'job failed');
    await this.setState(row, 'failed', { error, finished_at: now() });
  }

  private async setState(row: JobRow, state: JobState, patch: Partial<JobRow> = {}): Promise<void> {
    const current = (await this.store.getJob(row.id))?.state as JobState | undefined;
    if (current === undefined) return;
    assertTransition(current, state);
    await this.store.setJobState(row.id, state, patch);
    await this.publishJob(row.id);
  }

  /** Tells every worker the job is over so it can close its Blender session. */
  private releaseJob(jobId: string): void {
    for (const worker of this.workers.values()) {
      if (worker.current?.jobId === jobId) worker.current = null;
      worker.link.send({ type: 'cancel', jobId });
    }
  }

  private async requireJob(id: string): Promise<JobRow> {
    const row = await this.store.getJob(id);
    if (!row) throw new FarmError(`no job with id ${id}`, 404);
    return row;
  }

  private progressOf(jobId: string, frame: number): number {
    for (const w of this.workers.values()) {
      if (w.current?.jobId === jobId && w.current.frame === frame) return w.current.percent;
    }
    return 0;
  }

  private liveState(workerId: string) {
    const worker = this.workers.get(workerId);
    return { connected: worker !== undefined, current: worker?.current ?? null };
  }

  private async publishJob(jobId: string): Promise<void> {
    const row = await this.store.getJob(jobId);
    if (!row) return;
    const counts = await this.store.frameCounts(jobId);
    this.emit('event', { type: 'job', job: jobView(row, counts.get(jobId)) });
  }

  private async publishFrame(jobId: string, frame: number): Promise<void> {
    const row = await this.store.getFrame(jobId, frame);
    if (row) this.emit('event', { type: 'frame', frame: frameView(row, this.progressOf(jobId, frame)) satisfies Frame });
  }

  private async publishWorker(workerId: string): Promise<void> {
    const row = await this.store.getWorker(workerId);
    if (row) this.emit('event', { type: 'worker', worker: workerView(row, this.liveState(workerId)) });
  }
}

/** A name fit to show: the upload's base name without extension; never used as a path. */
function displayName(fileName: string): string {
  const base = fileName.split(/[\\/]/).pop() ?? '';
  const cleaned = base.replace(/\.blend\d*$/i, '').replace(/[^\p{L}\p{N} ._()-]/gu, '_').trim();
  return cleaned.slice(0, 120) || 'untitled';
}
