import { rm } from 'node:fs/promises';
import { compileJob, type JobTilingPlan } from '../jobs/index.ts';
import type { RenderAssignment } from '../protocol/index.ts';
import type { Assignment } from '../scheduler/index.ts';
import type { JobRow } from '../store/index.ts';
import type { FarmState } from './state.ts';
import { now } from './state.ts';
import type { FrameTimers } from './timeouts.ts';
import { emptyCounts } from './views.ts';
import { jobRecord } from './job-record.ts';
import { projectRefOf } from './projects.ts';

interface RenderInfo {
  message: Omit<RenderAssignment, 'frame' | 'tile'>;
  /** Whether a frame was handed out since the job was (re)queued. */
  started: boolean;
  tiling: JobTilingPlan;
}

/**
 * Puts jobs into the scheduler and takes them out, and hands the scheduler's assignments
 * to the workers: the `render` message goes out before any query, so a worker starts
 * while the store catches up.
 */
export class Dispatcher {
  /** What a `render` message needs, per queued job, so handing out a frame waits on no query. */
  private readonly renderInfo = new Map<string, RenderInfo>();

  constructor(
    private readonly state: FarmState,
    private readonly timers: FrameTimers,
    /** A job was queued with no frame left to render: its rendering ends now. */
    private readonly onNothingLeft: (jobId: string) => Promise<void>,
  ) {}

  /** How a queued job's frames may be split; undefined for a job outside the scheduler. */
  tilingOf(jobId: string): { tiling: JobTilingPlan; fileExtension: string } | undefined {
    const info = this.renderInfo.get(jobId);
    return info && { tiling: info.tiling, fileExtension: info.message.fileExtension };
  }

  /** Puts a job's queued frames into the scheduler, with the counts of its finished ones. */
  async enqueue(row: JobRow, paused: boolean, fresh?: number[]): Promise<void> {
    const { store, views, scheduler, dataDir } = this.state;
    // A job just compiled passes its frames; otherwise they are read back from the store.
    const open = fresh ? fresh.map((number) => ({ number })) : await store.listFrames(row.id, 'queued');
    const counts = fresh ? emptyCounts() : ((await store.frameCounts(row.id)).get(row.id) ?? emptyCounts());
    views.keepCounts(row.id, null);
    const tiling = tilingOf(row);
    // Tiles of an earlier run of this job are stale: its frames start over whole or split anew.
    await rm(dataDir.tilesDir(row.id), { recursive: true, force: true });
    this.renderInfo.set(row.id, {
      started: false,
      tiling,
      message: {
        type: 'render',
        jobId: row.id,
        blend: { sha256: row.blend_sha256, size: row.blend_size },
        allowScripts: jobRecord(row).allowScripts,
        overrides: jobRecord(row).overrides,
        fileExtension: row.file_extension ?? 'png',
        project: await projectRefOf(this.state, row.project_id),
        blender: row.blender_version,
      },
    });
    scheduler.addJob({
      jobId: row.id,
      priority: row.priority,
      seq: row.seq,
      frames: open.map((f) => f.number),
      done: counts.done,
      failed: counts.failed,
      paused,
      tiling,
      needsScripts: jobRecord(row).allowScripts,
      order: jobRecord(row).request.order ?? 'interleaved',
      maxWorkers: jobRecord(row).request.maxWorkers,
      requiredTags: jobRecord(row).request.requiredTags,
      blender: row.blender_version,
    });
    if (open.length === 0 && !paused && ['queued', 'rendering'].includes(row.state)) {
      this.state.background(this.onNothingLeft(row.id));
    }
  }

  /** Takes a job out of the scheduler, keeping its last counts for the views. */
  async leaveScheduler(jobId: string): Promise<void> {
    const { scheduler, views, store } = this.state;
    const counts = scheduler.counts(jobId);
    scheduler.removeJob(jobId);
    // Frames that were rendering count as queued once nobody renders them any more.
    views.keepCounts(
      jobId,
      counts
        ? { ...counts, queued: counts.queued + counts.rendering, rendering: 0 }
        : ((await store.frameCounts(jobId)).get(jobId) ?? emptyCounts()),
    );
  }

  /** The job is deleted: nothing of it is handed out again. */
  forget(jobId: string): void {
    this.renderInfo.delete(jobId);
  }

  /** Hands pending frames to idle workers. */
  pump(): void {
    for (const assignment of this.state.scheduler.dispatch()) this.state.background(this.assign(assignment));
  }

  /** Tells every worker the job is over so it can close its Blender session. */
  releaseJob(jobId: string): void {
    this.state.views.dropRenderingRows(jobId);
    for (const worker of this.state.workers.values()) {
      if (worker.current?.jobId === jobId) worker.current = null;
      worker.link.send({ type: 'cancel', jobId });
    }
  }

  private async assign({ workerId, jobId, frame, tile }: Assignment): Promise<void> {
    const { store, views } = this.state;
    const worker = this.state.workers.get(workerId);
    const info = this.renderInfo.get(jobId);
    if (!worker || !info) return;
    worker.current = tile ? { jobId, frame, tile: tile.index, tiles: tile.cols * tile.rows, percent: 0 } : { jobId, frame, percent: 0 };
    this.timers.start(workerId, jobId, frame, tile);
    // Sent before any query: the worker starts while the store catches up.
    worker.link.send(tile ? { ...info.message, frame, tile } : { ...info.message, frame });
    const frameRow = await store.startFrame(jobId, frame, tile ? null : workerId);
    if (!info.started) {
      info.started = true;
      const row = await store.getJob(jobId);
      if (row?.state === 'queued') await this.state.setState(row, 'rendering', { started_at: row.started_at ?? now() });
    }
    if (frameRow) views.publishFrameRow(frameRow);
    await views.publishWorker(workerId);
  }
}

/** How the job's frames may be split, from its probed scene and request (compiled again: pure and cheap). */
function tilingOf(row: JobRow): JobTilingPlan {
  const { scene, request } = jobRecord(row);
  if (!scene) return { mode: 'off' };
  try {
    return compileJob(scene, request).tiling;
  } catch {
    return { mode: 'off' };
  }
}
