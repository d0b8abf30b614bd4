import { EventEmitter } from 'node:events';
import type {
  Asleep,
  FarmChange,
  FrameColumns,
  FrameLog,
  FramePass,
  Job,
  JobDetail,
  JobOptions,
  JobPatch,
  ProjectCreated,
  ProjectManifest,
  SceneInfo,
  FileSources,
  TagScheduleInput,
  TagScheduleView,
  Worker,
  WorkerFiles,
  WorkerHello,
} from '../protocol/index.ts';
import type { Store } from '../store/index.ts';
import type { Logger } from '../util/log.ts';
import type { DataDir } from '../store/index.ts';
import type { ReceivedFile } from '../store/index.ts';
import type { WorkerLink } from './connected-worker.ts';
import { Dispatcher } from './dispatch.ts';
import { Finisher } from './finishing.ts';
import { JobLifecycle } from './job-lifecycle.ts';
import { Prober } from './probing.ts';
import { Queries } from './queries.ts';
import { Projects } from './projects.ts';
import { Results, type DeliveredResult } from './results.ts';
import { FarmState, type FarmOptions } from './state.ts';
import { FrameTimers } from './timeouts.ts';
import { emptyCounts } from './views.ts';
import { WorkerRegistry } from './worker-registry.ts';
import { TagSchedules } from './tag-schedules.ts';

export type { WorkerLink } from './connected-worker.ts';
export type { DeliveredResult } from './results.ts';
export type { FarmOptions } from './state.ts';
export { FarmError } from './errors.ts';
export { FrameChangeLog } from './frame-change-log.ts';

/**
 * The farm's application service, transport-free: the HTTP and WebSocket edges call it and
 * pass it `WorkerLink`s; it emits every change as an `event`. Each concern is a part of
 * its own (job-lifecycle, worker-registry, probing, dispatch, timeouts, results,
 * finishing, queries) over one shared FarmState; this class wires them and is the whole
 * public surface.
 */
export class Farm extends EventEmitter<{ event: [FarmChange] }> {
  private readonly state: FarmState;
  private readonly timers: FrameTimers;
  private readonly dispatch: Dispatcher;
  private readonly finisher: Finisher;
  private readonly results: Results;
  private readonly prober: Prober;
  private readonly projects: Projects;
  private readonly registry: WorkerRegistry;
  private readonly tagSchedules: TagSchedules;
  private readonly lifecycle: JobLifecycle;
  private readonly queries: Queries;

  constructor(store: Store, dataDir: DataDir, options: FarmOptions, log: Logger) {
    super();
    const state = (this.state = new FarmState(store, dataDir, options, log, (change) => this.emit('event', change)));
    this.timers = new FrameTimers(state, (workerId, jobId, frame, error, tile) =>
      state.background(this.results.frameFailed(workerId, jobId, frame, error, '', tile)),
    );
    this.dispatch = new Dispatcher(state, this.timers, (jobId) => this.finisher.finishRendering(jobId));
    this.finisher = new Finisher(state, this.dispatch);
    this.results = new Results(state, this.dispatch, this.finisher, this.timers);
    this.prober = new Prober(state, this.dispatch);
    this.projects = new Projects(state);
    this.tagSchedules = new TagSchedules(state);
    this.registry = new WorkerRegistry(state, this.dispatch, this.prober, this.timers, this.tagSchedules);
    this.lifecycle = new JobLifecycle(state, this.dispatch, this.prober, this.finisher, this.projects, (jobId) =>
      this.emit('event', { type: 'job_removed', jobId }),
    );
    this.queries = new Queries(state);
  }

  /** Rebuilds the in-memory queue from the store after a (re)start. */
  async restore(): Promise<void> {
    const { store, views, log } = this.state;
    await this.tagSchedules.load();
    const requeued = await store.requeueRenderingFrames();
    const counts = await store.frameCounts();
    for (const job of await store.listJobs()) {
      const queued = ['queued', 'rendering', 'paused'].includes(job.state);
      await views.loadJob(job.id, queued ? undefined : (counts.get(job.id) ?? emptyCounts()));
      if (job.state === 'probing') this.prober.add(job.id);
      if (job.state === 'encoding') this.background(this.finisher.encode(job.id));
      if (queued) await this.dispatch.enqueue(job, job.state === 'paused');
    }
    log.info({ requeued }, 'farm state restored');
    this.background(this.projects.collectGarbage());
  }

  /** Runs work the caller does not wait for, logging its errors; `stop` lets it finish. */
  background(work: Promise<unknown>): void {
    this.state.background(work);
  }

  /** Stops taking part in events and waits for work under way; then the store may close. */
  async stop(): Promise<void> {
    this.state.stopping = true;
    this.timers.clearAll();
    await this.state.videoStreams.stopAll();
    await this.state.settle();
  }

  // ---- projects: the files jobs' .blends use ---------------------------------------------

  createProject(manifest: ProjectManifest): Promise<ProjectCreated> {
    return this.projects.create(manifest);
  }

  storeProjectFile(sha256: string, upload: ReceivedFile): Promise<void> {
    return this.projects.storeFile(sha256, upload);
  }

  project(id: string): Promise<ProjectManifest> {
    return this.projects.get(id).then(({ root, main, files }) => ({ root, main, files }));
  }

  projectFile(sha256: string): string {
    return this.projects.file(sha256);
  }

  collectGarbage(): Promise<{ files: number; bytes: number }> {
    return this.projects.collectGarbage();
  }

  // ---- jobs: commands ----------------------------------------------------------------

  async submitJob(upload: ReceivedFile, options: JobOptions, fileName: string): Promise<Job> {
    return this.getJob(await this.lifecycle.submit(upload, options, fileName));
  }

  async cancelJob(id: string): Promise<Job> {
    await this.lifecycle.cancel(id);
    return this.getJob(id);
  }

  async pauseJob(id: string): Promise<Job> {
    await this.lifecycle.pause(id);
    return this.getJob(id);
  }

  async resumeJob(id: string): Promise<Job> {
    await this.lifecycle.resume(id);
    return this.getJob(id);
  }

  async retryFailed(id: string): Promise<Job> {
    await this.lifecycle.retryFailed(id);
    return this.getJob(id);
  }

  /** Files added to a held job: it takes the project holding them, and its scene is read again. */
  async replaceJobProject(id: string, projectId: string): Promise<Job> {
    await this.lifecycle.replaceProject(id, projectId);
    return this.getJob(id);
  }

  async patchJob(id: string, patch: JobPatch): Promise<Job> {
    await this.lifecycle.patch(id, patch);
    return this.getJob(id);
  }

  deleteJob(id: string): Promise<void> {
    return this.lifecycle.delete(id);
  }

  storageFull(jobId: string, detail: string): Promise<void> {
    return this.lifecycle.storageFull(jobId, detail);
  }

  // ---- jobs, frames and workers: reads --------------------------------------------------

  getJob(id: string): Promise<Job> {
    return this.queries.job(id);
  }

  getJobDetail(id: string): Promise<JobDetail> {
    return this.queries.jobDetail(id);
  }

  frameColumns(id: string, cursor: string, only?: number[]): Promise<FrameColumns> {
    return this.queries.frameColumns(id, cursor, only);
  }

  listJobs(): Promise<Job[]> {
    return this.queries.jobs();
  }

  frameFile(jobId: string, frame: number): Promise<string> {
    return this.queries.frameFile(jobId, frame);
  }

  framePasses(jobId: string, frame: number): Promise<FramePass[]> {
    return this.queries.framePasses(jobId, frame);
  }

  passFile(jobId: string, frame: number, name: string): Promise<string> {
    return this.queries.passFile(jobId, frame, name);
  }

  frameLog(jobId: string, frame: number): Promise<FrameLog> {
    return this.queries.frameLog(jobId, frame);
  }

  videoFile(jobId: string): Promise<string> {
    return this.queries.videoFile(jobId);
  }

  doneFrames(jobId: string): Promise<Array<{ number: number; file: string }>> {
    return this.queries.doneFrames(jobId);
  }

  tileFile(jobId: string, frame: number, tile: number): Promise<string> {
    return this.queries.tileFile(jobId, frame, tile);
  }

  listWorkers(): Promise<Worker[]> {
    return this.queries.workers();
  }

  /** Videos made since the server started, streamed while rendering or encoded at the end, and streams running now. */
  videoStats(): { streamed: number; batch: number; streaming: number } {
    const streams = this.state.videoStreams;
    return { streamed: streams.made.stream, batch: streams.made.batch, streaming: streams.active };
  }

  /** A job's video stream now: frames fed to ffmpeg and its process id; undefined when it has none. */
  videoStream(jobId: string): { fed: number; pid: number | undefined } | undefined {
    const fed = this.state.videoStreams.fedFrames(jobId);
    return fed === undefined ? undefined : { fed, pid: this.state.videoStreams.ffmpegPid(jobId) };
  }

  // ---- workers -----------------------------------------------------------------------

  workerConnected(hello: WorkerHello, link: WorkerLink): Promise<string> {
    return this.registry.connected(hello, link);
  }

  workerForUploadKey(key: string): string | undefined {
    return this.registry.workerForUploadKey(key);
  }

  workerFiles(workerId: string, report: WorkerFiles): void {
    this.registry.files(workerId, report);
  }

  fileSources(uploadKey: string, sha256: string, excluded: ReadonlySet<string>): Promise<FileSources> {
    return this.registry.fileSources(uploadKey, sha256, excluded);
  }

  rotatePeerKey(): void {
    this.registry.rotatePeerKey();
  }

  /** The farm's current peer key, as workers receive it (tests). */
  get peerKey(): string {
    return this.state.holders.peerKey;
  }

  /** Connected serving workers that hold a file (tests, diagnostics). */
  holdersOf(sha256: string): string[] {
    return this.state.holders.holdersOf(sha256);
  }

  workerReady(workerId: string): void {
    this.registry.ready(workerId);
  }

  workerScheduleChanged(workerId: string, asleep: Asleep | null): void {
    this.registry.scheduleChanged(workerId, asleep);
  }

  /** How often workers report progress now: it grows with the farm (progress-pace.ts). */
  get progressIntervalMs(): number {
    return this.registry.progressMs;
  }

  workerProgress(workerId: string, jobId: string, frame: number, percent: number, tile?: number): void {
    this.registry.progress(workerId, jobId, frame, percent, tile);
  }

  workerDisconnected(workerId: string, link: WorkerLink): Promise<void> {
    return this.registry.disconnected(workerId, link);
  }

  setWorkerMode(workerId: string, mode: 'enable' | 'drain' | 'disable'): Promise<Worker> {
    return this.registry.setMode(workerId, mode);
  }

  setWorkerTags(id: string, tags: string[] | null): Promise<Worker> {
    return this.registry.setTags(id, tags);
  }

  // ---- schedules per worker tag ------------------------------------------------------------

  listTagSchedules(): TagScheduleView[] {
    return this.tagSchedules.list();
  }

  setTagSchedule(tag: string, input: TagScheduleInput): Promise<TagScheduleView> {
    return this.tagSchedules.set(tag, input);
  }

  clearTagSchedule(tag: string): Promise<void> {
    return this.tagSchedules.clear(tag);
  }

  // ---- what workers deliver --------------------------------------------------------------

  frameUploaded(workerId: string, jobId: string, frame: number, result: DeliveredResult, tile?: number) {
    return this.results.frameUploaded(workerId, jobId, frame, result, tile);
  }

  frameFailed(workerId: string, jobId: string, frame: number, error: string, log: string, tile?: number): Promise<void> {
    return this.results.frameFailed(workerId, jobId, frame, error, log, tile);
  }

  frameHandedBack(workerId: string, jobId: string, frame: number, reason: string, tile?: number): Promise<void> {
    return this.results.frameHandedBack(workerId, jobId, frame, reason, tile);
  }

  probeSucceeded(workerId: string, jobId: string, scene: SceneInfo): Promise<void> {
    return this.prober.probeSucceeded(workerId, jobId, scene);
  }

  probeHandedBack(workerId: string, jobId: string, reason: string): Promise<void> {
    return this.prober.probeHandedBack(workerId, jobId, reason);
  }

  probeFailed(workerId: string, jobId: string, error: string): Promise<void> {
    return this.prober.probeFailed(workerId, jobId, error);
  }
}
