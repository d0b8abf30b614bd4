import { randomBytes } from 'node:crypto';
import type { FarmChange, JobState } from '../protocol/index.ts';
import { Scheduler, type QueuePolicy } from '../scheduler/index.ts';
import type { JobRow, Store } from '../store/index.ts';
import type { Logger } from '../util/log.ts';
import type { DataDir } from '../store/index.ts';
import type { ConnectedWorker } from './connected-worker.ts';
import { FarmError } from './errors.ts';
import { FileHolders } from './file-holders.ts';
import { ReadModel } from './read-model.ts';
import { VideoStreams } from './video-streams.ts';

export interface FarmOptions {
  ffmpegPath: string;
  /** A frame is tried this many more times after its first failure. */
  frameRetries: number;
  /** A frame rendering longer than this is stopped and counted as failed; 0 = no limit. */
  frameTimeoutMs: number;
  /** Idle workers copy the slowest frames at a job's tail (first result wins). */
  duplicateTail?: boolean;
  /** How jobs of the same priority share idle workers (setting queue_policy). */
  queuePolicy?: QueuePolicy;
  /** At most this many jobs' videos are encoded while they render (setting video_streams); default 2. */
  videoStreams?: number;
  /** Progress reports a second all workers together may send (setting progress_reports_per_second); default 1,000. */
  progressReportsPerSecond?: number;
}

/** A job's video stream lives while the job is in one of these states; any other ends it. */
const STREAMING_STATES: ReadonlySet<JobState> = new Set(['queued', 'rendering', 'encoding']);

export const newId = () => randomBytes(8).toString('hex');
export const now = () => new Date().toISOString();

/**
 * What every part of the farm shares: the store and the data folder, the scheduler, the
 * connected workers, the read model that announces changes, and the work under way. The
 * parts (job-lifecycle, dispatch, results, …) each hold one and keep nothing else alike.
 */
export class FarmState {
  readonly scheduler: Scheduler;
  readonly workers = new Map<string, ConnectedWorker>();
  readonly views: ReadModel;
  /** Which worker holds which file, for peer transfer. */
  readonly holders = new FileHolders();
  /** Jobs' videos encoded while they render; any part that changes a job's state reaches it through setState. */
  readonly videoStreams: VideoStreams;
  private readonly pending = new Set<Promise<unknown>>();
  /** Set once the farm stops: events from the edges change nothing any more. */
  stopping = false;

  constructor(
    readonly store: Store,
    readonly dataDir: DataDir,
    readonly options: FarmOptions,
    readonly log: Logger,
    announce: (change: FarmChange) => void,
  ) {
    this.scheduler = new Scheduler({
      maxAttempts: options.frameRetries + 1,
      blockAfterFailures: 3,
      duplicateTail: options.duplicateTail ?? true,
      queuePolicy: options.queuePolicy ?? 'fifo',
    });
    this.views = new ReadModel(store, this.scheduler, this.workers, announce);
    this.videoStreams = new VideoStreams(this, options.videoStreams ?? 2);
  }

  /**
   * Runs work the caller does not wait for (edges, timers, fan-out), logging its errors
   * and keeping it counted so `settle` can let it finish before the store closes.
   */
  background(work: Promise<unknown>): void {
    this.pending.add(work);
    work
      .catch((error) => this.log.error({ err: error }, 'background farm task failed'))
      .finally(() => this.pending.delete(work));
  }

  /** Resolves once no background work is left. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  async requireJob(id: string): Promise<JobRow> {
    const row = await this.store.getJob(id);
    if (!row) throw new FarmError('JOB_NOT_FOUND', `no job with id ${id}`);
    return row;
  }

  /** Moves a job to a new state, if its life cycle allows (checked in the database), and announces it. */
  async setState(row: JobRow, state: JobState, patch: Partial<JobRow> = {}): Promise<void> {
    const moved = await this.store.moveJob(row.id, state, patch);
    if (!moved) {
      const current = await this.store.getJob(row.id);
      if (current === undefined) return; // deleted meanwhile
      throw new Error(`a job cannot go from ${current.state} to ${state}`);
    }
    if (!STREAMING_STATES.has(state)) this.videoStreams.drop(row.id, `the job is ${state}`);
    await this.views.publishJob(row.id);
  }

  async failJob(row: JobRow, error: string): Promise<void> {
    this.log.warn({ jobId: row.id, error }, 'job failed');
    await this.setState(row, 'failed', { error, finished_at: now() });
  }

  /** The stored state of a frame not finished: rendering while it is split into tiles, else queued. */
  unfinishedState(jobId: string, frame: number): 'queued' | 'rendering' {
    return this.scheduler.tilesOf(jobId, frame) ? 'rendering' : 'queued';
  }
}
