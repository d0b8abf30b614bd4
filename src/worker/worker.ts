import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { WorkerSettings } from '../config/index.ts';
import { PROTOCOL_VERSION, type ProbeRequest, type RenderAssignment, type SceneInfo, type ServerToWorker, type UsedDevice } from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import { TlsClient, workerTls } from '../util/tls-client.ts';
import { BlenderLauncher, checkRenderDevice, RenderDeviceError, type BlenderSession, type ProjectLayout, probeScene } from './blender/index.ts';
import { defaultBlenderPath, findInstallations, installationFor, reportedVersions, type BlenderInstallation } from './blender/installations.ts';
import { ConfigError } from '../config/index.ts';
import { trimCache } from './cache-budget.ts';
import { WorkerFiles } from './worker-files.ts';
import { ServerConnection } from './connection.ts';
import { uploadFrame } from './frame-uploader.ts';
import { readWorkerId, writeWorkerId } from './local-facts.ts';
import { collectPasses, frameFolder, PASSES_FOLDER } from './passes.ts';
import { UploadQueue } from './upload-queue.ts';
import { ScheduleWatch } from './schedule-watch.ts';
import { DiskSpace } from './disk-space.ts';
import { asleepMessage, describeSleep, type SleepState } from './schedules-combined.ts';

interface OpenSession {
  jobId: string;
  session: BlenderSession;
  /** The installation it runs: the one the job renders with. */
  blender: BlenderInstallation;
  /** The project laid out around its scene: files added to a held job make a new one. */
  projectId: string | null;
  /** false for a session opened to probe the job: its overrides are applied before the first frame. */
  configured: boolean;
}

/** A job's scene as a session opens it. */
type JobScene = Pick<RenderAssignment, 'jobId' | 'blend' | 'project' | 'allowScripts' | 'blender'>;

/**
 * A render node: keeps a connection to the server, takes one frame at a time, renders it
 * in a Blender session kept open for the whole job, and uploads each frame as soon as
 * Blender has saved it (the next frame starts meanwhile). While idle it keeps a Blender
 * pre-warmed (prewarm_blender), so a new job does not wait for Blender's start-up.
 */
export class RenderWorker {
  private readonly connection: ServerConnection;
  private readonly files: WorkerFiles;
  private readonly blenders: BlenderLauncher;
  private readonly serverUrl: string;
  private workerId: string | undefined;
  /** Given by the server in its welcome; uploads present it. Unset while disconnected. */
  private uploadKey: string | undefined;
  /**
   * Progress is reported at most this often (Cycles prints a line per sample); the server
   * sets it in its welcome and lengthens it as the farm grows.
   */
  private progressMs = 250;
  /** Its Blender installations (blender_path, [blenders]), the default first; read at start. */
  private installations: BlenderInstallation[] = [];
  /** What Blender renders on (render_device, gpus), read back at start; told to the server. */
  private device: UsedDevice | null = null;
  private open: OpenSession | null = null;
  private sessionLock: Promise<void> = Promise.resolve();
  private current: RenderAssignment | null = null;
  private cancelled = false;
  private rendering: Promise<void> = Promise.resolve();
  private draining = false;
  private shutDown = false;
  private readonly space: DiskSpace;
  private readonly uploads: UploadQueue;
  private readonly schedule: ScheduleWatch;
  /** What this connection's server was last told of the schedule (JSON), so it is told each change once. */
  private toldSchedule: string | null = null;
  private stopped: Promise<string>;
  private stop!: (reason: string) => void;

  constructor(
    private readonly settings: WorkerSettings & { token: string },
    private readonly log: Logger,
    /** The time the schedule is read at; injectable so tests choose it. */
    clock: () => Date = () => new Date(),
  ) {
    const host = settings.address.includes(':') ? `[${settings.address}]` : settings.address;
    const { secure, trust } = workerTls(settings);
    const transport = new TlsClient(trust); // reads tls_ca once, for every connection to come
    this.serverUrl = `${secure ? 'https' : 'http'}://${host}:${settings.web_port}`;
    const socketUrl = `${secure ? 'wss' : 'ws'}://${host}:${settings.port}`;
    if (secure && settings.peer_port !== undefined) {
      throw new ConfigError('peer_port: peers serve each other over plain HTTP, which a farm on TLS (tls, tls_ca, tls_fingerprint) must not do; unset peer_port', { key: 'peer_port' });
    }
    this.files = new WorkerFiles({
      cacheDir: settings.cache_dir,
      serverUrl: this.serverUrl,
      token: settings.token,
      transport,
      peerPort: settings.peer_port,
      peerHost: peerHostFor(settings.address),
      peersAllowed: !secure,
      send: (message) => this.connection.send(message),
      log: log.child({ part: 'files' }),
    });
    this.workerId = readWorkerId(settings.cache_dir);
    this.blenders = new BlenderLauncher({
      blenderPath: defaultBlenderPath(settings.blender_path),
      threads: settings.threads,
      nice: settings.nice,
      device: { type: settings.render_device, gpus: settings.gpus },
      prewarm: settings.prewarm_blender,
      logger: log,
    });
    this.stopped = new Promise((resolve) => (this.stop = resolve));
    this.space = new DiskSpace(settings.cache_dir, settings.min_free_mb, settings.name ?? os.hostname());
    const sleepChanged = (now: SleepState | null, was: SleepState | null) => (now ? this.fallAsleep(now, was) : this.wakeUp());
    this.schedule = new ScheduleWatch({ text: settings.schedule, stop: settings.schedule_stop }, { changed: sleepChanged }, clock);
    this.uploads = new UploadQueue(
      (upload) => {
        // Retried (no HTTP status) until the connection is open again and has its key.
        if (!this.uploadKey) return Promise.reject(new Error('waiting for the connection to the server before uploading'));
        return uploadFrame(this.serverUrl, settings.token, this.uploadKey, upload, transport);
      },
      (upload, error) =>
        this.connection.send({ type: 'frame_failed', jobId: upload.jobId, frame: upload.frame, tile: upload.tile, error: error.message, log: '', reason: 'render' }),
      log,
    );
    this.connection = new ServerConnection(
      socketUrl,
      {
        hello: () => ({
          type: 'hello',
          role: 'worker',
          protocol: PROTOCOL_VERSION,
          token: settings.token,
          workerId: this.workerId,
          name: settings.name ?? os.hostname(),
          host: os.hostname(),
          threads: settings.threads,
          blenderVersion: this.installations[0]?.version ?? null,
          blenders: reportedVersions(this.installations),
          allowScripts: settings.allow_scripts,
          device: this.device,
          tags: settings.tags,
          holding: this.uploads.holding(),
          peerPort: this.files.peerPort,
        }),
        onOpen: () => this.log.info({ server: this.serverUrl }, 'connected to the server'),
        onClose: () => {
          this.uploadKey = undefined; // it belonged to that connection
          this.toldSchedule = null; // a new connection starts awake on the server
          this.files.disconnected();
          this.log.warn('connection to the server closed');
        },
        onMessage: (message) => this.handle(message),
        onFatal: (reason) => {
          this.log.error({ reason }, 'the server refused this worker');
          this.stop(reason);
        },
      },
      log,
      transport.webSocketOptions(socketUrl),
    );
  }

  /** Checks Blender, connects, and resolves only when the worker stops (with the reason). */
  async run(): Promise<string> {
    this.installations = await findInstallations(this.settings.blender_path, this.settings.blenders);
    this.device = await this.checkDevice();
    this.log.info({ blenders: this.installations, threads: this.settings.threads }, 'worker starting');
    this.schedule.check();
    this.prewarmIfIdle();
    await this.files.start(); // before connecting: the hello names the peer port
    // The id must be known before uploading; a first-time worker gets one at welcome.
    if (this.workerId) {
      const recovered = await this.uploads.recover(this.outputRoot);
      if (recovered) this.log.info({ recovered }, 'uploading frames rendered before a restart');
    }
    this.connection.start();
    return this.stopped;
  }

  private get outputRoot(): string {
    return path.join(this.settings.cache_dir, 'output');
  }

  /**
   * A worker whose render device Blender cannot use must take no work: every frame would
   * fail. A GPU backend is checked at start, in a Blender of its own (no scene).
   */
  private async checkDevice(): Promise<UsedDevice> {
    const { render_device: type, gpus } = this.settings;
    if (type === 'CPU') return { type, devices: ['CPU'], computeDeviceType: 'NONE' };
    try {
      const device = await checkRenderDevice(defaultBlenderPath(this.settings.blender_path), { type, gpus });
      this.log.info({ device }, 'render device');
      return device;
    } catch (error) {
      if (error instanceof RenderDeviceError) throw new ConfigError(`render_device ${type}${gpus.length ? ` (gpus ${gpus.join(', ')})` : ''}: ${error.message}`);
      throw error;
    }
  }

  /** Stops at once: a frame being rendered is abandoned and the server hands it to another worker. */
  async shutdown(): Promise<void> {
    this.shutDown = true;
    this.schedule.stop();
    this.connection.stop();
    this.open?.session.kill();
    this.open = null;
    this.blenders.stop();
    await this.files.stop();
    this.stop('shut down');
  }

  /**
   * Stops gracefully (SIGTERM): takes no new frame, lets the current one finish and
   * upload, then leaves. If that takes longer than `graceMs`, stops at once; the frame
   * is then handed back to the farm, and its upload resumes on the next start.
   */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.log.info({ rendering: this.current !== null, uploads: this.uploads.pending }, 'draining: finishing the current frame');
    const finished = (async () => {
      await this.rendering;
      await this.uploads.drained();
    })();
    await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
    await this.closeSession();
    await this.shutdown();
  }

  private askForWork(): void {
    // Not before this connection's welcome (no upload key yet): the welcome asks, and asking twice could get two frames.
    if (!this.uploadKey || this.draining || this.current || this.schedule.asleep) return;
    this.connection.send({ type: 'ready' });
  }

  /** Reads the clock against the schedule now; the worker also does so by itself when the schedule changes. */
  checkSchedule(): void {
    this.schedule.check();
  }

  /** Tells the server whether its schedules let it take frames, once per change (a connection starts awake there). */
  private reportSchedule(): void {
    const asleep = asleepMessage(this.schedule.asleep);
    const told = JSON.stringify(asleep);
    if (told !== (this.toldSchedule ?? 'null') && this.connection.send({ type: 'schedule', asleep })) this.toldSchedule = told;
  }

  /**
   * The hours of its schedules are over (or it sleeps on for other reasons): no new frame.
   * The one rendering finishes and uploads, or, when a schedule keeping it asleep says
   * stop "now", goes back to the farm at once and Blender stops.
   */
  private fallAsleep(sleep: SleepState, was: SleepState | null): void {
    this.log.info(asleepMessage(sleep)!, `schedule: ${was ? 'still ' : ''}asleep ${describeSleep(sleep)}`);
    this.reportSchedule();
    this.blenders.coolDown();
    const current = this.current;
    // Nothing rendering: the job's Blender and its memory go back to the person at the desk.
    if (!current) return void this.closeSession();
    // The frame finishes (its Blender closes then), unless "now" and it is not stopped already.
    if (sleep.stop !== 'now' || this.cancelled) return;
    const { jobId, frame } = current;
    const error = `worker ${this.settings.name ?? os.hostname()} is asleep ${describeSleep(sleep)}, and its schedule says stop "now"`;
    this.connection.send({ type: 'frame_failed', jobId, frame, tile: current.tile?.index, error, log: '', reason: 'asleep' });
    this.cancelled = true;
    this.open?.session.kill();
    this.open = null;
  }

  private wakeUp(): void {
    this.log.info('schedule: awake, taking work');
    this.reportSchedule();
    this.prewarmIfIdle();
    this.askForWork();
  }

  private handle(message: ServerToWorker): void {
    switch (message.type) {
      case 'welcome':
        if (this.workerId !== message.workerId) {
          this.workerId = message.workerId;
          writeWorkerId(this.settings.cache_dir, message.workerId);
        }
        this.uploadKey = message.uploadKey;
        this.progressMs = message.progressMs;
        void this.files.connected(message.uploadKey, message.peerKey).catch((error: Error) => this.log.warn({ error: error.message }, 'could not list the cached files for the server'));
        this.reportSchedule();
        // A frame still rendering from before a reconnect finishes first, then asks for more.
        this.askForWork();
        return;
      case 'render':
        this.rendering = this.render(message);
        return;
      case 'probe':
        void this.probe(message);
        return;
      case 'tag_schedules':
        this.schedule.setTagSchedules(message.schedules);
        return;
      case 'cancel':
        this.cancel(message.jobId, message.frame, message.tile);
        return;
      case 'pace':
        this.progressMs = message.progressMs;
        return;
      case 'peer_key':
        this.files.peerKeyChanged(message.peerKey);
        return;
      case 'error':
        this.log.warn({ message: message.message }, 'the server reported an error');
        return;
    }
  }

  private async render(assignment: RenderAssignment): Promise<void> {
    const { jobId, frame } = assignment;
    const tile = assignment.tile?.index;
    this.current = assignment;
    this.cancelled = false;
    const log = this.log.child({ jobId, frame, tile });
    let lastProgress = 0;
    const asleep = this.schedule.asleep;
    if (asleep) {
      // Sent just before the schedule ended: it goes back untouched, at no cost to the frame.
      const error = `worker ${this.settings.name ?? os.hostname()} is asleep ${describeSleep(asleep)}`;
      log.info('asleep: handing the frame back');
      this.connection.send({ type: 'frame_failed', jobId, frame, tile, error, log: '', reason: 'asleep' });
      this.current = null;
      return;
    }
    if (assignment.allowScripts && !this.settings.allow_scripts) {
      // The server sends such jobs only to workers that allow scripts; this one's owner did not.
      const error = 'this worker does not run Python scripts from .blend files (its allow_scripts setting is false)';
      log.error(error);
      this.connection.send({ type: 'frame_failed', jobId, frame, tile, error, log: '', reason: 'render' });
      this.current = null;
      this.askForWork();
      return;
    }
    const short = await this.space.shortage();
    if (short) {
      log.error({ reason: short }, 'disk full: handing the frame back');
      this.connection.send({ type: 'frame_failed', jobId, frame, tile, error: short, log: '', reason: 'disk_full' });
      this.current = null;
      this.waitForSpace();
      return;
    }
    try {
      const { session, blender } = await this.sessionFor(assignment);
      // Each frame (or tile) renders into a folder of its own, where its File Output passes land too.
      const unitDir = path.join(this.outputRoot, jobId, tile === undefined ? frameFolder(frame) : `${frameFolder(frame)}-tile-${tile}`);
      await rm(unitDir, { recursive: true, force: true });
      const name = tile === undefined ? 'frame_####' : `tile_${String(tile).padStart(2, '0')}_frame_####`;
      const onProgress = (progress: { percent: number }) => {
        const now = Date.now();
        if (now - lastProgress < this.progressMs) return;
        lastProgress = now;
        this.connection.send({ type: 'progress', jobId, frame, tile, percent: progress.percent });
      };
      const result = await session.render(frame, path.join(unitDir, name), onProgress, assignment.tile);
      log.info({ ms: Math.round(result.renderMs) }, tile === undefined ? 'frame rendered' : 'tile rendered');
      const passes = await collectPasses(path.join(unitDir, PASSES_FOLDER));
      await this.uploads.add({ jobId, frame, tile, file: result.path, renderMs: result.renderMs, log: result.log.slice(-60_000), passes, folder: unitDir, blenderVersion: blender.version });
    } catch (error) {
      if (this.cancelled || this.draining) {
        // Stopped on purpose: the server hands the frame to another worker when we leave.
        log.info('render stopped');
      } else {
        const message = (error as Error).message;
        log.warn({ error: message }, 'frame failed');
        this.connection.send({
          type: 'frame_failed',
          jobId,
          frame,
          tile,
          error: message.slice(0, 4000),
          log: String((error as { log?: string }).log ?? '').slice(-60_000),
          reason: 'render',
        });
      }
    } finally {
      this.current = null;
      if (this.schedule.asleep) void this.closeSession();
      this.prewarmIfIdle();
      this.askForWork();
    }
  }

  /** Takes no work until the disk has room again (min_free_mb). */
  private waitForSpace(): void {
    this.space.waitForRoom(() => {
      this.log.info('disk has room again: taking work');
      this.askForWork();
    }, () => this.shutDown);
  }

  /** One Blender per job: reused frame after frame, replaced when the job changes or Blender died. */
  private sessionFor(assignment: RenderAssignment): Promise<OpenSession> {
    return this.withSession(assignment, assignment.overrides, async (open) => {
      if (!open.configured) {
        // Opened to probe the job, with no overrides: the scene it loaded renders the frames.
        await open.session.configure(assignment.overrides);
        open.configured = true;
      }
      return open;
    });
  }

  /**
   * Runs `use` with the job's Blender session: the one already open for it, else a new one
   * (the pre-warmed Blender when there is one). `overrides` null: opened to probe the job,
   * before its overrides are known. One at a time, so a probe and a render never replace
   * each other's session mid-way.
   */
  private withSession<T>(job: JobScene, overrides: RenderAssignment['overrides'] | null, use: (open: OpenSession) => Promise<T>): Promise<T> {
    const turn = this.sessionLock.then(async () => {
      const blender = this.installationFor(job);
      if (!this.open || !sessionFits(this.open, job, blender)) {
        await this.closeSession();
        const { blendFile, project } = await this.sceneFiles(job);
        const session = await this.blenders.open({ blendFile, allowScripts: job.allowScripts, overrides: overrides ?? {}, project }, blender.path);
        if (this.shutDown || (overrides && this.cancelled)) {
          // Stopped or cancelled while Blender was starting: nobody would ever use this one.
          session.kill();
          throw new Error(this.shutDown ? 'the worker is shutting down' : 'the frame was cancelled');
        }
        this.open = { jobId: job.jobId, session, blender, projectId: job.project?.id ?? null, configured: overrides !== null };
      }
      return use(this.open);
    });
    this.sessionLock = turn.then(() => undefined, () => undefined);
    return turn;
  }

  /** The Blender the job renders with here; the server sends a job only to workers that have it. */
  private installationFor(job: Pick<JobScene, 'blender'>): BlenderInstallation {
    const found = installationFor(this.installations, job.blender);
    if (found) return found;
    throw new Error(`this worker has no Blender ${job.blender} (it has ${this.installations.map((one) => one.version).join(', ')})`);
  }

  /** The job's .blend on this worker: alone in the blend cache, or at its place in its project's tree. */
  private async sceneFiles(job: Pick<JobScene, 'blend' | 'project'>): Promise<{ blendFile: string; project: ProjectLayout | null }> {
    const blend = await this.files.blends.get(job.blend);
    const laidOut = job.project ? await this.files.projects.prepare(job.project, job.blend) : null;
    // The cache stays under its budget (cache_max_gb); this job's files are never trimmed.
    const removed: string[] = [];
    const trimmed = await trimCache(this.settings.cache_dir, this.settings.cache_max_gb * 1024 ** 3, { blend, tree: laidOut?.tree }, (file) => removed.push(file));
    this.files.evicted(removed);
    if (trimmed.files > 0) this.log.info(trimmed, 'cache over cache_max_gb: least recently used files removed');
    if (!job.project || !laidOut) return { blendFile: blend, project: null };
    return { blendFile: laidOut.blendFile, project: { root: job.project.root, tree: laidOut.tree } };
  }

  private async closeSession(): Promise<void> {
    const open = this.open;
    this.open = null;
    if (open) await open.session.close();
  }

  /** A pre-warmed Blender waits for the next job (always false with prewarm_blender off). */
  get prewarmed(): boolean {
    return this.blenders.warmAndWaiting;
  }

  /**
   * Keeps a Blender pre-warmed for the next job, but only while nothing renders and no
   * job's Blender is open: starting one costs a core for a second or two, which must
   * not slow a frame, and the job's own session serves its next frames anyway.
   */
  private prewarmIfIdle(): void {
    if (this.current || this.open?.session.alive || this.draining || this.shutDown || this.schedule.asleep) return;
    this.blenders.warmUp();
  }

  private async probe(request: ProbeRequest): Promise<void> {
    const short = await this.space.shortage();
    if (short) {
      this.log.error({ jobId: request.jobId, reason: short }, 'disk full: handing the probe back');
      this.connection.send({ type: 'probe_failed', jobId: request.jobId, error: short, reason: 'disk_full' });
      this.waitForSpace();
      return;
    }
    try {
      const allowScripts = request.allowScripts && this.settings.allow_scripts;
      // Asleep, the worker still reads scenes (so a job submitted at night shows its settings
      // and problems at once), in a Blender that exits after: it renders nothing until it wakes.
      const scene = this.current || this.schedule.asleep
        ? await this.probeAside(request, allowScripts)
        : await this.withSession({ ...request, allowScripts }, null, (open) => open.session.probe());
      this.connection.send({ type: 'probe_result', jobId: request.jobId, scene });
    } catch (error) {
      this.connection.send({ type: 'probe_failed', jobId: request.jobId, error: (error as Error).message.slice(0, 4000), reason: 'scene' });
    }
  }

  /**
   * While a frame of another job renders (or the worker sleeps), the probe runs in a Blender
   * of its own, which leaves that job's session alone. An idle worker probes in the session
   * that then renders the job's frames: one Blender start and one scene load for both.
   */
  private async probeAside(request: ProbeRequest, allowScripts: boolean): Promise<SceneInfo> {
    const { blendFile, project } = await this.sceneFiles(request);
    return probeScene({ blenderPath: this.installationFor(request).path, blendFile, allowScripts, project, nice: this.settings.nice, logger: this.log });
  }

  /** The server took the frame back or the job ended: stop rendering it and drop the session. */
  private cancel(jobId: string, frame?: number, tile?: number): void {
    const current = this.current;
    const renderingIt =
      current?.jobId === jobId && (frame === undefined || (current.frame === frame && current.tile?.index === tile));
    if (renderingIt) {
      this.cancelled = true;
      this.open?.session.kill();
      this.open = null;
    } else if (frame === undefined && this.open?.jobId === jobId) {
      // The job is over: its Blender goes, and a fresh one is pre-warmed for the next job.
      void this.closeSession().then(() => this.prewarmIfIdle());
    }
  }
}

/** Whether the open session serves the job: the same job, alive, with its Blender and its project's files. */
function sessionFits(open: OpenSession, job: JobScene, blender: BlenderInstallation): boolean {
  return open.jobId === job.jobId && open.session.alive && open.blender.path === blender.path && open.projectId === (job.project?.id ?? null);
}

/**
 * Where the peer server listens: a worker whose server is on this machine has its peers
 * here too (loopback only); any other listens on every interface, as its peers are
 * other machines.
 */
function peerHostFor(serverAddress: string): string {
  return /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(serverAddress) ? (serverAddress === '::1' ? '::1' : '127.0.0.1') : '0.0.0.0';
}
