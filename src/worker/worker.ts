import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { WorkerSettings } from '../config/index.ts';
import { PROTOCOL_VERSION, type ProbeRequest, type RenderAssignment, type ServerToWorker } from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import { BlenderSession, probeScene } from './blender/index.ts';
import { BlendCache } from './blend-cache.ts';
import { ServerConnection } from './connection.ts';
import { uploadFrame } from './frame-uploader.ts';

/** Progress messages per frame are capped at this rate; Cycles prints a line per sample. */
const PROGRESS_INTERVAL_MS = 250;

interface OpenSession {
  jobId: string;
  session: BlenderSession;
}

/**
 * A render node: keeps a connection to the server, takes one frame at a time, renders it
 * in a Blender session kept open for the whole job, and uploads each frame as soon as
 * Blender has saved it (the next frame starts meanwhile).
 */
export class RenderWorker {
  private readonly connection: ServerConnection;
  private readonly cache: BlendCache;
  private readonly serverUrl: string;
  private workerId: string | undefined;
  private blenderVersion: string | null = null;
  private open: OpenSession | null = null;
  private current: RenderAssignment | null = null;
  private cancelled = false;
  private uploads: Promise<void> = Promise.resolve();
  private stopped: Promise<string>;
  private stop!: (reason: string) => void;

  constructor(
    private readonly settings: WorkerSettings & { token: string },
    private readonly log: Logger,
  ) {
    const host = settings.address.includes(':') ? `[${settings.address}]` : settings.address;
    this.serverUrl = `http://${host}:${settings.web_port}`;
    this.cache = new BlendCache(path.join(settings.cache_dir, 'blends'), this.serverUrl, settings.token);
    this.workerId = readWorkerId(settings.cache_dir);
    this.stopped = new Promise((resolve) => (this.stop = resolve));
    this.connection = new ServerConnection(
      `ws://${host}:${settings.port}`,
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
        }),
        onOpen: () => this.log.info({ server: this.serverUrl }, 'connected to the server'),
        onClose: () => this.log.warn('connection to the server closed'),
        onMessage: (message) => this.handle(message),
        onFatal: (reason) => {
          this.log.error({ reason }, 'the server refused this worker');
          this.stop(reason);
        },
      },
      log,
    );
  }

  /** Checks Blender, connects, and resolves only when the worker stops (with the reason). */
  async run(): Promise<string> {
    this.blenderVersion = await readBlenderVersion(this.settings.blender_path);
    this.log.info({ blender: this.blenderVersion, threads: this.settings.threads }, 'worker starting');
    this.connection.start();
    return this.stopped;
  }

  async shutdown(): Promise<void> {
    this.connection.stop();
    this.open?.session.kill();
    this.open = null;
    this.stop('shut down');
  }

  private handle(message: ServerToWorker): void {
    switch (message.type) {
      case 'welcome':
        if (this.workerId !== message.workerId) {
          this.workerId = message.workerId;
          writeWorkerId(this.settings.cache_dir, message.workerId);
        }
        // A frame still rendering from before a reconnect finishes first, then asks for more.
        if (!this.current) this.connection.send({ type: 'ready' });
        return;
      case 'render':
        void this.render(message);
        return;
      case 'probe':
        void this.probe(message);
        return;
      case 'cancel':
        this.cancel(message.jobId, message.frame);
        return;
      case 'error':
        this.log.warn({ message: message.message }, 'the server reported an error');
        return;
    }
  }

  private async render(assignment: RenderAssignment): Promise<void> {
    const { jobId, frame } = assignment;
    this.current = assignment;
    this.cancelled = false;
    const log = this.log.child({ jobId, frame });
    let lastProgress = 0;
    try {
      const session = await this.sessionFor(assignment);
      const outputPattern = path.join(this.settings.cache_dir, 'output', jobId, 'frame_####');
      const result = await session.render(frame, outputPattern, (progress) => {
        const now = Date.now();
        if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
        lastProgress = now;
        this.connection.send({ type: 'progress', jobId, frame, percent: progress.percent });
      });
      log.info({ ms: Math.round(result.renderMs) }, 'frame rendered');
      this.connection.send({ type: 'frame_log', jobId, frame, log: result.log.slice(-60_000) });
      this.queueUpload({ jobId, frame, file: result.path, renderMs: result.renderMs });
    } catch (error) {
      if (this.cancelled) {
        log.info('render cancelled');
      } else {
        const message = (error as Error).message;
        log.warn({ error: message }, 'frame failed');
        this.connection.send({
          type: 'frame_failed',
          jobId,
          frame,
          error: message.slice(0, 4000),
          log: String((error as { log?: string }).log ?? '').slice(-60_000),
        });
      }
    } finally {
      this.current = null;
      this.connection.send({ type: 'ready' });
    }
  }

  /** One Blender per job: reused frame after frame, replaced when the job changes or Blender died. */
  private async sessionFor(assignment: RenderAssignment): Promise<BlenderSession> {
    if (this.open && this.open.jobId === assignment.jobId && this.open.session.alive) return this.open.session;
    await this.closeSession();
    const blendFile = await this.cache.get(assignment.blend);
    const session = await BlenderSession.start({
      blenderPath: this.settings.blender_path,
      blendFile,
      threads: this.settings.threads,
      allowScripts: assignment.allowScripts,
      overrides: assignment.overrides,
      logger: this.log,
    });
    this.open = { jobId: assignment.jobId, session };
    return session;
  }

  private async closeSession(): Promise<void> {
    const open = this.open;
    this.open = null;
    if (open) await open.session.close();
  }

  private queueUpload(upload: { jobId: string; frame: number; file: string; renderMs: number }): void {
    this.uploads = this.uploads.then(async () => {
      const log = this.log.child({ jobId: upload.jobId, frame: upload.frame });
      for (let attempt = 1; ; attempt++) {
        try {
          const answer = await uploadFrame(this.serverUrl, this.settings.token, this.workerId!, upload);
          log.info({ accepted: answer.accepted, reason: answer.reason }, 'frame uploaded');
          await rm(upload.file, { force: true });
          return;
        } catch (error) {
          const status = (error as { statusCode?: number }).statusCode;
          const permanent = status !== undefined && status >= 400 && status < 500;
          if (permanent || attempt >= 5) {
            log.error({ err: error }, 'could not upload the frame');
            this.connection.send({ type: 'frame_failed', jobId: upload.jobId, frame: upload.frame, error: (error as Error).message, log: '' });
            await rm(upload.file, { force: true });
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
        }
      }
    });
  }

  private async probe(request: ProbeRequest): Promise<void> {
    try {
      const blendFile = await this.cache.get(request.blend);
      const scene = await probeScene({ blenderPath: this.settings.blender_path, blendFile, allowScripts: request.allowScripts });
      this.connection.send({ type: 'probe_result', jobId: request.jobId, scene });
    } catch (error) {
      this.connection.send({ type: 'probe_failed', jobId: request.jobId, error: (error as Error).message.slice(0, 4000) });
    }
  }

  /** The server took the frame back or the job ended: stop rendering it and drop the session. */
  private cancel(jobId: string, frame?: number): void {
    const renderingIt = this.current?.jobId === jobId && (frame === undefined || this.current.frame === frame);
    if (renderingIt) {
      this.cancelled = true;
      this.open?.session.kill();
      this.open = null;
    } else if (frame === undefined && this.open?.jobId === jobId) {
      void this.closeSession();
    }
  }
}

function readWorkerId(cacheDir: string): string | undefined {
  const file = path.join(cacheDir, 'worker-id');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

function writeWorkerId(cacheDir: string, id: string): void {
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(path.join(cacheDir, 'worker-id'), `${id}\n`);
}

export async function readBlenderVersion(blenderPath: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(blenderPath, ['--version'], { timeout: 30_000 });
    return /Blender\s+([\d.]+)/.exec(stdout)?.[1] ?? stdout.split('\n')[0]!.trim();
  } catch (error) {
    throw new Error(`cannot run Blender at "${blenderPath}" (set blender_path in settings.conf): ${(error as Error).message}`);
  }
}

