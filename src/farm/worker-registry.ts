import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Asleep, FileSources, Worker, WorkerFiles, WorkerHello } from '../protocol/index.ts';
import { isWorkOn, type ConnectedWorker, type WorkerLink } from './connected-worker.ts';
import type { Dispatcher } from './dispatch.ts';
import { FarmError } from './errors.ts';
import type { Prober } from './probing.ts';
import type { FarmState } from './state.ts';
import { newId } from './state.ts';
import type { FrameTimers } from './timeouts.ts';
import type { TagSchedules } from './tag-schedules.ts';
import { serverTagsOf, workerView } from './views.ts';
import { jobRecord } from './job-record.ts';
import { peerUrl } from './peer-choice.ts';
import { PROGRESS_STEPS_MS, progressInterval } from './progress-pace.ts';

/** How long a "wait" answer to a source question may be held back for a change. */
const SOURCES_HOLD_MS = 1_000;

/** Progress reports a second the whole farm may send when the setting does not say (progress_reports_per_second). */
const DEFAULT_PROGRESS_BUDGET = 1_000;

/**
 * The workers the farm knows: they connect, say they are ready, report progress, leave,
 * and are enabled, drained or disabled. A worker that leaves gives its frames back.
 */
export class WorkerRegistry {
  /** How often connected workers report progress; it grows with the farm (progress-pace.ts). */
  progressMs: number = PROGRESS_STEPS_MS[0];

  constructor(
    private readonly state: FarmState,
    private readonly dispatch: Dispatcher,
    private readonly prober: Prober,
    private readonly timers: FrameTimers,
    private readonly tagSchedules: TagSchedules,
  ) {}

  async connected(hello: WorkerHello, link: WorkerLink): Promise<string> {
    const { workers, store, scheduler, views, log } = this.state;
    const id = hello.workerId ?? newId();
    const previous = workers.get(id);
    if (previous) {
      // The same machine reconnected before its old socket timed out: the new one wins.
      workers.delete(id);
      previous.link.close('replaced by a newer connection');
      this.state.holders.left(id);
      this.returnFramesOf(id);
    }
    const row = await store.upsertWorker({
      id,
      name: hello.name,
      host: hello.host,
      threads: hello.threads,
      blender_version: hello.blenderVersion,
    });
    const uploadKey = randomBytes(24).toString('base64url');
    // Tags set on the server outlive the connection and replace the worker's own setting.
    const tags = serverTagsOf(row) ?? hello.tags;
    const blenders = installedBlenders(hello);
    const worker: ConnectedWorker = { id, link, enabled: row.enabled !== 0, current: null, row, allowScripts: hello.allowScripts, tags, ownTags: hello.tags, blenders, device: hello.device ? { type: hello.device.type, devices: hello.device.devices } : null, uploadKey, asleep: null };
    workers.set(id, worker);
    this.pace(id);
    scheduler.setScriptsAllowed(id, hello.allowScripts);
    scheduler.setWorkerTags(id, tags);
    scheduler.setWorkerBlenders(id, blenders);
    for (const { jobId, frame, tile } of hello.holding) {
      if (!scheduler.claim(jobId, frame, id, tile)) continue;
      views.announceFrame(await store.startFrame(jobId, frame, tile === undefined ? id : null));
    }
    const servesAt = hello.peerPort !== undefined && link.remoteAddress ? peerUrl(link.remoteAddress, hello.peerPort) : null;
    this.state.holders.joined(id, servesAt);
    // Before the welcome, so a worker whose tags' hours are over asks for no frame first.
    this.tagSchedules.sendTo(worker);
    link.send({ type: 'welcome', workerId: id, protocol: hello.protocol, uploadKey, peerKey: this.state.holders.peerKey, progressMs: this.progressMs });
    log.info({ workerId: id, name: hello.name, host: hello.host }, 'worker connected');
    await views.publishWorker(id);
    await this.publishJobsWithNeeds();
    this.prober.requestProbes();
    return id;
  }

  /**
   * The worker whose open connection was given this upload key. Uploads prove with it that
   * they come from that connection, so a worker token alone cannot deliver another's frames.
   */
  workerForUploadKey(key: string): string | undefined {
    for (const worker of this.state.workers.values()) if (worker.uploadKey === key) return worker.id;
    return undefined;
  }

  /** Files a worker now holds or evicted (peer transfer). */
  files(workerId: string, report: WorkerFiles): void {
    if (this.state.workers.has(workerId)) this.state.holders.files(workerId, report);
  }

  /**
   * Where the worker with this upload key should fetch a file from. An answer of "wait" is
   * held back for up to `holdMs` until something changes (a peer got the file, a slot
   * freed), so the worker hears at once instead of asking again and again.
   */
  async fileSources(uploadKey: string, sha256: string, excluded: ReadonlySet<string>, holdMs = SOURCES_HOLD_MS): Promise<FileSources> {
    const workerId = this.workerForUploadKey(uploadKey);
    if (workerId === undefined) {
      throw new FarmError('WORKER_NOT_CONNECTED', 'this upload key belongs to no open worker connection: ask again once the worker has reconnected');
    }
    const deadline = performance.now() + holdMs;
    for (;;) {
      const answer = this.state.holders.sources(workerId, sha256, excluded, performance.now());
      const left = deadline - performance.now();
      if (answer.waitMs === null || left <= 0 || !this.state.workers.has(workerId) || this.state.stopping) return answer;
      await this.state.holders.nextChange(left);
    }
  }

  /** A worker token was revoked: the worker that used it knew the peer key, so every peer gets a new one. */
  rotatePeerKey(): void {
    const peerKey = this.state.holders.rotatePeerKey();
    for (const worker of this.state.workers.values()) worker.link.send({ type: 'peer_key', peerKey });
  }

  /**
   * Keeps progress reports within the farm's budget as workers come and go: when the interval
   * steps, every connected worker hears it (`except` is being welcomed with it).
   */
  private pace(except?: string): void {
    const { workers, options, log } = this.state;
    const next = progressInterval(this.progressMs, workers.size, options.progressReportsPerSecond ?? DEFAULT_PROGRESS_BUDGET);
    if (next === this.progressMs) return;
    this.progressMs = next;
    log.info({ progressMs: next, workers: workers.size }, 'progress interval changed');
    for (const worker of workers.values()) if (worker.id !== except) worker.link.send({ type: 'pace', progressMs: next });
  }

  ready(workerId: string): void {
    const worker = this.state.workers.get(workerId);
    if (!worker) return;
    worker.current = null;
    this.timers.clear(workerId);
    this.prober.workerReady(workerId);
    if (worker.enabled && !worker.asleep) this.state.scheduler.workerReady(workerId);
    this.state.background(this.state.views.publishWorker(workerId));
    this.dispatch.pump();
  }

  /**
   * The worker's schedules (its own and its tags') say it sleeps (it finishes or hands back
   * its frame by itself), or that it is awake again (null; it then says it is ready).
   */
  scheduleChanged(workerId: string, asleep: Asleep | null): void {
    const worker = this.state.workers.get(workerId);
    if (!worker) return;
    worker.asleep = asleep;
    if (asleep) this.state.scheduler.workerParked(workerId);
    this.state.log.info({ workerId, asleep }, asleep ? 'worker asleep (its schedules)' : 'worker awake (its schedules)');
    this.state.background(this.state.views.publishWorker(workerId));
    // A job's notice says when every worker that could render it sleeps.
    this.state.background(this.publishJobsWithNeeds(true));
  }

  progress(workerId: string, jobId: string, frame: number, percent: number, tile?: number): void {
    const worker = this.state.workers.get(workerId);
    if (!isWorkOn(worker?.current, jobId, frame, tile)) return;
    worker!.current!.percent = percent;
    // A slim change, not the worker's and the frame's whole views (observers get those when
    // their state changes). Announced at once, only while the worker still renders the frame
    // (checked just above): a late progress line must not re-announce a done frame.
    this.state.views.announceProgress(workerId, worker!.current!);
  }

  async disconnected(workerId: string, link: WorkerLink): Promise<void> {
    const { workers, store, views, log } = this.state;
    const worker = workers.get(workerId);
    if (!worker || worker.link !== link || this.state.stopping) return; // an older, replaced connection, or shutdown
    workers.delete(workerId);
    this.pace();
    this.state.holders.left(workerId);
    this.timers.clear(workerId);
    log.warn({ workerId }, 'worker disconnected');
    this.returnFramesOf(workerId);
    this.prober.workerGone(workerId);
    await store.touchWorker(workerId);
    await views.publishWorker(workerId);
    await this.publishJobsWithNeeds();
    this.prober.requestProbes();
    this.dispatch.pump();
  }

  /**
   * `drain`: the worker finishes its frame and takes no more. `disable`: its frame goes
   * back to the queue at once. `enable`: it takes work again.
   */
  async setMode(workerId: string, mode: 'enable' | 'drain' | 'disable'): Promise<Worker> {
    const { store, scheduler, views, log } = this.state;
    const row = await store.getWorker(workerId);
    if (!row) throw new FarmError('WORKER_NOT_FOUND', `no worker with id ${workerId}`);
    const enabled = mode === 'enable';
    const updated = await store.setWorkerEnabled(workerId, enabled);
    const worker = this.state.workers.get(workerId);
    if (worker) {
      worker.enabled = enabled;
      if (updated) worker.row = updated;
      if (enabled && !worker.current && !worker.asleep) scheduler.workerReady(workerId);
      if (!enabled) scheduler.workerParked(workerId);
      if (mode === 'disable' && worker.current) {
        const { jobId, frame, tile } = worker.current;
        worker.link.send({ type: 'cancel', jobId, frame, tile });
        this.returnFramesOf(workerId);
        worker.current = null;
      }
    }
    log.info({ workerId, mode }, 'worker mode changed');
    this.prober.requestProbes();
    this.dispatch.pump();
    await views.publishWorker(workerId);
    return workerView((await store.getWorker(workerId))!, views.liveState(workerId));
  }

  /**
   * Sets the tags a worker takes jobs by, on the server (they survive restarts and replace
   * its own `tags` setting); null goes back to that setting.
   */
  async setTags(workerId: string, tags: string[] | null): Promise<Worker> {
    const { store, scheduler, views, log } = this.state;
    const row = await store.setWorkerTags(workerId, tags === null ? null : [...new Set(tags)]);
    if (!row) throw new FarmError('WORKER_NOT_FOUND', `no worker with id ${workerId}`);
    const worker = this.state.workers.get(workerId);
    if (worker) {
      worker.row = row;
      worker.tags = serverTagsOf(row) ?? worker.ownTags;
      scheduler.setWorkerTags(workerId, worker.tags);
      // Its new tags may bring schedules, or take some away: it follows them at once.
      this.tagSchedules.sendTo(worker);
    }
    log.info({ workerId, tags }, tags === null ? 'worker tags: back to its own setting' : 'worker tags set');
    await views.publishWorker(workerId);
    await this.publishJobsWithNeeds();
    this.dispatch.pump();
    return workerView(row, views.liveState(workerId));
  }

  private returnFramesOf(workerId: string): void {
    for (const { jobId, frame } of this.state.scheduler.workerLost(workerId)) {
      const state = this.state.unfinishedState(jobId, frame);
      this.state.background(this.state.store.requeueFrame(jobId, frame, state).then((row) => this.state.views.announceFrame(row)));
    }
  }

  /**
   * Jobs that need scripts, tags or a Blender say whether any connected worker can take
   * them (their notice): republished as workers come and go. `everyJob`: a worker fell
   * asleep or woke, which any job's notice may tell.
   */
  private async publishJobsWithNeeds(everyJob = false): Promise<void> {
    for (const row of await this.state.store.listJobsInState(['probing', 'queued', 'rendering'])) {
      const { allowScripts, request } = jobRecord(row);
      const needs = allowScripts || (request.requiredTags?.length ?? 0) > 0 || (row.blender_version ?? request.blender);
      if (everyJob || needs) await this.state.views.publishJob(row.id);
    }
  }
}

/** A worker's Blender versions; one that names no list has its one installation. */
function installedBlenders(hello: WorkerHello): string[] {
  if (hello.blenders.length > 0) return hello.blenders;
  return hello.blenderVersion ? [hello.blenderVersion] : [];
}
