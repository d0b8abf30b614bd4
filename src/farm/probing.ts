import { blenderForJob, compileJob, CompileError, missingFiles } from '../jobs/index.ts';
import { framesOf, hasBlender, type SceneInfo } from '../protocol/index.ts';
import type { ConnectedWorker } from './connected-worker.ts';
import type { Dispatcher } from './dispatch.ts';
import type { FarmState } from './state.ts';
import { jobRecord } from './job-record.ts';
import { projectRefOf } from './projects.ts';

/**
 * A new job's scene is read by a worker (the server has no Blender): the probe asks a
 * connected worker, and its answer compiles the job into frames and queues it.
 */
export class Prober {
  /** job id -> worker probing its scene (null: waiting for a worker). */
  private readonly probes = new Map<string, string | null>();
  /** Workers that handed a probe back (disk full), until they say they are ready again. */
  private readonly cannotProbe = new Set<string>();
  /** Jobs whose probe is being sent (their row is read first): sent once however often asked. */
  private readonly sending = new Set<string>();

  constructor(
    private readonly state: FarmState,
    private readonly dispatch: Dispatcher,
  ) {}

  /** A job waits for its scene to be read. */
  add(jobId: string): void {
    this.probes.set(jobId, null);
  }

  /** The job ended before its scene was read. */
  drop(jobId: string): void {
    this.probes.delete(jobId);
  }

  /** The worker is ready again (it may have freed space) or gone: it may be asked, or is no longer asked. */
  workerReady(workerId: string): void {
    if (this.cannotProbe.delete(workerId)) this.requestProbes();
  }

  workerGone(workerId: string): void {
    this.cannotProbe.delete(workerId);
    for (const [jobId, prober] of this.probes) if (prober === workerId) this.probes.set(jobId, null);
  }

  /** Sends each job waiting for its scene to be read to a connected worker. */
  requestProbes(): void {
    for (const [jobId, prober] of this.probes) {
      if (prober !== null) continue;
      this.state.background(this.sendProbe(jobId));
    }
  }

  private async sendProbe(jobId: string): Promise<void> {
    if (this.sending.has(jobId)) return;
    this.sending.add(jobId);
    try {
      const row = await this.state.store.getJob(jobId);
      if (!row || this.probes.get(jobId) !== null) return;
      const blender = jobRecord(row).request.blender ?? null;
      const worker = this.pickProber(blender);
      if (!worker) return;
      this.probes.set(jobId, worker.id);
      worker.link.send({
        type: 'probe',
        jobId,
        blend: { sha256: row.blend_sha256, size: row.blend_size },
        // A worker that refuses scripts reads the scene with them off: the probe only reads settings.
        allowScripts: jobRecord(row).allowScripts && worker.allowScripts,
        project: await projectRefOf(this.state, row.project_id),
        blender,
      });
    } finally {
      this.sending.delete(jobId);
    }
  }

  async probeSucceeded(workerId: string, jobId: string, probed: SceneInfo): Promise<void> {
    const { store, views, log } = this.state;
    if (this.probes.get(jobId) !== workerId) return;
    this.probes.delete(jobId);
    const row = await store.getJob(jobId);
    if (!row || row.state !== 'probing') return;
    const { request } = jobRecord(row);
    // The Blender it renders with, of those the farm has now; the server adds NEWER_BLENDER.
    const chosen = blenderForJob(request.blender ?? null, probed, this.farmBlenders());
    const scene = chosen.scene;
    let compiled;
    try {
      compiled = compileJob(scene, request);
    } catch (error) {
      if (!(error instanceof CompileError)) throw error;
      // The scene is kept, so the API and the job page show what the preflight found.
      await store.updateJob(jobId, { scene_json: JSON.stringify(scene) });
      await this.state.failJob((await store.getJob(jobId)) ?? row, error.message);
      return;
    }
    const frames = framesOf(compiled.range);
    await store.insertFrames(jobId, frames);
    const fields = {
      scene_json: JSON.stringify(scene),
      overrides_json: JSON.stringify(compiled.overrides),
      frame_start: compiled.range.start,
      frame_end: compiled.range.end,
      frame_step: compiled.range.step,
      fps: scene.fps,
      file_extension: compiled.fileExtension,
      blender_version: chosen.version,
    };
    await store.updateJob(jobId, fields);
    // Files the .blend names but the project lacks: hold rather than render frames without them.
    const missing = missingFiles(scene);
    const hold = request.hold === true || missing.length > 0;
    await this.dispatch.enqueue({ ...row, ...fields }, hold, frames);
    await this.state.setState(row, hold ? 'paused' : 'queued');
    if (missing.length > 0) log.warn({ jobId, missing: missing.map((m) => m.path) }, 'job held: the project lacks files its scene uses');
    log.info({ jobId, frames: views.countsOf(jobId).total, engine: scene.engine }, 'scene probed, job queued');
    this.dispatch.pump();
  }

  /** The worker could not probe (its disk is full): another worker probes, or this one once it is ready again. */
  async probeHandedBack(workerId: string, jobId: string, reason: string): Promise<void> {
    if (this.probes.get(jobId) !== workerId) return;
    this.state.log.warn({ workerId, jobId, reason }, 'worker handed a probe back');
    this.probes.set(jobId, null);
    this.cannotProbe.add(workerId);
    this.requestProbes();
  }

  async probeFailed(workerId: string, jobId: string, error: string): Promise<void> {
    if (this.probes.get(jobId) !== workerId) return;
    this.probes.delete(jobId);
    const row = await this.state.store.getJob(jobId);
    if (row?.state === 'probing') await this.state.failJob(row, `could not read the scene: ${error}`);
  }

  /** Every Blender version the connected workers have. */
  private farmBlenders(): string[] {
    return [...this.state.workers.values()].flatMap((worker) => worker.blenders);
  }

  /**
   * Probing takes a couple of seconds, so an idle worker is best, then one rendering nothing
   * (awake before asleep), then any enabled one, beside its render; one with the Blender the
   * job asked for, when it asked. Workers outside the hours of their schedules still read
   * scenes: a job submitted while every worker sleeps shows its settings and problems at
   * once, and is ready when they wake.
   */
  private pickProber(blender: string | null): ConnectedWorker | undefined {
    const all = [...this.state.workers.values()].filter(
      (w) => w.enabled && !this.cannotProbe.has(w.id) && (blender === null || hasBlender(w.blenders, blender)),
    );
    return (
      all.find((w) => this.state.scheduler.isIdle(w.id)) ??
      all.find((w) => !w.current && !w.asleep) ??
      all.find((w) => !w.current) ??
      all[0]
    );
  }
}
