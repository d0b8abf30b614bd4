import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FrameColumns, FrameLog, FramePass, Job, JobDetail, Worker } from '../protocol/index.ts';
import { FarmError } from './errors.ts';
import type { FarmState } from './state.ts';
import { workerView } from './views.ts';

/** What can be read about jobs, frames and workers; nothing here changes the farm. */
export class Queries {
  constructor(private readonly state: FarmState) {}

  async job(id: string): Promise<Job> {
    return this.state.views.job(await this.state.requireJob(id));
  }

  async jobDetail(id: string): Promise<JobDetail> {
    const job = await this.job(id);
    const frames = await this.state.store.listFrames(id);
    return { ...job, frameList: frames.map((f) => this.state.views.frame(f)) };
  }

  /**
   * The job's frames in columns, for the web UI: all of them, or only those numbered in
   * `only`. `cursor` is where the frame change log stood before the frames were read.
   */
  async frameColumns(id: string, cursor: string, only?: number[]): Promise<FrameColumns> {
    const job = await this.job(id);
    const stored = await this.state.store.listFrameColumns(id, only);
    return this.state.views.frameColumns(job, stored, { cursor, partial: only !== undefined });
  }

  async jobs(): Promise<Job[]> {
    return Promise.all((await this.state.store.listJobs()).map((row) => this.state.views.job(row)));
  }

  /** The file a frame was saved to, for download. */
  async frameFile(jobId: string, frame: number): Promise<string> {
    const row = await this.state.store.getFrame(jobId, frame);
    if (!row) throw new FarmError('FRAME_NOT_FOUND', `job ${jobId} has no frame ${frame}`);
    if (row.state !== 'done' || !row.file) throw new FarmError('FRAME_NOT_RENDERED', `frame ${frame} is not rendered yet`);
    return row.file;
  }

  async frameLog(jobId: string, frame: number): Promise<FrameLog> {
    const row = await this.state.store.getFrame(jobId, frame);
    if (!row) throw new FarmError('FRAME_NOT_FOUND', `job ${jobId} has no frame ${frame}`);
    return { number: frame, error: row.error, log: row.log ?? '', blenderVersion: row.blender_version };
  }

  /** The compositor passes kept with a rendered frame, by name; none for a frame not rendered. */
  async framePasses(jobId: string, frame: number): Promise<FramePass[]> {
    await this.frameFile(jobId, frame);
    const dir = this.state.dataDir.framePassesDir(jobId, frame);
    const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
    const passes: FramePass[] = [];
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const file = path.join(entry.parentPath, entry.name);
      passes.push({ name: path.relative(dir, file).split(path.sep).join('/'), size: (await stat(file)).size });
    }
    return passes.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** One pass's file; the name is checked against the listed ones, never joined blindly. */
  async passFile(jobId: string, frame: number, name: string): Promise<string> {
    const known = await this.framePasses(jobId, frame);
    if (!known.some((pass) => pass.name === name)) throw new FarmError('PASS_NOT_FOUND', `frame ${frame} has no pass named "${name}"`);
    return path.join(this.state.dataDir.framePassesDir(jobId, frame), ...name.split('/'));
  }

  async videoFile(jobId: string): Promise<string> {
    const row = await this.state.requireJob(jobId);
    if (!row.video_file) throw new FarmError('VIDEO_NOT_READY', `job ${jobId} has no video yet`);
    return row.video_file;
  }

  async doneFrames(jobId: string): Promise<Array<{ number: number; file: string }>> {
    await this.state.requireJob(jobId);
    const frames = await this.state.store.listFrames(jobId, 'done');
    return frames.filter((f) => f.file).map((f) => ({ number: f.number, file: f.file! }));
  }

  /** The tile file of a split frame, while the frame waits for its other tiles (for previews). */
  async tileFile(jobId: string, frame: number, tile: number): Promise<string> {
    const job = await this.state.requireJob(jobId);
    if (this.state.scheduler.tilesOf(jobId, frame)?.states[tile] !== 'done') {
      throw new FarmError('TILE_NOT_FOUND', `tile ${tile} of frame ${frame} is not waiting to be stitched`);
    }
    return this.state.dataDir.tileFile(jobId, frame, tile, job.file_extension ?? 'png');
  }

  async workers(): Promise<Worker[]> {
    return (await this.state.store.listWorkers()).map((row) => workerView(row, this.state.views.liveState(row.id)));
  }
}
