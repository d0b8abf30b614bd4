import { rm } from 'node:fs/promises';
import path from 'node:path';
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
 * What workers deliver: rendered frames and tiles (each with Blender's log and the
 * compositor's passes), failures, and frames handed back. The first valid result wins,
 * and only from a worker the frame (or tile) was handed to.
 */
export class Results {
  constructor(
    private readonly state: FarmState,
    private readonly dispatch: Dispatcher,
    private readonly finisher: Finisher,
    private readonly timers: FrameTimers,
  ) {}

  /** The worker uploaded a rendered frame, or one tile of it: the first valid result wins. */
  async frameUploaded(workerId: string, jobId: string, frame: number, result: DeliveredResult, tile?: number): Promise<{ accepted: boolean; reason?: string }> {
    const { store, scheduler, dataDir, views, log } = this.state;
    const job = await store.getJob(jobId);
    // The scheduler knows the frames still to render; only a refusal needs the stored frame.
    const open = job !== undefined && scheduler.isOpen(jobId, frame);
    const row = open ? null : job && (await store.getFrame(jobId, frame));
    if (!job || row === undefined) {
      await discardResult(result);
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
      await discardResult(result);
      return { accepted: false, reason: `${tile === undefined ? `frame ${frame}` : `tile ${tile} of frame ${frame}`} was not assigned to this worker` };
    }
    if (refusal) {
      await discardResult(result);
      return { accepted: false, reason: refusal };
    }
    const extension = job.file_extension ?? 'png';
    const file = tile === undefined ? dataDir.frameFile(jobId, frame, extension) : dataDir.tileFile(jobId, frame, tile, extension);
    await commitFile(result.image.tempPath, file);
    const outcome = scheduler.frameDone(jobId, frame, workerId, tile);
    if (outcome.kind !== 'accepted') {
      await discardResult({ ...result, image: undefined });
      return { accepted: false, reason: 'already done' };
    }
    for (const other of outcome.cancel) this.state.workers.get(other.workerId)?.link.send({ type: 'cancel', jobId, frame, tile });
    const worker = this.state.workers.get(workerId);
    if (isWorkOn(worker?.current, jobId, frame, tile)) worker!.current = null;
    const ms = Math.round(result.renderMs);
    const workerRow = await store.recordRenderedFrame(workerId, ms);
    if (workerRow && worker?.row.id === workerRow.id) worker.row = workerRow;
    if (tile === undefined) {
      await keepPasses(dataDir.framePassesDir(jobId, frame), result.passes);
      const logged = result.log ? { log: result.log } : {};
      await this.finisher.frameDone(jobId, frame, { worker_id: workerId, render_ms: ms, file, sha256: result.image.sha256, blender_version: result.blenderVersion, ...logged });
      await this.finisher.frameSettled(jobId, outcome.jobFinished);
    } else {
      // Scenes with File Output nodes are never split (the probe's tile blockers): a tile has no passes.
      await discardResult({ ...result, image: undefined });
      if (result.log) await this.appendTileLog(workerId, jobId, frame, tile, result.log);
      if (outcome.stitch) await this.finisher.stitch(jobId, frame);
      else await views.publishFrame(jobId, frame);
    }
    await views.publishWorker(workerId);
    return { accepted: true };
  }

  async frameFailed(workerId: string, jobId: string, frame: number, error: string, log: string, tile?: number): Promise<void> {
    const { scheduler, views, store } = this.state;
    const outcome = scheduler.frameFailed(jobId, frame, workerId, tile, error);
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
    await this.giveUpIfHopeless(jobId);
    this.dispatch.pump();
  }

  /** After a failure or a worker leaving: a job no worker can finish fails now instead of waiting for ever. */
  async giveUpIfHopeless(jobId: string): Promise<void> {
    const reason = this.state.scheduler.hopelessReason(jobId, this.state.workers.keys());
    if (reason) await this.finisher.giveUp(jobId, reason);
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

  /** A split frame's log holds each tile's output in turn, with the worker that rendered it. */
  private async appendTileLog(workerId: string, jobId: string, frame: number, tile: number, log: string): Promise<void> {
    const row = await this.state.store.getFrame(jobId, frame);
    if (!row) return;
    const name = this.state.workers.get(workerId)?.row.name ?? workerId;
    const combined = `${row.log ?? ''}--- tile ${tile + 1} (worker ${name}) ---\n${log}\n`;
    await this.state.store.setTileLogs(jobId, frame, combined.slice(-MAX_FRAME_LOG_CHARS));
  }
}

/** A rendered frame or tile as a worker delivered it, checked, its files not yet in place. */
export interface DeliveredResult {
  image: ReceivedFile;
  renderMs: number;
  /** Blender's output for the frame. */
  log: string;
  /** The version of the Blender that rendered it, as the worker said. */
  blenderVersion: string | null;
  /** Files the compositor's File Output nodes wrote, by name (src/protocol/results.ts). */
  passes: Array<{ name: string; file: ReceivedFile }>;
}

/** Drops what a refused result brought; `image: undefined` when the image was already moved into place. */
async function discardResult(result: { image?: ReceivedFile; passes: DeliveredResult['passes'] }): Promise<void> {
  const files = [...(result.image ? [result.image] : []), ...result.passes.map((pass) => pass.file)];
  await Promise.all(files.map((file) => discardFile(file.tempPath)));
}

/** Moves a frame's passes into its passes folder, replacing any earlier ones. */
async function keepPasses(dir: string, passes: DeliveredResult['passes']): Promise<void> {
  // Most frames have none: no file-system call for them (a busy farm takes hundreds a second).
  if (passes.length === 0) return;
  await rm(dir, { recursive: true, force: true });
  for (const pass of passes) await commitFile(pass.file.tempPath, path.join(dir, ...pass.name.split('/')));
}
