import { commitFile, discardFile, type ReceivedFile } from '../store/index.ts';
import { isWorkOn } from './connected-worker.ts';
import type { Dispatcher } from './dispatch.ts';
import { FarmError } from './errors.ts';
import type { Finisher } from './finishing.ts';
import type { FarmState } from './state.ts';
import type { FrameTimers } from './timeouts.ts';

/** A split frame's log holds every tile's output; this keeps it bounded. */
const MAX_FRAME_LOG_CHARS = 256 * 1024;

/**
 * What workers deliver: rendered frames and tiles, failures, frames handed back, and
 * Blender's logs. The first valid result wins, and only from a worker the frame (or
 * tile) was handed to.
 */
export class Results {
  constructor(
    private readonly state: FarmState,
    private readonly dispatch: Dispatcher,
    private readonly finisher: Finisher,
    private readonly timers: FrameTimers,
  ) {}

  /** The worker uploaded a rendered frame, or one tile of it: the first valid result wins. */
  async frameUploaded(
    workerId: string,
    jobId: string,
    frame: number,
    upload: ReceivedFile,
    renderMs: number,
    tile?: number,
  ): Promise<{ accepted: boolean; reason?: string }> {
    const { store, scheduler, dataDir, views, earlyLogs, log } = this.state;
    const job = await store.getJob(jobId);
    // The scheduler knows the frames still to render; only a refusal needs the stored frame.
    const open = job !== undefined && scheduler.isOpen(jobId, frame);
    const row = open ? null : job && (await store.getFrame(jobId, frame));
    if (!job || row === undefined) {
      await discardFile(upload.tempPath);
      throw new FarmError('FRAME_NOT_FOUND', `job ${jobId} has no frame ${frame}`);
    }
    const tiles = row ? null : scheduler.tilesOf(jobId, frame);
    const refusal =
      row?.state === 'done' ? 'frame already done'
      : row ? (scheduler.hasJob(jobId) ? `frame ${frame} is ${row.state}` : `job is ${job.state}`)
      : tile === undefined ? (tiles ? `frame ${frame} is split into tiles` : null)
      : tiles?.states[tile] === undefined ? `frame ${frame} is not split into that tile`
      : tiles.states[tile] === 'done' ? 'tile already done'
      : null;
    // Only the worker (or workers, at the tail) it was handed to may deliver it.
    const unassigned = !refusal && !scheduler.wasAssigned(jobId, frame, workerId, tile);
    if (unassigned) {
      log.warn({ workerId, jobId, frame, tile }, 'result refused: not assigned to this worker');
      await discardFile(upload.tempPath);
      return { accepted: false, reason: `${tile === undefined ? `frame ${frame}` : `tile ${tile} of frame ${frame}`} was not assigned to this worker` };
    }
    if (refusal) {
      if (tile === undefined) earlyLogs.take(jobId, frame, workerId); // a losing copy's log is not the frame's
      await discardFile(upload.tempPath);
      return { accepted: false, reason: refusal };
    }
    const extension = job.file_extension ?? 'png';
    const file = tile === undefined ? dataDir.frameFile(jobId, frame, extension) : dataDir.tileFile(jobId, frame, tile, extension);
    await commitFile(upload.tempPath, file);
    const outcome = scheduler.frameDone(jobId, frame, workerId, tile);
    if (outcome.kind !== 'accepted') {
      if (tile === undefined) earlyLogs.take(jobId, frame, workerId);
      return { accepted: false, reason: 'already done' };
    }
    for (const other of outcome.cancel) this.state.workers.get(other.workerId)?.link.send({ type: 'cancel', jobId, frame, tile });
    const worker = this.state.workers.get(workerId);
    if (isWorkOn(worker?.current, jobId, frame, tile)) worker!.current = null;
    const ms = Math.round(renderMs);
    const workerRow = await store.recordRenderedFrame(workerId, ms);
    if (workerRow && worker?.row.id === workerRow.id) worker.row = workerRow;
    if (tile === undefined) {
      const early = earlyLogs.take(jobId, frame, workerId);
      await this.finisher.frameDone(jobId, frame, { worker_id: workerId, render_ms: ms, file, sha256: upload.sha256, ...(early === undefined ? {} : { log: early }) });
      await this.finisher.frameSettled(jobId, outcome.jobFinished);
    } else if (outcome.stitch) {
      await this.finisher.stitch(jobId, frame);
    } else {
      await views.publishFrame(jobId, frame);
    }
    await views.publishWorker(workerId);
    return { accepted: true };
  }

  async frameFailed(workerId: string, jobId: string, frame: number, error: string, log: string, tile?: number): Promise<void> {
    const { scheduler, views, store } = this.state;
    const outcome = scheduler.frameFailed(jobId, frame, workerId, tile);
    if (outcome.kind === 'unknown') return;
    this.state.log.warn({ workerId, jobId, frame, tile, attempts: outcome.attempts, error }, tile === undefined ? 'frame failed' : 'tile failed');
    const worker = this.state.workers.get(workerId);
    if (isWorkOn(worker?.current, jobId, frame, tile)) worker!.current = null;
    if (outcome.kind === 'failed') {
      for (const other of outcome.cancel) this.state.workers.get(other.workerId)?.link.send({ type: 'cancel', jobId, frame, tile: other.tile?.index });
    }
    const failure = { attempts: outcome.attempts, error: tile === undefined ? error : `tile ${tile + 1}: ${error}`, log };
    views.announceFrame(
      await (outcome.kind === 'failed'
        ? store.failFrame(jobId, frame, { ...failure, worker_id: workerId })
        : store.requeueFrame(jobId, frame, this.state.unfinishedState(jobId, frame), failure)),
    );
    await this.finisher.frameSettled(jobId, outcome.kind === 'failed' && outcome.jobFinished);
    this.dispatch.pump();
  }

  /**
   * The worker could not take the frame (its disk is full): the frame goes back to the
   * front of the queue without counting as a failure, so the job waits rather than fails.
   */
  async frameHandedBack(workerId: string, jobId: string, frame: number, reason: string, tile?: number): Promise<void> {
    if (!this.state.scheduler.handBack(jobId, frame, workerId, tile)) return;
    this.state.log.warn({ workerId, jobId, frame, tile, reason }, 'worker handed a frame back');
    const worker = this.state.workers.get(workerId);
    if (isWorkOn(worker?.current, jobId, frame, tile)) worker!.current = null;
    this.timers.clear(workerId);
    this.state.views.announceFrame(await this.state.store.requeueFrame(jobId, frame, this.state.unfinishedState(jobId, frame)));
    await this.state.views.publishWorker(workerId);
    this.dispatch.pump();
  }

  /** Keeps Blender's output for a frame (each tile's in turn); it arrives beside the upload, in either order. */
  async frameLogReceived(workerId: string, jobId: string, frame: number, log: string, tile?: number): Promise<void> {
    const { store, workers, earlyLogs } = this.state;
    if (tile === undefined) {
      // Workers send the log just before the upload: kept until then, it is written with the frame's result.
      if (isWorkOn(workers.get(workerId)?.current, jobId, frame)) return earlyLogs.keep({ jobId, frame, workerId, log });
      return store.setFrameLog(jobId, frame, log, workerId);
    }
    const row = await store.getFrame(jobId, frame);
    if (!row || (row.worker_id !== null && row.worker_id !== workerId)) return;
    const name = workers.get(workerId)?.row.name ?? workerId;
    const combined = `${row.log ?? ''}--- tile ${tile + 1} (worker ${name}) ---\n${log}\n`;
    await store.setTileLogs(jobId, frame, combined.slice(-MAX_FRAME_LOG_CHARS));
  }
}
