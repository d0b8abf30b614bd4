import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { encodeVideo } from '../encoder/index.ts';
import { compileJob, CompileError, type JobTilingPlan, type RenderRequest } from '../jobs/index.ts';
import {
  framesOf,
  type FarmChange,
  type FrameLog,
  type Job,
  type JobDetail,
  type JobOptions,
  type JobPatch,
  type JobState,
  type RenderAssignment,
  type SceneInfo,
  type TileRegion,
  type Worker,
  type WorkerHello,
} from '../protocol/index.ts';
import { Scheduler, assertTransition, finishedStates, type Assignment } from '../scheduler/index.ts';
import type { JobRow, Store } from '../store/index.ts';
import type { Logger } from '../util/log.ts';
import type { DataDir } from './data-dir.ts';
import { dropTiles, stitchFrame } from './tile-files.ts';
import { commitFile, discardFile, type ReceivedFile } from './upload.ts';
import { emptyCounts, workerView } from './views.ts';
import { isWorkOn, type ConnectedWorker, type WorkerLink } from './connected-worker.ts';
import { FarmViews } from './farm-views.ts';

export type { WorkerLink } from './connected-worker.ts';

export interface FarmOptions {
  ffmpegPath: string;
  /** A frame is tried this many more times after its first failure. */
  frameRetries: number;
  /** A frame rendering longer than this is stopped and counted as failed; 0 = no limit. */
  frameTimeoutMs: number;
  /** Idle workers copy the slowest frames at a job's tail (first result wins). */
  duplicateTail?: boolean;
}

interface RenderInfo {
  message: Omit<RenderAssignment, 'frame' | 'tile'>;
  /** Whether a frame was handed out since the job was (re)queued. */
  started: boolean;
  tiling: JobTilingPlan;
}

export class FarmError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/** Early logs held at most; a farm has at most one per worker in the normal course. */
const MAX_EARLY_LOGS = 5000;

/** A split frame's log holds every tile's output; this keeps it bounded. */
const MAX_FRAME_LOG_CHARS = 256 * 1024;

const earlyLogKey = (jobId: string, frame: number, workerId: string) => `${jobId}#${frame}#${workerId}`;

export const newId = () => randomBytes(8).toString('hex');
const now = () => new Date().toISOString();

/**
 * The farm's application service: it owns the job life cycle and applies the
 * scheduler's decisions to the store, the workers and the observers. Transport-free:
 * the HTTP and WebSocket edges call it and pass it `WorkerLink`s.
 */
export class Farm extends EventEmitter<{ event: [FarmChange] }> {
  private readonly scheduler: Scheduler;
  private readonly workers = new Map<string, ConnectedWorker>();
  /** job id -> worker probing its scene (null: waiting for a worker). */
  private readonly probes = new Map<string, string | null>();
  /** Workers that handed a probe back (disk full), until they say they are ready again. */
  private readonly cannotProbe = new Set<string>();
  private readonly views: FarmViews;
  /** What a `render` message needs, per queued job, so handing out a frame waits on no query. */
  private readonly renderInfo = new Map<string, RenderInfo>();
  /** worker -> the timer that stops its frame if it renders too long (frame_timeout_s). */
  private readonly frameTimers = new Map<string, NodeJS.Timeout>();
  /** Logs of whole frames that arrived before their upload, written with the result. */
  private readonly earlyLogs = new Map<string, { jobId: string; frame: number; workerId: string; log: string }>();
  private readonly pending = new Set<Promise<unknown>>();
  private stopping = false;

  constructor(
    private readonly store: Store,
    private readonly dataDir: DataDir,
    private readonly options: FarmOptions,
    private readonly log: Logger,
  ) {
    super();
    this.scheduler = new Scheduler({
      maxAttempts: options.frameRetries + 1,
      blockAfterFailures: 3,
      duplicateTail: options.duplicateTail ?? true,
    });
    this.views = new FarmViews(store, this.scheduler, this.workers, (change) => this.emit('event', change));
  }

  /** Rebuilds the in-memory queue from the store after a (re)start. */
  async restore(): Promise<void> {
    const requeued = await this.store.requeueRenderingFrames();
    const counts = await this.store.frameCounts();
    for (const job of await this.store.listJobs()) {
      const queued = ['queued', 'rendering', 'paused'].includes(job.state);
      await this.views.loadJob(job.id, queued ? undefined : (counts.get(job.id) ?? emptyCounts()));
      if (job.state === 'probing') this.probes.set(job.id, null);
      if (job.state === 'encoding') this.background(this.encode(job.id));
      if (queued) await this.enqueue(job, job.state === 'paused');
    }
    this.log.info({ requeued }, 'farm state restored');
  }

  // ---- jobs ------------------------------------------------------------------

  async submitJob(upload: ReceivedFile, options: JobOptions, fileName: string): Promise<Job> {
    await commitFile(upload.tempPath, this.dataDir.blend(upload.sha256));
    const request: RenderRequest = {
      frames: options.frames,
      fileFormat: options.fileFormat,
      resolutionPercentage: options.resolutionPercentage,
      samples: options.samples,
      tiles: options.tiles,
      forceTiles: options.forceTiles,
    };
    const row = await this.store.insertJob({
      id: newId(),
      name: options.name ?? displayName(fileName),
      state: 'probing',
      priority: options.priority,
      allow_scripts: options.allowScripts ? 1 : 0,
      blend_sha256: upload.sha256,
      blend_size: upload.size,
      requested_json: JSON.stringify({ ...request, hold: options.hold }),
      overrides_json: JSON.stringify({
        engine: null,
        resolutionPercentage: request.resolutionPercentage ?? null,
        samples: request.samples ?? null,
        fileFormat: request.fileFormat ?? null,
      }),
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
    this.views.keepCounts(row.id, emptyCounts());
    this.probes.set(row.id, null);
    await this.views.publishJob(row.id);
    this.requestProbes();
    return this.getJob(row.id);
  }

  async getJob(id: string): Promise<Job> {
    return this.views.job(await this.requireJob(id));
  }

  async getJobDetail(id: string): Promise<JobDetail> {
    const job = await this.getJob(id);
    const frames = await this.store.listFrames(id);
    return { ...job, frameList: frames.map((f) => this.views.frame(f)) };
  }

  /**
   * The job's frames in columns, for the web UI: all of them, or only those numbered in
   * `only`. `cursor` is where the frame change log stood before the frames were read.
   */
  async frameColumns(id: string, cursor: string, only?: number[]) {
    const job = await this.getJob(id);
    const stored = await this.store.listFrameColumns(id, only);
    return this.views.frameColumns(job, stored, { cursor, partial: only !== undefined });
  }

  async listJobs(): Promise<Job[]> {
    return Promise.all((await this.store.listJobs()).map((row) => this.views.job(row)));
  }

  async cancelJob(id: string): Promise<Job> {
    const row = await this.requireJob(id);
    if (finishedStates.includes(row.state as JobState)) throw new FarmError(`job ${id} is already ${row.state}`, 409);
    this.probes.delete(id);
    await this.leaveScheduler(id);
    await this.setState(row, 'cancelled', { finished_at: now() });
    this.releaseJob(id);
    this.pump();
    return this.getJob(id);
  }

  async pauseJob(id: string): Promise<Job> {
    const row = await this.requireJob(id);
    if (!['queued', 'rendering'].includes(row.state)) throw new FarmError(`a ${row.state} job cannot be paused`, 409);
    // Frames already rendering finish; no new ones are handed out.
    this.scheduler.setPaused(id, true);
    await this.setState(row, 'paused');
    return this.getJob(id);
  }

  async resumeJob(id: string): Promise<Job> {
    const row = await this.requireJob(id);
    if (row.state !== 'paused') throw new FarmError(`job ${id} is ${row.state}, not paused`, 409);
    this.scheduler.setPaused(id, false);
    const started = this.scheduler.hasStarted(id);
    await this.setState(row, started ? 'rendering' : 'queued', { error: null });
    this.pump();
    const counts = this.views.countsOf(id);
    if (counts.queued + counts.rendering === 0) await this.finishRendering(id);
    return this.getJob(id);
  }

  /** The server's disk filled while receiving a frame: pause rather than fail; nothing stored is touched. */
  async storageFull(jobId: string, detail: string): Promise<void> {
    const row = await this.store.getJob(jobId);
    if (!row || !['queued', 'rendering'].includes(row.state)) return;
    this.log.error({ jobId, detail }, 'disk full: pausing the job');
    this.scheduler.setPaused(jobId, true);
    await this.setState(row, 'paused', { error: `paused because the server's disk is full (${detail}); free space, then resume` });
  }

  /** Puts a job's failed frames back in the queue, with fresh attempts. */
  async retryFailed(id: string): Promise<Job> {
    const row = await this.requireJob(id);
    const counts = this.views.countsOf(id);
    if (counts.failed === 0) throw new FarmError(`job ${id} has no failed frames`, 409);
    if (!['failed', 'rendering', 'queued', 'paused'].includes(row.state)) {
      throw new FarmError(`a ${row.state} job cannot retry frames`, 409);
    }
    await this.leaveScheduler(id);
    await this.store.requeueFailedFrames(id);
    if (row.state === 'failed') await this.setState(row, 'queued', { error: null, finished_at: null });
    await this.enqueue((await this.requireJob(id)), row.state === 'paused');
    this.pump();
    await this.views.publishJob(id);
    return this.getJob(id);
  }

  /** Removes a job with its frames and files; a running job is cancelled first. */
  async deleteJob(id: string): Promise<void> {
    const row = await this.requireJob(id);
    if (!finishedStates.includes(row.state as JobState)) await this.cancelJob(id);
    this.views.forgetJob(id);
    this.renderInfo.delete(id);
    await this.store.deleteJob(id);
    await rm(this.dataDir.jobDir(id), { recursive: true, force: true });
    if ((await this.store.jobsUsingBlend(row.blend_sha256)) === 0) await rm(this.dataDir.blend(row.blend_sha256), { force: true });
    this.log.info({ jobId: id }, 'job deleted');
    this.emit('event', { type: 'job_removed', jobId: id });
  }

  /** Renames or re-prioritises a job; render settings change only before any frame is out. */
  async patchJob(id: string, patch: JobPatch): Promise<Job> {
    const row = await this.requireJob(id);
    const changesRender = ['frames', 'fileFormat', 'resolutionPercentage', 'samples', 'tiles', 'forceTiles'].some((k) => k in patch);
    if (changesRender) await this.changeRenderSettings(row, patch);
    if (patch.name !== undefined || patch.priority !== undefined) {
      await this.store.updateJob(id, { name: patch.name ?? row.name, priority: patch.priority ?? row.priority });
      if (patch.priority !== undefined) this.scheduler.setPriority(id, patch.priority);
    }
    await this.views.publishJob(id);
    this.pump();
    return this.getJob(id);
  }

  private async changeRenderSettings(row: JobRow, patch: JobPatch): Promise<void> {
    const editable = ['paused', 'queued'].includes(row.state) && !this.scheduler.hasStarted(row.id);
    if (!editable || !row.scene_json) {
      throw new FarmError(`render settings can only change before the job's first frame is handed out (job is ${row.state})`, 409);
    }
    const previous = JSON.parse(row.requested_json) as RenderRequest & { hold?: boolean };
    const request: RenderRequest = { ...previous, ...patch };
    let compiled;
    try {
      compiled = compileJob(JSON.parse(row.scene_json) as SceneInfo, request);
    } catch (error) {
      throw new FarmError((error as Error).message, 400);
    }
    this.scheduler.removeJob(row.id);
    await this.store.deleteFrames(row.id);
    await this.store.insertFrames(row.id, framesOf(compiled.range));
    await this.store.updateJob(row.id, {
      requested_json: JSON.stringify({ ...request, hold: previous.hold }),
      overrides_json: JSON.stringify(compiled.overrides),
      frame_start: compiled.range.start,
      frame_end: compiled.range.end,
      frame_step: compiled.range.step,
      file_extension: compiled.fileExtension,
    });
    await this.enqueue(await this.requireJob(row.id), row.state === 'paused');
  }

  /** The file a frame was saved to, for download. */
  async frameFile(jobId: string, frame: number): Promise<string> {
    const row = await this.store.getFrame(jobId, frame);
    if (!row) throw new FarmError(`job ${jobId} has no frame ${frame}`, 404);
    if (row.state !== 'done' || !row.file) throw new FarmError(`frame ${frame} is not rendered yet`, 404);
    return row.file;
  }

  async frameLog(jobId: string, frame: number): Promise<FrameLog> {
    const row = await this.store.getFrame(jobId, frame);
    if (!row) throw new FarmError(`job ${jobId} has no frame ${frame}`, 404);
    return { number: frame, error: row.error, log: row.log ?? '' };
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
    const row = await this.store.upsertWorker({
      id,
      name: hello.name,
      host: hello.host,
      threads: hello.threads,
      blender_version: hello.blenderVersion,
    });
    const uploadKey = randomBytes(24).toString('base64url');
    this.workers.set(id, { id, link, enabled: row.enabled !== 0, current: null, row, allowScripts: hello.allowScripts, uploadKey });
    this.scheduler.setScriptsAllowed(id, hello.allowScripts);
    for (const { jobId, frame, tile } of hello.holding) {
      if (!this.scheduler.claim(jobId, frame, id, tile)) continue;
      await this.views.saveFrame(jobId, frame, { state: 'rendering', worker_id: tile === undefined ? id : null });
    }
    link.send({ type: 'welcome', workerId: id, protocol: hello.protocol, uploadKey });
    this.log.info({ workerId: id, name: hello.name, host: hello.host }, 'worker connected');
    await this.views.publishWorker(id);
    await this.publishScriptJobs();
    this.requestProbes();
    return id;
  }

  /**
   * The worker whose open connection was given this upload key. Uploads prove with it that
   * they come from that connection, so a worker token alone cannot deliver another's frames.
   */
  workerForUploadKey(key: string): string | undefined {
    for (const worker of this.workers.values()) if (worker.uploadKey === key) return worker.id;
    return undefined;
  }

  workerReady(workerId: string): void {
    const worker = this.workers.get(workerId);
    if (!worker) return;
    worker.current = null;
    this.clearFrameTimer(workerId);
    if (this.cannotProbe.delete(workerId)) this.requestProbes();
    if (worker.enabled) this.scheduler.workerReady(workerId);
    this.background(this.views.publishWorker(workerId));
    this.pump();
  }

  workerProgress(workerId: string, jobId: string, frame: number, percent: number, tile?: number): void {
    const worker = this.workers.get(workerId);
    if (!isWorkOn(worker?.current, jobId, frame, tile)) return;
    worker!.current!.percent = percent;
    this.background(this.views.publishWorker(workerId));
    // Only while it is still rendering: a late progress line must not re-announce a done frame.
    const stillRendering = () => isWorkOn(worker!.current, jobId, frame, tile);
    this.background(this.views.publishFrame(jobId, frame, stillRendering));
  }

  async workerDisconnected(workerId: string, link: WorkerLink): Promise<void> {
    const worker = this.workers.get(workerId);
    if (!worker || worker.link !== link || this.stopping) return; // an older, replaced connection, or shutdown
    this.workers.delete(workerId);
    this.clearFrameTimer(workerId);
    this.cannotProbe.delete(workerId);
    this.log.warn({ workerId }, 'worker disconnected');
    this.returnFramesOf(workerId);
    for (const [jobId, prober] of this.probes) if (prober === workerId) this.probes.set(jobId, null);
    await this.store.touchWorker(workerId);
    await this.views.publishWorker(workerId);
    await this.publishScriptJobs();
    this.requestProbes();
    this.pump();
  }

  /**
   * `drain`: the worker finishes its frame and takes no more. `disable`: its frame goes
   * back to the queue at once. `enable`: it takes work again.
   */
  async setWorkerMode(workerId: string, mode: 'enable' | 'drain' | 'disable'): Promise<Worker> {
    const row = await this.store.getWorker(workerId);
    if (!row) throw new FarmError(`no worker with id ${workerId}`, 404);
    const enabled = mode === 'enable';
    const updated = await this.store.setWorkerEnabled(workerId, enabled);
    const worker = this.workers.get(workerId);
    if (worker) {
      worker.enabled = enabled;
      if (updated) worker.row = updated;
      if (enabled && !worker.current) this.scheduler.workerReady(workerId);
      if (!enabled) this.scheduler.workerParked(workerId);
      if (mode === 'disable' && worker.current) {
        const { jobId, frame, tile } = worker.current;
        worker.link.send({ type: 'cancel', jobId, frame, tile });
        this.returnFramesOf(workerId);
        worker.current = null;
      }
    }
    this.log.info({ workerId, mode }, 'worker mode changed');
    this.requestProbes();
    this.pump();
    await this.views.publishWorker(workerId);
    return workerView((await this.store.getWorker(workerId))!, this.views.liveState(workerId));
  }

  async listWorkers(): Promise<Worker[]> {
    return (await this.store.listWorkers()).map((row) => workerView(row, this.views.liveState(row.id)));
  }

  /** The worker uploaded a rendered frame, or one tile of it: the first valid result wins. */
  async frameUploaded(
    workerId: string,
    jobId: string,
    frame: number,
    upload: ReceivedFile,
    renderMs: number,
    tile?: number,
  ): Promise<{ accepted: boolean; reason?: string }> {
    const job = await this.store.getJob(jobId);
    // The scheduler knows the frames still to render; only a refusal needs the stored frame.
    const open = job !== undefined && this.scheduler.isOpen(jobId, frame);
    const row = open ? null : job && (await this.store.getFrame(jobId, frame));
    if (!job || row === undefined) {
      await discardFile(upload.tempPath);
      throw new FarmError(`job ${jobId} has no frame ${frame}`, 404);
    }
    const tiles = row ? null : this.scheduler.tilesOf(jobId, frame);
    const refusal =
      row?.state === 'done' ? 'frame already done'
      : row ? (this.scheduler.hasJob(jobId) ? `frame ${frame} is ${row.state}` : `job is ${job.state}`)
      : tile === undefined ? (tiles ? `frame ${frame} is split into tiles` : null)
      : tiles?.states[tile] === undefined ? `frame ${frame} is not split into that tile`
      : tiles.states[tile] === 'done' ? 'tile already done'
      : null;
    // Only the worker (or workers, at the tail) it was handed to may deliver it.
    const unassigned = !refusal && !this.scheduler.wasAssigned(jobId, frame, workerId, tile);
    if (unassigned) {
      this.log.warn({ workerId, jobId, frame, tile }, 'result refused: not assigned to this worker');
      await discardFile(upload.tempPath);
      return { accepted: false, reason: `${tile === undefined ? `frame ${frame}` : `tile ${tile} of frame ${frame}`} was not assigned to this worker` };
    }
    if (refusal) {
      if (tile === undefined) this.takeEarlyLog(jobId, frame, workerId); // a losing copy's log is not the frame's
      await discardFile(upload.tempPath);
      return { accepted: false, reason: refusal };
    }
    const extension = job.file_extension ?? 'png';
    const file = tile === undefined ? this.dataDir.frameFile(jobId, frame, extension) : this.dataDir.tileFile(jobId, frame, tile, extension);
    await commitFile(upload.tempPath, file);
    const outcome = this.scheduler.frameDone(jobId, frame, workerId, tile);
    if (outcome.kind !== 'accepted') {
      if (tile === undefined) this.takeEarlyLog(jobId, frame, workerId);
      return { accepted: false, reason: 'already done' };
    }
    for (const other of outcome.cancel) this.workers.get(other.workerId)?.link.send({ type: 'cancel', jobId, frame, tile });
    const worker = this.workers.get(workerId);
    if (isWorkOn(worker?.current, jobId, frame, tile)) worker!.current = null;
    const ms = Math.round(renderMs);
    const workerRow = await this.store.recordRenderedFrame(workerId, ms);
    if (workerRow && worker?.row.id === workerRow.id) worker.row = workerRow;
    if (tile === undefined) {
      const log = this.takeEarlyLog(jobId, frame, workerId);
      await this.frameFinished(jobId, frame, { worker_id: workerId, render_ms: ms, file, sha256: upload.sha256, ...(log === undefined ? {} : { log }) });
      await this.frameSettled(jobId, outcome.jobFinished);
    } else if (outcome.stitch) {
      await this.stitch(jobId, frame);
    } else {
      await this.views.publishFrame(jobId, frame);
    }
    await this.views.publishWorker(workerId);
    return { accepted: true };
  }

  /** Records a frame as done (rendered whole, or stitched from its tiles). */
  private async frameFinished(
    jobId: string,
    frame: number,
    result: { worker_id: string | null; render_ms: number; file: string; sha256: string | null; log?: string },
  ) {
    this.views.addRenderTime(jobId, result.render_ms);
    await this.views.saveFrame(jobId, frame, { state: 'done', ...result, error: null, finished_at: now() });
  }

  /** Every tile of a frame is in: stitch them into the frame, which only then is done. */
  private async stitch(jobId: string, frame: number): Promise<void> {
    const info = this.renderInfo.get(jobId);
    const tiles = this.scheduler.tilesOf(jobId, frame);
    if (!info || !tiles || info.tiling.mode === 'off') return;
    const extension = info.message.fileExtension;
    const output = this.dataDir.frameFile(jobId, frame, extension);
    try {
      await stitchFrame(this.dataDir, { jobId, frame, grid: tiles.grid, plan: info.tiling, extension, output, ffmpegPath: this.options.ffmpegPath });
    } catch (error) {
      const message = `the tiles could not be stitched: ${(error as Error).message}`;
      this.log.error({ jobId, frame, err: error }, 'stitching failed');
      const outcome = this.scheduler.stitchFailed(jobId, frame);
      if (outcome.kind === 'unknown') return;
      await dropTiles(this.dataDir, jobId, frame);
      await this.views.saveFrame(jobId, frame, { state: outcome.kind === 'failed' ? 'failed' : 'queued', attempts: outcome.attempts, error: message });
      await this.frameSettled(jobId, outcome.kind === 'failed' && outcome.jobFinished);
      this.pump();
      return;
    }
    const renderMs = Math.round(this.scheduler.tileRenderMs(jobId, frame) ?? 0);
    const done = this.scheduler.frameStitched(jobId, frame);
    if (!done) return;
    this.log.info({ jobId, frame, tiles: tiles.states.length, renderMs }, 'frame stitched from tiles');
    await this.frameFinished(jobId, frame, { worker_id: null, render_ms: renderMs, file: output, sha256: null });
    await this.frameSettled(jobId, done.jobFinished);
  }

  /**
   * A frame is done or failed for good: after the job's last one its rendering ends (a
   * paused job ends on resume), else only its counts changed.
   */
  private async frameSettled(jobId: string, wasLast: boolean): Promise<void> {
    const job = await this.store.getJob(jobId);
    if (wasLast && job?.state !== 'paused') await this.finishRendering(jobId);
    else await this.views.publishJob(jobId);
  }

  async frameFailed(workerId: string, jobId: string, frame: number, error: string, log: string, tile?: number): Promise<void> {
    const outcome = this.scheduler.frameFailed(jobId, frame, workerId, tile);
    if (outcome.kind === 'unknown') return;
    this.log.warn({ workerId, jobId, frame, tile, attempts: outcome.attempts, error }, tile === undefined ? 'frame failed' : 'tile failed');
    const worker = this.workers.get(workerId);
    if (isWorkOn(worker?.current, jobId, frame, tile)) worker!.current = null;
    if (outcome.kind === 'failed') {
      for (const other of outcome.cancel) this.workers.get(other.workerId)?.link.send({ type: 'cancel', jobId, frame, tile: other.tile?.index });
    }
    await this.views.saveFrame(jobId, frame, {
      state: outcome.kind === 'failed' ? 'failed' : this.unfinishedState(jobId, frame),
      worker_id: outcome.kind === 'failed' ? workerId : null,
      attempts: outcome.attempts,
      error: tile === undefined ? error : `tile ${tile + 1}: ${error}`,
      log,
    });
    await this.frameSettled(jobId, outcome.kind === 'failed' && outcome.jobFinished);
    this.pump();
  }

  /**
   * The worker could not take the frame (its disk is full): the frame goes back to the
   * front of the queue without counting as a failure, so the job waits rather than fails.
   */
  async frameHandedBack(workerId: string, jobId: string, frame: number, reason: string, tile?: number): Promise<void> {
    if (!this.scheduler.handBack(jobId, frame, workerId, tile)) return;
    this.log.warn({ workerId, jobId, frame, tile, reason }, 'worker handed a frame back');
    const worker = this.workers.get(workerId);
    if (isWorkOn(worker?.current, jobId, frame, tile)) worker!.current = null;
    this.clearFrameTimer(workerId);
    await this.views.saveFrame(jobId, frame, { state: this.unfinishedState(jobId, frame), worker_id: null });
    await this.views.publishWorker(workerId);
    this.pump();
  }

  /** Keeps Blender's output for a frame (each tile's in turn); it arrives beside the upload, in either order. */
  async frameLogReceived(workerId: string, jobId: string, frame: number, log: string, tile?: number): Promise<void> {
    if (tile === undefined) {
      // Workers send the log just before the upload: kept until then, it is written with the frame's result.
      if (isWorkOn(this.workers.get(workerId)?.current, jobId, frame)) return this.keepEarlyLog(jobId, frame, workerId, log);
      return this.store.setFrameLog(jobId, frame, log, workerId);
    }
    const row = await this.store.getFrame(jobId, frame);
    if (!row || (row.worker_id !== null && row.worker_id !== workerId)) return;
    const name = this.workers.get(workerId)?.row.name ?? workerId;
    const combined = `${row.log ?? ''}--- tile ${tile + 1} (worker ${name}) ---\n${log}\n`;
    await this.store.updateFrame(jobId, frame, { log: combined.slice(-MAX_FRAME_LOG_CHARS) });
  }

  private keepEarlyLog(jobId: string, frame: number, workerId: string, log: string): Promise<void> {
    if (this.earlyLogs.size >= MAX_EARLY_LOGS) {
      // Uploads that never came (a worker lost on the way): write the oldest out rather than hold it.
      const [[key, oldest]] = this.earlyLogs;
      this.earlyLogs.delete(key);
      this.background(this.store.setFrameLog(oldest.jobId, oldest.frame, oldest.log, oldest.workerId));
    }
    this.earlyLogs.set(earlyLogKey(jobId, frame, workerId), { jobId, frame, workerId, log });
    return Promise.resolve();
  }

  private takeEarlyLog(jobId: string, frame: number, workerId: string): string | undefined {
    const key = earlyLogKey(jobId, frame, workerId);
    const early = this.earlyLogs.get(key);
    this.earlyLogs.delete(key);
    return early?.log;
  }

  /** The stored state of a frame not finished: rendering while it is split into tiles, else queued. */
  private unfinishedState(jobId: string, frame: number): 'queued' | 'rendering' {
    return this.scheduler.tilesOf(jobId, frame) ? 'rendering' : 'queued';
  }

  /** The tile file of a split frame, while the frame waits for its other tiles (for previews). */
  async tileFile(jobId: string, frame: number, tile: number): Promise<string> {
    const job = await this.requireJob(jobId);
    if (this.scheduler.tilesOf(jobId, frame)?.states[tile] !== 'done') throw new FarmError(`tile ${tile} of frame ${frame} is not waiting to be stitched`, 404);
    return this.dataDir.tileFile(jobId, frame, tile, job.file_extension ?? 'png');
  }

  async probeSucceeded(workerId: string, jobId: string, scene: SceneInfo): Promise<void> {
    if (this.probes.get(jobId) !== workerId) return;
    this.probes.delete(jobId);
    const row = await this.store.getJob(jobId);
    if (!row || row.state !== 'probing') return;
    const request = JSON.parse(row.requested_json) as RenderRequest & { hold?: boolean };
    let compiled;
    try {
      compiled = compileJob(scene, request);
    } catch (error) {
      if (!(error instanceof CompileError)) throw error;
      await this.failJob(row, error.message);
      return;
    }
    const frames = framesOf(compiled.range);
    await this.store.insertFrames(jobId, frames);
    const fields = {
      scene_json: JSON.stringify(scene),
      overrides_json: JSON.stringify(compiled.overrides),
      frame_start: compiled.range.start,
      frame_end: compiled.range.end,
      frame_step: compiled.range.step,
      fps: scene.fps,
      file_extension: compiled.fileExtension,
    };
    await this.store.updateJob(jobId, fields);
    await this.enqueue({ ...row, ...fields }, request.hold === true, frames);
    await this.setState(row, request.hold ? 'paused' : 'queued');
    this.log.info({ jobId, frames: this.views.countsOf(jobId).total, engine: scene.engine }, 'scene probed, job queued');
    this.pump();
  }

  /** The worker could not probe (its disk is full): another worker probes, or this one once it is ready again. */
  async probeHandedBack(workerId: string, jobId: string, reason: string): Promise<void> {
    if (this.probes.get(jobId) !== workerId) return;
    this.log.warn({ workerId, jobId, reason }, 'worker handed a probe back');
    this.probes.set(jobId, null);
    this.cannotProbe.add(workerId);
    this.requestProbes();
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
    for (const workerId of [...this.frameTimers.keys()]) this.clearFrameTimer(workerId);
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  // ---- internals -----------------------------------------------------------------

  /** Puts a job's queued frames into the scheduler, with the counts of its finished ones. */
  private async enqueue(row: JobRow, paused: boolean, fresh?: number[]): Promise<void> {
    // A job just compiled passes its frames; otherwise they are read back from the store.
    const open = fresh ? fresh.map((number) => ({ number })) : await this.store.listFrames(row.id, 'queued');
    const counts = fresh ? emptyCounts() : ((await this.store.frameCounts(row.id)).get(row.id) ?? emptyCounts());
    this.views.keepCounts(row.id, null);
    const tiling = tilingOf(row);
    // Tiles of an earlier run of this job are stale: its frames start over whole or split anew.
    await rm(this.dataDir.tilesDir(row.id), { recursive: true, force: true });
    this.renderInfo.set(row.id, {
      started: false,
      tiling,
      message: {
        type: 'render',
        jobId: row.id,
        blend: { sha256: row.blend_sha256, size: row.blend_size },
        allowScripts: row.allow_scripts === 1,
        overrides: JSON.parse(row.overrides_json),
        fileExtension: row.file_extension ?? 'png',
      },
    });
    this.scheduler.addJob({
      jobId: row.id,
      priority: row.priority,
      seq: row.seq,
      frames: open.map((f) => f.number),
      done: counts.done,
      failed: counts.failed,
      paused,
      tiling,
      needsScripts: row.allow_scripts === 1,
    });
    if (open.length === 0 && !paused && ['queued', 'rendering'].includes(row.state)) {
      this.background(this.finishRendering(row.id));
    }
  }

  /** Takes a job out of the scheduler, keeping its last counts for the views. */
  private async leaveScheduler(jobId: string): Promise<void> {
    const counts = this.scheduler.counts(jobId);
    this.scheduler.removeJob(jobId);
    // Frames that were rendering count as queued once nobody renders them any more.
    this.views.keepCounts(
      jobId,
      counts
        ? { ...counts, queued: counts.queued + counts.rendering, rendering: 0 }
        : ((await this.store.frameCounts(jobId)).get(jobId) ?? emptyCounts()),
    );
  }

  /** Hands pending frames to idle workers. */
  private pump(): void {
    for (const assignment of this.scheduler.dispatch()) this.background(this.assign(assignment));
  }

  private async assign({ workerId, jobId, frame, tile }: Assignment): Promise<void> {
    const worker = this.workers.get(workerId);
    const info = this.renderInfo.get(jobId);
    if (!worker || !info) return;
    worker.current = tile ? { jobId, frame, tile: tile.index, tiles: tile.cols * tile.rows, percent: 0 } : { jobId, frame, percent: 0 };
    this.startFrameTimer(workerId, jobId, frame, tile);
    // Sent before any query: the worker starts while the store catches up.
    worker.link.send(tile ? { ...info.message, frame, tile } : { ...info.message, frame });
    const frameRow = await this.store.updateFrame(jobId, frame, { state: 'rendering', worker_id: tile ? null : workerId });
    if (!info.started) {
      info.started = true;
      const row = await this.store.getJob(jobId);
      if (row?.state === 'queued') await this.setState(row, 'rendering', { started_at: row.started_at ?? now() });
    }
    if (frameRow) this.views.publishFrameRow(frameRow);
    await this.views.publishWorker(workerId);
  }

  private startFrameTimer(workerId: string, jobId: string, frame: number, region?: TileRegion): void {
    this.clearFrameTimer(workerId);
    if (this.options.frameTimeoutMs <= 0) return;
    const tile = region?.index;
    const timer = setTimeout(() => {
      const worker = this.workers.get(workerId);
      if (!isWorkOn(worker?.current, jobId, frame, tile)) return;
      const seconds = Math.round(this.options.frameTimeoutMs / 1000);
      this.log.warn({ workerId, jobId, frame, tile, seconds }, 'frame timed out; stopping it');
      worker!.link.send({ type: 'cancel', jobId, frame, tile });
      this.background(this.frameFailed(workerId, jobId, frame, `frame took longer than the limit of ${seconds} s (frame_timeout_s) and was stopped`, '', tile));
    }, this.options.frameTimeoutMs);
    timer.unref();
    this.frameTimers.set(workerId, timer);
  }

  private clearFrameTimer(workerId: string): void {
    clearTimeout(this.frameTimers.get(workerId));
    this.frameTimers.delete(workerId);
  }

  private returnFramesOf(workerId: string): void {
    for (const { jobId, frame } of this.scheduler.workerLost(workerId)) {
      const state = this.unfinishedState(jobId, frame);
      this.background(
        this.views.saveFrame(jobId, frame, { state, worker_id: null }),
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
            // A worker that refuses scripts reads the scene with them off: the probe only reads settings.
            allowScripts: row.allow_scripts === 1 && worker.allowScripts,
          });
        }),
      );
    }
  }

  /** Jobs that need scripts say whether any connected worker allows them: republished as workers come and go. */
  private async publishScriptJobs(): Promise<void> {
    for (const row of await this.store.listJobsInState(['queued', 'rendering'])) {
      if (row.allow_scripts === 1) await this.views.publishJob(row.id);
    }
  }

  /** Probing takes a couple of seconds beside a render, so an idle worker is best but any enabled one will do. */
  private pickProber(): ConnectedWorker | undefined {
    const all = [...this.workers.values()].filter((w) => w.enabled && !this.cannotProbe.has(w.id));
    return all.find((w) => this.scheduler.isIdle(w.id)) ?? all.find((w) => !w.current) ?? all[0];
  }

  /** Every frame is either done or failed for good: encode, or report what failed. */
  private async finishRendering(jobId: string): Promise<void> {
    const row = await this.requireJob(jobId);
    if (!['queued', 'rendering', 'paused'].includes(row.state)) return;
    await this.leaveScheduler(jobId);
    this.releaseJob(jobId);
    const counts = this.views.countsOf(jobId);
    if (counts.failed > 0) {
      const [firstFailure] = await this.store.listFrames(jobId, 'failed');
      await this.failJob(row, `${counts.failed} of ${counts.total} frames failed; frame ${firstFailure?.number}: ${firstFailure?.error}`);
      return;
    }
    await this.setState(row, 'encoding');
    // Not awaited: the upload that finished the last frame gets its answer now, not after ffmpeg.
    this.background(this.encode(jobId));
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
    await this.views.publishJob(row.id);
  }

  /** Tells every worker the job is over so it can close its Blender session. */
  private releaseJob(jobId: string): void {
    this.views.dropRenderingRows(jobId);
    for (const [key, early] of this.earlyLogs) if (early.jobId === jobId) this.earlyLogs.delete(key);
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
}

/** How the job's frames may be split, from its probed scene and request (compiled again: pure and cheap). */
function tilingOf(row: JobRow): JobTilingPlan {
  if (!row.scene_json) return { mode: 'off' };
  try {
    return compileJob(JSON.parse(row.scene_json) as SceneInfo, JSON.parse(row.requested_json) as RenderRequest).tiling;
  } catch {
    return { mode: 'off' };
  }
}

/** A name fit to show: the upload's base name without extension; never used as a path. */
function displayName(fileName: string): string {
  const base = fileName.split(/[\\/]/).pop() ?? '';
  const cleaned = base.replace(/\.blend\d*$/i, '').replace(/[^\p{L}\p{N} ._()-]/gu, '_').trim();
  return cleaned.slice(0, 120) || 'untitled';
}
