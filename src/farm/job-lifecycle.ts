import { rm } from 'node:fs/promises';
import { compileJob, type RenderRequest } from '../jobs/index.ts';
import { allows, framesOf, isFinished, type JobOptions, type JobPatch, type JobState } from '../protocol/index.ts';
import type { JobRow } from '../store/index.ts';
import { commitFile, type ReceivedFile } from '../store/index.ts';
import type { Dispatcher } from './dispatch.ts';
import { FarmError } from './errors.ts';
import type { Finisher } from './finishing.ts';
import type { Prober } from './probing.ts';
import type { Projects } from './projects.ts';
import type { FarmState } from './state.ts';
import { newId, now } from './state.ts';
import { emptyCounts } from './views.ts';
import { jobRecord, type StoredRequest } from './job-record.ts';

/** The commands people give a job: submit, pause, resume, retry, cancel, delete, edit. */
export class JobLifecycle {
  constructor(
    private readonly state: FarmState,
    private readonly dispatch: Dispatcher,
    private readonly prober: Prober,
    private readonly finisher: Finisher,
    private readonly projects: Projects,
    /** Tells observers the job is gone. */
    private readonly announceRemoved: (jobId: string) => void,
  ) {}

  /** Stores the .blend and a job that waits for its scene to be read; returns its id. */
  async submit(upload: ReceivedFile, options: JobOptions, fileName: string): Promise<string> {
    const { store, dataDir, views, log } = this.state;
    if (options.project) await this.projects.requireComplete(options.project);
    await commitFile(upload.tempPath, dataDir.blend(upload.sha256));
    const request: RenderRequest = {
      frames: options.frames,
      fileFormat: options.fileFormat,
      resolutionPercentage: options.resolutionPercentage,
      samples: options.samples,
      tiles: options.tiles,
      forceTiles: options.forceTiles,
      ...(options.denoising === false ? { denoising: false } : {}),
      order: options.order,
    };
    const row = await store.insertJob({
      id: newId(),
      name: options.name ?? displayName(fileName),
      state: 'probing',
      priority: options.priority,
      allow_scripts: options.allowScripts ? 1 : 0,
      project_id: options.project ?? null,
      blend_sha256: upload.sha256,
      blend_size: upload.size,
      requested_json: JSON.stringify({ ...request, hold: options.hold, maxWorkers: options.maxWorkers, requiredTags: options.requiredTags, blender: options.blender }),
      overrides_json: JSON.stringify({
        engine: null,
        resolutionPercentage: request.resolutionPercentage ?? null,
        samples: request.samples ?? null,
        fileFormat: request.fileFormat ?? null,
        denoising: request.denoising === false ? false : null,
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
      blender_version: null,
    });
    log.info({ jobId: row.id, name: row.name, size: upload.size }, 'job submitted');
    views.keepCounts(row.id, emptyCounts());
    this.prober.add(row.id);
    await views.publishJob(row.id);
    this.prober.requestProbes();
    return row.id;
  }

  async cancel(id: string): Promise<void> {
    const row = await this.state.requireJob(id);
    if (!allows('cancel', row.state as JobState)) throw new FarmError('JOB_STATE_CONFLICT', `job ${id} is already ${row.state}`);
    this.prober.drop(id);
    await this.dispatch.leaveScheduler(id);
    await this.state.setState(row, 'cancelled', { finished_at: now() });
    this.dispatch.releaseJob(id);
    this.dispatch.pump();
  }

  async pause(id: string): Promise<void> {
    const row = await this.state.requireJob(id);
    if (!allows('pause', row.state as JobState)) throw new FarmError('JOB_STATE_CONFLICT', `a ${row.state} job cannot be paused`);
    // Frames already rendering finish; no new ones are handed out.
    this.state.scheduler.setPaused(id, true);
    await this.state.setState(row, 'paused');
  }

  async resume(id: string): Promise<void> {
    const { scheduler, views } = this.state;
    const row = await this.state.requireJob(id);
    if (!allows('resume', row.state as JobState)) throw new FarmError('JOB_STATE_CONFLICT', `job ${id} is ${row.state}, not paused`);
    scheduler.setPaused(id, false);
    const started = scheduler.hasStarted(id);
    await this.state.setState(row, started ? 'rendering' : 'queued', { error: null });
    this.dispatch.pump();
    const counts = views.countsOf(id);
    if (counts.queued + counts.rendering === 0) await this.finisher.finishRendering(id);
  }

  /** The server's disk filled while receiving a frame: pause rather than fail; nothing stored is touched. */
  async storageFull(jobId: string, detail: string): Promise<void> {
    const row = await this.state.store.getJob(jobId);
    if (!row || !['queued', 'rendering'].includes(row.state)) return;
    this.state.log.error({ jobId, detail }, 'disk full: pausing the job');
    this.state.scheduler.setPaused(jobId, true);
    await this.state.setState(row, 'paused', { error: `paused because the server's disk is full (${detail}); free space, then resume` });
  }

  /** Puts a job's failed frames back in the queue, with fresh attempts. */
  async retryFailed(id: string): Promise<void> {
    const { store, views } = this.state;
    const row = await this.state.requireJob(id);
    const counts = views.countsOf(id);
    // A job that gave up (hopeless) may have no failed frame: its unfinished frames start over.
    if (counts.failed === 0 && row.state !== 'failed') throw new FarmError('JOB_STATE_CONFLICT', `job ${id} has no failed frames`);
    if (!allows('retry', row.state as JobState)) {
      throw new FarmError('JOB_STATE_CONFLICT', `a ${row.state} job cannot retry frames`);
    }
    if (row.state === 'failed' && counts.total === 0) {
      // It failed before its frames were made (its preflight, or the scene could not be read): read it again.
      await this.state.setState(row, 'probing', { error: null, finished_at: null });
      this.prober.add(id);
      this.prober.requestProbes();
      return;
    }
    await this.dispatch.leaveScheduler(id);
    await store.requeueFailedFrames(id);
    if (row.state === 'failed') await this.state.setState(row, 'queued', { error: null, finished_at: null });
    await this.dispatch.enqueue(await this.state.requireJob(id), row.state === 'paused');
    this.dispatch.pump();
    await views.publishJob(id);
  }

  /**
   * Files added to a held job: it takes `projectId` (a project holding them) in place of
   * its own, keeps its .blend and settings, and its scene is read again, so it is queued,
   * or held again if files are still missing. Only before its first frame is handed out.
   */
  async replaceProject(id: string, projectId: string): Promise<void> {
    const { store, scheduler, log } = this.state;
    const row = await this.state.requireJob(id);
    if (!allows('replaceProject', row.state as JobState) || scheduler.hasStarted(id)) {
      throw new FarmError('JOB_STATE_CONFLICT', `files can be added only to a job held before its first frame (job ${id} is ${row.state}${scheduler.hasStarted(id) ? ' and has started' : ''})`);
    }
    await this.projects.requireComplete(projectId);
    await this.dispatch.leaveScheduler(id);
    await store.deleteFrames(id);
    this.state.views.keepCounts(id, emptyCounts());
    const unread = { scene_json: null, frame_start: null, frame_end: null, frame_step: null, fps: null, file_extension: null, blender_version: null };
    await this.state.setState(row, 'probing', { ...unread, project_id: projectId, error: null });
    log.info({ jobId: id, project: projectId, previous: row.project_id }, 'files added to a held job: reading its scene again');
    this.prober.add(id);
    this.prober.requestProbes();
    if (row.project_id && row.project_id !== projectId) this.state.background(this.projects.collectGarbage());
  }

  /** Removes a job with its frames and files; a running job is cancelled first. */
  async delete(id: string): Promise<void> {
    const { store, dataDir, views, log } = this.state;
    const row = await this.state.requireJob(id);
    if (!isFinished(row.state as JobState)) await this.cancel(id);
    views.forgetJob(id);
    this.dispatch.forget(id);
    await store.deleteJob(id);
    await rm(dataDir.jobDir(id), { recursive: true, force: true });
    if ((await store.jobsUsingBlend(row.blend_sha256)) === 0) await rm(dataDir.blend(row.blend_sha256), { force: true });
    if (row.project_id) this.state.background(this.projects.collectGarbage());
    log.info({ jobId: id }, 'job deleted');
    this.announceRemoved(id);
  }

  /** Renames or re-prioritises a job; render settings change only before any frame is out. */
  async patch(id: string, patch: JobPatch): Promise<void> {
    const row = await this.state.requireJob(id);
    const changesRender = ['frames', 'fileFormat', 'resolutionPercentage', 'samples', 'tiles', 'forceTiles'].some((k) => k in patch);
    if (changesRender) await this.changeRenderSettings(row, patch);
    if (patch.maxWorkers !== undefined) await this.changeMaxWorkers(id, patch.maxWorkers ?? undefined);
    if (patch.name !== undefined || patch.priority !== undefined) {
      await this.state.store.updateJob(id, { name: patch.name ?? row.name, priority: patch.priority ?? row.priority });
      if (patch.priority !== undefined) this.state.scheduler.setPriority(id, patch.priority);
    }
    await this.state.views.publishJob(id);
    this.dispatch.pump();
  }

  /** Any time: renders under way go on, the limit holds for the next frames handed out. */
  private async changeMaxWorkers(id: string, maxWorkers: number | undefined): Promise<void> {
    const { request } = jobRecord(await this.state.requireJob(id));
    await this.state.store.updateJob(id, { requested_json: JSON.stringify({ ...request, maxWorkers }) });
    this.state.scheduler.setMaxWorkers(id, maxWorkers);
  }

  private async changeRenderSettings(row: JobRow, patch: JobPatch): Promise<void> {
    const { store, scheduler } = this.state;
    const editable = allows('editRenderSettings', row.state as JobState) && !scheduler.hasStarted(row.id);
    const { scene, request: previous } = jobRecord(row);
    if (!editable || !scene) {
      throw new FarmError('JOB_STATE_CONFLICT', `render settings can only change before the job's first frame is handed out (job is ${row.state})`);
    }
    const { maxWorkers: _limit, ...renderPatch } = patch; // not a render setting: changeMaxWorkers keeps it
    const request: StoredRequest = { ...previous, ...renderPatch };
    let compiled;
    try {
      compiled = compileJob(scene, request);
    } catch (error) {
      throw new FarmError('INVALID_JOB_SETTINGS', (error as Error).message);
    }
    scheduler.removeJob(row.id);
    await store.deleteFrames(row.id);
    await store.insertFrames(row.id, framesOf(compiled.range));
    await store.updateJob(row.id, {
      requested_json: JSON.stringify({ ...request, hold: previous.hold }),
      overrides_json: JSON.stringify(compiled.overrides),
      frame_start: compiled.range.start,
      frame_end: compiled.range.end,
      frame_step: compiled.range.step,
      file_extension: compiled.fileExtension,
    });
    await this.dispatch.enqueue(await this.state.requireJob(row.id), row.state === 'paused');
  }
}

/** A name fit to show: the upload's base name without extension; never used as a path. */
function displayName(fileName: string): string {
  const base = fileName.split(/[\\/]/).pop() ?? '';
  const cleaned = base.replace(/\.blend\d*$/i, '').replace(/[^\p{L}\p{N} ._()-]/gu, '_').trim();
  return cleaned.slice(0, 120) || 'untitled';
}
