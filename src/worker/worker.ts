import { mkdir, rm, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { WorkerSettings } from '../config/index.ts';
import { PROTOCOL_VERSION, type ProbeRequest, type RenderAssignment, type SceneInfo, type ServerToWorker, type UsedDevice } from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import { TlsClient, workerTls } from '../util/tls-client.ts';
import { BlenderLauncher, checkRenderDevice, RenderDeviceError, type BlenderSession, type ProjectLayout, probeScene } from './blender/index.ts';
import { ConfigError } from '../config/index.ts';
import { trimCache } from './cache-budget.ts';
import { WorkerFiles } from './worker-files.ts';
import { ServerConnection } from './connection.ts';
import { uploadFrame } from './frame-uploader.ts';
import { readBlenderVersion, readWorkerId, writeWorkerId } from './local-facts.ts';
import { collectPasses, frameFolder, PASSES_FOLDER } from './passes.ts';
import { UploadQueue } from './upload-queue.ts';
import { clockTime } from './schedule.ts';
import { ScheduleWatch } from './schedule-watch.ts';

/** How often a worker short of disk space looks again. */
const SPACE_RECHECK_MS = 3000;

/** Progress messages per frame are capped at this rate; Cycles prints a line per sample. */
const PROGRESS_INTERVAL_MS = 250;

interface OpenSession {
  jobId: string;
  session: BlenderSession;
  /** false for a session opened to probe the job: its overrides are applied before the first frame. */
  configured: boolean;
}

/** A job's scene as a session opens it. */
type JobScene = Pick<RenderAssignment, 'jobId' | 'blend' | 'project' | 'allowScripts'>;

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
  private blenderVersion: string | null = null;
  /** What Blender renders on (render_device, gpus), read back at start; told to the server. */
  private device: UsedDevice | null = null;
  private open: OpenSession | null = null;
  private sessionLock: Promise<void> = Promise.resolve();
  private current: RenderAssignment | null = null;
  private cancelled = false;
  private rendering: Promise<void> = Promise.resolve();
  private draining = false;
  private shutDown = false;
  private waitingForSpace = false;
  private readonly uploads: UploadQueue;
  private readonly schedule: ScheduleWatch;
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
      blenderPath: settings.blender_path,
      threads: settings.threads,
      nice: settings.nice,
      device: { type: settings.render_device, gpus: settings.gpus },
      prewarm: settings.prewarm_blender,
      logger: log,
    });
    this.stopped = new Promise((resolve) => (this.stop = resolve));
    this.schedule = new ScheduleWatch(settings.schedule, { asleep: (until) => this.fallAsleep(until), awake: () => this.wakeUp() }, clock);
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
          blenderVersion: this.blenderVersion,
          allowScripts: settings.allow_scripts,
          device: this.device,
          tags: settings.tags,
          holding: this.uploads.holding(),
          peerPort: this.files.peerPort,
        }),
        onOpen: () => this.log.info({ server: this.serverUrl }, 'connected to the server'),
        onClose: () => {
          this.uploadKey = undefined; // it belonged to that connection
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
    this.blenderVersion = await readBlenderVersion(this.settings.blender_path);
    this.device = await this.checkDevice();
    this.log.info({ blender: this.blenderVersion, threads: this.settings.threads }, 'worker starting');
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
      const device = await checkRenderDevice(this.settings.blender_path, { type, gpus });
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
    if (!this.draining && !this.current && !this.schedule.asleepUntil) this.connection.send({ type: 'ready' });
  }

  /** Reads the clock against the schedule now; the worker also does so by itself when the schedule changes. */
  checkSchedule(): void {
    this.schedule.check();
  }

  /** Tells the server whether the schedule lets this worker take frames (on every connection, and when it changes). */
  private reportSchedule(): void {
    const until = this.schedule.asleepUntil;
    if (until || this.settings.schedule !== undefined) this.connection.send({ type: 'schedule', asleepUntil: until?.toISOString() ?? null });
  }

  /**
   * The schedule's hours are over: no new frame. The one rendering finishes and uploads,
   * or, with schedule_stop = "now", goes back to the farm at once and Blender stops.
   */
  private fallAsleep(until: Date): void {
    this.log.info({ until: until.toISOString() }, `schedule: asleep until ${clockTime(until)}`);
    this.reportSchedule();
    const current = this.current;
    // Nothing rendering: the job's Blender and its memory go back to the person at the desk.
    if (!current) return void this.closeSession();
    if (this.settings.schedule_stop !== 'now') return; // the frame finishes; its Blender closes then
    const { jobId, frame } = current;
    const error = `the schedule of worker ${this.settings.name ?? os.hostname()} ended (schedule_stop = "now")`;
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
      case 'cancel':
        this.cancel(message.jobId, message.frame, message.tile);
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
    if (this.schedule.asleepUntil) {
      // Sent just before the schedule ended: it goes back untouched, at no cost to the frame.
      const error = `worker ${this.settings.name ?? os.hostname()} is asleep until ${clockTime(this.schedule.asleepUntil)} (its schedule)`;
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
    const short = await this.spaceShortage();
    if (short) {
      log.error({ reason: short }, 'disk full: handing the frame back');
      this.connection.send({ type: 'frame_failed', jobId, frame, tile, error: short, log: '', reason: 'disk_full' });
      this.current = null;
      this.waitForSpace();
      return;
    }
    try {
      const session = await this.sessionFor(assignment);
      // Each frame (or tile) renders into a folder of its own, where its File Output passes land too.
      const unitDir = path.join(this.outputRoot, jobId, tile === undefined ? frameFolder(frame) : `${frameFolder(frame)}-tile-${tile}`);
      await rm(unitDir, { recursive: true, force: true });
      const name = tile === undefined ? 'frame_####' : `tile_${String(tile).padStart(2, '0')}_frame_####`;
      const onProgress = (progress: { percent: number }) => {
        const now = Date.now();
        if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
        lastProgress = now;
        this.connection.send({ type: 'progress', jobId, frame, tile, percent: progress.percent });
      };
      const result = await session.render(frame, path.join(unitDir, name), onProgress, assignment.tile);
      log.info({ ms: Math.round(result.renderMs) }, tile === undefined ? 'frame rendered' : 'tile rendered');
      const passes = await collectPasses(path.join(unitDir, PASSES_FOLDER));
      await this.uploads.add({ jobId, frame, tile, file: result.path, renderMs: result.renderMs, log: result.log.slice(-60_000), passes, folder: unitDir });
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
      if (this.schedule.asleepUntil) void this.closeSession();
      this.prewarmIfIdle();
      this.askForWork();
    }
  }

  /** Why the cache folder cannot take another frame, or null when it has room (min_free_mb). */
  private async spaceShortage(): Promise<string | null> {
    await mkdir(this.settings.cache_dir, { recursive: true });
    const { bavail, bsize } = await statfs(this.settings.cache_dir);
    const freeMb = (bavail * bsize) / 1024 / 1024;
    if (freeMb >= this.settings.min_free_mb) return null;
    return `worker ${this.settings.name ?? os.hostname()} has only ${freeMb.toFixed(0)} MiB free in ${this.settings.cache_dir} (min_free_mb = ${this.settings.min_free_mb}); free space there`;
  }

  /** Takes no work until the disk has room again, checking now and then. */
  private waitForSpace(): void {
    if (this.waitingForSpace) return;
    this.waitingForSpace = true;
    const check = setInterval(() => {
      void this.spaceShortage().then((short) => {
        if (short || this.shutDown) return;
        clearInterval(check);
        this.waitingForSpace = false;
        this.log.info('disk has room again: taking work');
        this.askForWork();
      });
    }, SPACE_RECHECK_MS);
    check.unref();
  }

  /** One Blender per job: reused frame after frame, replaced when the job changes or Blender died. */
  private sessionFor(assignment: RenderAssignment): Promise<BlenderSession> {
    return this.withSession(assignment, assignment.overrides, async (open) => {
      if (!open.configured) {
        // Opened to probe the job, with no overrides: the scene it loaded renders the frames.
        await open.session.configure(assignment.overrides);
        open.configured = true;
      }
      return open.session;
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
      if (!this.open || this.open.jobId !== job.jobId || !this.open.session.alive) {
        await this.closeSession();
        const { blendFile, project } = await this.sceneFiles(job);
        const session = await this.blenders.open({ blendFile, allowScripts: job.allowScripts, overrides: overrides ?? {}, project });
        if (this.shutDown || (overrides && this.cancelled)) {
          // Stopped or cancelled while Blender was starting: nobody would ever use this one.
          session.kill();
          throw new Error(this.shutDown ? 'the worker is shutting down' : 'the frame was cancelled');
        }
        this.open = { jobId: job.jobId, session, configured: overrides !== null };
      }
      return use(this.open);
    });
    this.sessionLock = turn.then(() => undefined, () => undefined);
    return turn;
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
    if (this.current || this.open?.session.alive || this.draining || this.shutDown || this.schedule.asleepUntil) return;
    this.blenders.warmUp();
  }

  private async probe(request: ProbeRequest): Promise<void> {
    const short = await this.spaceShortage();
    if (short) {
      this.log.error({ jobId: request.jobId, reason: short }, 'disk full: handing the probe back');
      this.connection.send({ type: 'probe_failed', jobId: request.jobId, error: short, reason: 'disk_full' });
      this.waitForSpace();
      return;
    }
    try {
      const allowScripts = request.allowScripts && this.settings.allow_scripts;
      const scene = this.current
        ? await this.probeAside(request, allowScripts)
        : await this.withSession({ ...request, allowScripts }, null, (open) => open.session.probe());
      this.connection.send({ type: 'probe_result', jobId: request.jobId, scene });
    } catch (error) {
      this.connection.send({ type: 'probe_failed', jobId: request.jobId, error: (error as Error).message.slice(0, 4000), reason: 'scene' });
    }
  }

  /**
   * While a frame of another job renders, the probe runs in a Blender of its own, which
   * leaves that job's session alone. An idle worker probes in the session that then
   * renders the job's frames: one Blender start and one scene load for both.
   */
  private async probeAside(request: ProbeRequest, allowScripts: boolean): Promise<SceneInfo> {
    const { blendFile, project } = await this.sceneFiles(request);
    return probeScene({ blenderPath: this.settings.blender_path, blendFile, allowScripts, project, nice: this.settings.nice, logger: this.log });
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

/**
 * Where the peer server listens: a worker whose server is on this machine has its peers
 * here too (loopback only); any other listens on every interface, as its peers are
 * other machines.
 */
function peerHostFor(serverAddress: string): string {
  return /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(serverAddress) ? (serverAddress === '::1' ? '::1' : '127.0.0.1') : '0.0.0.0';
}
