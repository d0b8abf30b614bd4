import { hasBlender, type FarmChange, type Frame, type FrameColumns, type FrameCounts, type Job } from '../protocol/index.ts';
import type { Scheduler } from '../scheduler/index.ts';
import type { FrameSummaryRow, JobRow, Store } from '../store/index.ts';
import type { FrameColumnRows } from '../store/store.ts';
import type { ConnectedWorker, CurrentWork } from './connected-worker.ts';
import { emptyCounts, frameColumnsView, frameView, jobView, workerView, type JobTimes, type LiveFrameDetail } from './views.ts';
import { jobRecord } from './job-record.ts';
import { missingFiles, noVideoReason } from '../jobs/index.ts';

const frameKey = (jobId: string, frame: number) => `${jobId}#${frame}`;

/**
 * What observers see of the farm: job, frame and worker views, built from stored rows and
 * the live state (scheduler counts, workers' progress), and announced on every change.
 * Keeps what would otherwise cost a query per event: counts of jobs outside the scheduler,
 * render time totals, and the rows of frames being rendered (progress arrives many times
 * a second per worker, and is announced as a slim `progress` change).
 */
export class ReadModel {
  /** Counts of jobs outside the scheduler (probing or ended), read from the store once. */
  private readonly storedCounts = new Map<string, FrameCounts>();
  /** Render time totals per job, for averages and time estimates. */
  private readonly renderTimes = new Map<string, { totalMs: number; frames: number }>();
  /** Stored rows of frames being rendered. */
  private readonly renderingRows = new Map<string, FrameSummaryRow>();

  constructor(
    private readonly store: Store,
    private readonly scheduler: Scheduler,
    private readonly workers: ReadonlyMap<string, ConnectedWorker>,
    private readonly announce: (change: FarmChange) => void,
  ) {}

  async loadJob(jobId: string, counts?: FrameCounts): Promise<void> {
    this.renderTimes.set(jobId, await this.store.renderTimes(jobId));
    if (counts) this.storedCounts.set(jobId, counts);
  }

  /** The job's counts while the scheduler does not hold it (probing, ended, or about to be queued). */
  keepCounts(jobId: string, counts: FrameCounts | null): void {
    if (counts) this.storedCounts.set(jobId, counts);
    else this.storedCounts.delete(jobId);
  }

  addRenderTime(jobId: string, ms: number): void {
    const times = this.renderTimes.get(jobId) ?? { totalMs: 0, frames: 0 };
    this.renderTimes.set(jobId, { totalMs: times.totalMs + ms, frames: times.frames + 1 });
  }

  forgetJob(jobId: string): void {
    this.storedCounts.delete(jobId);
    this.renderTimes.delete(jobId);
    this.dropRenderingRows(jobId);
  }

  /** The job ended: none of its frames renders any more. */
  dropRenderingRows(jobId: string): void {
    for (const key of this.renderingRows.keys()) if (key.startsWith(`${jobId}#`)) this.renderingRows.delete(key);
  }

  countsOf(jobId: string): FrameCounts {
    return this.scheduler.counts(jobId) ?? this.storedCounts.get(jobId) ?? emptyCounts();
  }

  async job(row: JobRow): Promise<Job> {
    if (!this.scheduler.hasJob(row.id) && !this.storedCounts.has(row.id)) {
      this.storedCounts.set(row.id, (await this.store.frameCounts(row.id)).get(row.id) ?? emptyCounts());
    }
    const counts = this.countsOf(row.id);
    return { ...jobView(row, counts, this.timesOf(row.id, counts)), notice: this.noticeOf(row) };
  }

  /** Why a job that should be rendering is not, when the farm knows: a user should not wait in silence. */
  private noticeOf(row: JobRow): string | null {
    const { scene, overrides } = jobRecord(row);
    if (row.state === 'completed' && !row.video_file && scene) return noVideoReason(scene, overrides);
    const missing = row.state === 'paused' ? missingFiles(jobRecord(row).scene ?? { problems: [] }) : [];
    if (missing.length > 0) {
      const named = missing.slice(0, 3).map((problem) => problem.path ?? '?').join(', ');
      return `held: the scene uses ${missing.length === 1 ? 'a file' : `${missing.length} files`} the project lacks (${named}${missing.length > 3 ? ', …' : ''}); add ${missing.length === 1 ? 'it' : 'them'} (archenland add-files ${row.id} FILE.blend), or resume to render without ${missing.length === 1 ? 'it' : 'them'}`;
    }
    if (!['probing', 'queued', 'rendering'].includes(row.state)) return null;
    const workers = [...this.workers.values()];
    const blender = row.blender_version ?? jobRecord(row).request.blender ?? null;
    if (blender && workers.length > 0 && !workers.some((worker) => hasBlender(worker.blenders, blender))) {
      const have = [...new Set(workers.flatMap((worker) => worker.blenders))].join(', ') || 'none';
      return `waiting: this job renders with Blender ${blender}, and no connected worker has it (they have ${have}; blender_path or [blenders] in a worker's settings.conf)`;
    }
    if (row.state === 'probing' || workers.length === 0) return null;
    const required = jobRecord(row).request.requiredTags ?? [];
    if (required.length > 0 && !workers.some((worker) => required.every((tag) => worker.tags.includes(tag)))) {
      return `waiting: this job needs a worker with the tags ${required.join(', ')}, and no connected worker has them all (tags = [...] in a worker's settings.conf)`;
    }
    const scripts = jobRecord(row).allowScripts;
    if (scripts && !workers.some((worker) => worker.allowScripts)) {
      return 'waiting: this job runs the scene\'s Python scripts, and no connected worker allows them (allow_scripts = true in a worker\'s settings.conf)';
    }
    // Asked at every publish of every job (each finished frame): it stops at the first awake
    // worker that could render the job, which on a working farm is one of the first.
    let ableAsleep = false;
    for (const w of workers) {
      if (!w.enabled || !required.every((tag) => w.tags.includes(tag)) || (scripts && !w.allowScripts) || (blender && !hasBlender(w.blenders, blender))) continue;
      if (!w.asleep) return null;
      ableAsleep = true;
    }
    return ableAsleep
      ? 'waiting: every worker that can render this job is asleep, outside the hours of its schedules; it starts when the first wakes (the workers page says when)'
      : null;
  }

  frame(row: FrameSummaryRow): Frame {
    const tiles = this.scheduler.tilesOf(row.job_id, row.number);
    return frameView(row, tiles ? this.tileProgressOf(row.job_id, row.number, tiles.states) : this.progressOf(row), tiles);
  }

  /** A job's frames as the web UI's columns: the stored columns with the live detail of frames being rendered. */
  frameColumns(job: Job, stored: FrameColumnRows, freshness: Pick<FrameColumns, 'cursor' | 'partial'>): FrameColumns {
    return frameColumnsView(job, stored, freshness, (frame, workerId) => this.liveDetail(job.id, frame, workerId));
  }

  /** Progress and tiles of a frame being rendered, as frame() works them out (the row's other fields play no part). */
  private liveDetail(jobId: string, number: number, workerId: string | null): LiveFrameDetail {
    const row = { job_id: jobId, number, state: 'rendering', worker_id: workerId, attempts: 0, render_ms: null, file: null, sha256: null, error: null, finished_at: null, blender_version: null };
    const { progress, tiles } = this.frame(row);
    return { progress, tiles };
  }

  liveState(workerId: string) {
    const worker = this.workers.get(workerId);
    return { connected: worker !== undefined, current: worker?.current ?? null, asleep: worker?.asleep ?? null, tags: worker?.tags ?? [], device: worker?.device ?? null, blenders: worker?.blenders ?? [] };
  }

  async publishJob(jobId: string): Promise<void> {
    const row = await this.store.getJob(jobId);
    if (row) this.announce({ type: 'job', job: await this.job(row) });
  }

  /** Announces a frame as stored. */
  async publishFrame(jobId: string, frame: number): Promise<void> {
    const cached = this.renderingRows.get(frameKey(jobId, frame));
    const row = cached ?? (await this.store.getFrame(jobId, frame));
    if (row) this.publishFrameRow(row);
  }

  /** Announces a frame the store just moved; nothing when the store refused the move. */
  announceFrame(row: FrameSummaryRow | undefined): void {
    if (row) this.publishFrameRow(row);
  }

  /** Announces a frame as just stored; rows of rendering frames are kept for progress updates. */
  publishFrameRow(row: FrameSummaryRow): void {
    const key = frameKey(row.job_id, row.number);
    if (row.state === 'rendering') this.renderingRows.set(key, row);
    else this.renderingRows.delete(key);
    this.announce({ type: 'frame', frame: this.frame(row) });
  }

  /**
   * Announces a worker's progress on what it renders now, as one slim change instead of its
   * whole view and its frame's: with thousands of workers reporting several times a second,
   * the whole views were most of what observers received. Synchronous, so it cannot race
   * the frame's end: the caller checks the worker still renders it just before.
   */
  announceProgress(workerId: string, current: CurrentWork): void {
    const { jobId, frame, tile, percent } = current;
    const tiles = this.scheduler.tilesOf(jobId, frame);
    const row = this.renderingRows.get(frameKey(jobId, frame));
    // The frame's row is kept from when it started; without it (not stored yet) the worker's own percent is the best guess.
    const frameProgress = tiles ? this.tileProgressOf(jobId, frame, tiles.states) : row ? this.progressOf(row) : percent;
    this.announce({ type: 'progress', workerId, jobId, frame, ...(tile === undefined ? {} : { tile }), percent, frameProgress });
  }

  async publishWorker(workerId: string): Promise<void> {
    const row = this.workers.get(workerId)?.row ?? (await this.store.getWorker(workerId));
    if (row) this.announce({ type: 'worker', worker: workerView(row, this.liveState(workerId)) });
  }

  private timesOf(jobId: string, counts: FrameCounts): JobTimes {
    const times = this.renderTimes.get(jobId);
    if (!times || times.frames === 0) return { averageFrameMs: null, etaMs: null };
    const averageFrameMs = Math.round(times.totalMs / times.frames);
    const left = counts.queued + counts.rendering;
    let busy = 0;
    for (const w of this.workers.values()) if (w.enabled) busy++;
    const etaMs = left > 0 && busy > 0 ? Math.round((averageFrameMs * left) / busy) : left === 0 ? 0 : null;
    return { averageFrameMs, etaMs };
  }

  /** How far a whole frame is, in percent, as its worker last said. */
  private progressOf(row: FrameSummaryRow): number {
    const current = row.worker_id === null ? null : this.workers.get(row.worker_id)?.current;
    return current?.jobId === row.job_id && current.frame === row.number ? current.percent : 0;
  }

  /** A split frame's progress: the mean over its tiles. */
  private tileProgressOf(jobId: string, frame: number, states: Frame['state'][]): number {
    let rendering = 0;
    for (const w of this.workers.values()) {
      if (w.current?.jobId === jobId && w.current.frame === frame) rendering += w.current.percent;
    }
    const done = states.filter((state) => state === 'done').length;
    return Math.min(100, (done * 100 + rendering) / states.length);
  }
}
