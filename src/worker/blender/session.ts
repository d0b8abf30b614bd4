import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TileRegion } from '../../protocol/tiles.ts';
import { silentLogger, type Logger } from '../../util/log.ts';
import {
  findBlenderError,
  parseProgressLine,
  parseSessionEvent,
  type FrameProgress,
  type SessionEvent,
} from './progress.ts';

/** Scene settings to change once after loading; null or absent keeps the scene's own. */
export type SceneOverrides = {
  engine?: string | null;
  resolutionPercentage?: number | null;
  /** Cycles samples or EEVEE render samples, whichever engine is active. */
  samples?: number | null;
  /** Python name ("PNG", "OPEN_EXR") or `blender -F` name ("TGA", "JP2"). */
  fileFormat?: string | null;
};

export type BlenderSessionOptions = {
  blenderPath: string;
  blendFile: string;
  /** Render threads; 0 lets Blender use every core. */
  threads: number;
  /** Run Python embedded in the .blend (-y) instead of refusing it (-Y). */
  allowScripts: boolean;
  overrides: SceneOverrides;
  logger?: Logger;
  /** Loading a heavy scene can take a while; give up after this. */
  startTimeoutMs?: number;
};

export type RenderResult = {
  frame: number;
  /** The file Blender wrote, with "#" expanded and the extension added. */
  path: string;
  /** Wall time from sending the command to the file being saved. */
  renderMs: number;
  /** Blender's output lines (stdout and stderr) while rendering this frame. */
  log: string;
};

/** A failed frame: the message is Blender's own error text. */
export class BlenderRenderError extends Error {
  constructor(
    message: string,
    readonly frame: number,
    readonly log: string,
  ) {
    super(message);
    this.name = 'BlenderRenderError';
  }
}

const SESSION_SCRIPT = fileURLToPath(new URL('../../../blender/session.py', import.meta.url));
const TAIL_LINES = 40;
const CLOSE_GRACE_MS = 3000;
const DEFAULT_START_TIMEOUT_MS = 120_000;

type PendingFrame = {
  frame: number;
  startedAt: number;
  log: string[];
  onProgress?: (p: FrameProgress) => void;
  resolve: (result: RenderResult) => void;
  reject: (error: Error) => void;
};

/**
 * One Blender process that keeps a scene loaded and renders frames on command
 * (blender/session.py), avoiding Blender's start-up and scene load per frame.
 * Renders run one at a time, in the order they were requested.
 */
export class BlenderSession {
  private readonly tail: string[] = [];
  private pending: PendingFrame | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private ready = false;
  private closing = false;
  private exited = false;
  private exitDescription = '';
  private spawnError: Error | null = null;
  private readonly exitListeners: Array<() => void> = [];
  private readyListener: ((event: SessionEvent) => void) | null = null;

  private constructor(
    private readonly child: ChildProcess,
    private readonly blendFile: string,
    private readonly logger: Logger,
  ) {}

  static async start(opts: BlenderSessionOptions): Promise<BlenderSession> {
    if (!existsSync(SESSION_SCRIPT)) {
      throw new Error(`Blender session script is missing: ${SESSION_SCRIPT}`);
    }
    const args = [
      '-b',
      opts.blendFile,
      opts.allowScripts ? '-y' : '-Y',
      '-t',
      String(opts.threads),
      '--python',
      SESSION_SCRIPT,
      '--',
      '--overrides',
      JSON.stringify(opts.overrides),
    ];
    const logger = opts.logger ?? silentLogger;
    logger.debug({ blenderPath: opts.blenderPath, args }, 'starting Blender session');
    const child = spawn(opts.blenderPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const session = new BlenderSession(child, opts.blendFile, logger);
    await session.waitUntilReady(opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    logger.info({ blendFile: opts.blendFile, pid: child.pid }, 'Blender session ready');
    return session;
  }

  /** True while Blender runs and accepts renders (not closing, not dead). */
  get alive(): boolean {
    return this.ready && !this.exited && !this.closing;
  }

  /**
   * Render one frame to outputPattern ("/abs/dir/frame_####", "#" = frame
   * digits, extension added by Blender). Queued behind any render in progress.
   * With `tile`, only that rectangle is rendered and saved, cropped to exactly
   * its size; Blender rejects a tile cut for another frame size.
   */
  render(
    frame: number,
    outputPattern: string,
    onProgress?: (p: FrameProgress) => void,
    tile?: TileRegion,
  ): Promise<RenderResult> {
    const run = () => this.renderNow(frame, outputPattern, onProgress, tile);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Ask Blender to quit after the current frame; kill it if it lingers longer
   * than a short grace period (a long frame in progress is then rejected).
   * Renders still queued are rejected.
   */
  async close(): Promise<void> {
    if (this.exited) return;
    this.closing = true;
    const exited = this.waitForExit();
    this.send({ cmd: 'quit' });
    this.child.stdin?.end();
    const timer = setTimeout(() => this.kill(), CLOSE_GRACE_MS);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stop Blender at once; a frame in progress is rejected. */
  kill(): void {
    this.closing = true;
    if (!this.exited) this.child.kill('SIGKILL');
  }

  private renderNow(
    frame: number,
    outputPattern: string,
    onProgress?: (p: FrameProgress) => void,
    tile?: TileRegion,
  ): Promise<RenderResult> {
    if (!Number.isInteger(frame)) {
      return Promise.reject(new Error(`frame must be an integer, got ${frame}`));
    }
    if (!isAbsolute(outputPattern)) {
      // Blender would resolve it against its own cwd or the .blend's folder.
      return Promise.reject(new Error(`output pattern must be an absolute path: ${outputPattern}`));
    }
    if (!this.alive) {
      const why = this.exited ? `Blender exited (${this.exitDescription})` : 'the session is closing';
      return Promise.reject(new Error(`cannot render frame ${frame}: ${why}`));
    }
    return new Promise<RenderResult>((resolve, reject) => {
      this.pending = { frame, startedAt: performance.now(), log: [], onProgress, resolve, reject };
      // A whole frame sends no "tile" key at all, as before tiles existed.
      this.send({ cmd: 'render', frame, output: outputPattern, ...(tile ? { tile } : {}) });
    });
  }

  private waitUntilReady(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const fail = (reason: string) => {
        clearTimeout(timer);
        this.readyListener = null;
        this.kill();
        reject(new Error(`${reason}\n${this.formatTail()}`));
      };
      const timer = setTimeout(
        () => fail(`Blender did not load ${this.blendFile} within ${timeoutMs} ms`),
        timeoutMs,
      );
      this.readyListener = (event) => {
        if (event.event === 'ready') {
          clearTimeout(timer);
          this.readyListener = null;
          this.ready = true;
          resolve();
        } else if (event.event === 'fatal') {
          fail(`Blender session failed to start for ${this.blendFile}: ${event.message}`);
        }
      };
      this.exitListeners.push(() => {
        if (this.ready) return;
        if (this.spawnError) {
          fail(`Could not run Blender (${this.child.spawnfile}): ${this.spawnError.message}`);
          return;
        }
        const error = findBlenderError(this.tail);
        fail(
          `Blender exited (${this.exitDescription}) before loading ${this.blendFile}` +
            (error ? `: ${error}` : ''),
        );
      });
      this.attachStreams();
    });
  }

  private attachStreams(): void {
    const { child } = this;
    // Writing after Blender died raises EPIPE; the 'close' handler reports the death.
    child.stdin?.on('error', (error) => this.logger.debug({ err: error }, 'Blender stdin error'));
    createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    createInterface({ input: child.stderr! }).on('line', (line) => this.onLine(line));
    child.on('error', (error) => {
      // spawn failure (e.g. ENOENT): no 'close' may follow a failed spawn.
      this.spawnError = error;
      this.onExit(`could not run ${child.spawnfile}: ${error.message}`);
    });
    // 'close' waits for stdout/stderr to end, so every line is seen first.
    child.on('close', (code, signal) => {
      this.onExit(signal ? `signal ${signal}` : `exit code ${code}`);
    });
  }

  private onLine(line: string): void {
    const event = parseSessionEvent(line);
    if (event) {
      this.onEvent(event);
      return;
    }
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    this.logger.trace({ line }, 'blender');
    const pending = this.pending;
    if (!pending) return;
    pending.log.push(line);
    const progress = parseProgressLine(line);
    if (!progress || !pending.onProgress) return;
    try {
      pending.onProgress(progress);
    } catch (error) {
      // A faulty callback must not take down the stream reader.
      this.logger.warn({ err: error }, 'onProgress callback threw');
    }
  }

  private onEvent(event: SessionEvent): void {
    if (this.readyListener) {
      this.readyListener(event);
      return;
    }
    const pending = this.pending;
    if (event.event === 'saved' && pending && event.frame === pending.frame) {
      this.pending = null;
      pending.resolve({
        frame: pending.frame,
        path: event.path,
        renderMs: Math.round(performance.now() - pending.startedAt),
        log: pending.log.join('\n'),
      });
    } else if (event.event === 'error' && pending && (event.frame ?? pending.frame) === pending.frame) {
      this.pending = null;
      pending.reject(new BlenderRenderError(event.message, pending.frame, pending.log.join('\n')));
    } else {
      this.logger.warn({ event }, 'unexpected event from Blender session');
    }
  }

  private onExit(description: string): void {
    if (this.exited) return;
    this.exited = true;
    this.exitDescription = description;
    this.logger.info({ blendFile: this.blendFile, exit: description }, 'Blender session ended');
    const pending = this.pending;
    if (pending) {
      this.pending = null;
      const error = findBlenderError(pending.log);
      pending.reject(
        new BlenderRenderError(
          `Blender exited (${description}) while rendering frame ${pending.frame}` +
            (error ? `: ${error}` : ''),
          pending.frame,
          pending.log.join('\n'),
        ),
      );
    }
    for (const listener of this.exitListeners.splice(0)) listener();
  }

  private waitForExit(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => this.exitListeners.push(resolve));
  }

  private send(command: object): void {
    const stdin = this.child.stdin;
    if (stdin && !stdin.destroyed && stdin.writable) stdin.write(JSON.stringify(command) + '\n');
  }

  private formatTail(): string {
    return this.tail.length > 0
      ? `--- last Blender output ---\n${this.tail.join('\n')}`
      : '(Blender printed nothing)';
  }
}
