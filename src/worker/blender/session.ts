import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { sessionCommandSchema, type RenderDevice, type SceneInfo, type SessionCommand, type TileRegion, type UsedDevice } from '../../protocol/index.ts';
import { silentLogger, type Logger } from '../../util/log.ts';
import {
  EVENT_FD,
  EVENT_NONCE_VARIABLE,
  EventOrder,
  findBlenderError,
  newEventNonce,
  parseProgressLine,
  type FrameProgress,
  type SessionEvent,
} from './progress.ts';
import { lowerPriority } from './priority.ts';
import { checkSavedFile, outputPatternProblem } from './saved-file.ts';
import { BlenderRenderError, type BlenderLaunchOptions, type BlenderSessionOptions, type RenderResult, type SceneOverrides, type SceneToOpen } from './session-types.ts';

export { BlenderRenderError, type BlenderLaunchOptions, type BlenderSessionOptions, type ProjectLayout, type RenderResult, type SceneOverrides, type SceneToOpen } from './session-types.ts';

const SESSION_SCRIPT = fileURLToPath(new URL('../../../blender/session.py', import.meta.url));
/** Tells session.py to start with no scene and wait for an "open" command. */
const PREWARMED_FLAG = '--prewarmed';
const TAIL_LINES = 40;
const CLOSE_GRACE_MS = 3000;
const DEFAULT_START_TIMEOUT_MS = 120_000;

type PendingFrame = {
  frame: number;
  outputPattern: string;
  startedAt: number;
  log: string[];
  onProgress?: (p: FrameProgress) => void;
  resolve: (result: RenderResult) => void;
  reject: (error: Error) => void;
};

/**
 * starting: Blender is launching (and, for a cold start, loading the scene);
 * waiting: a pre-warmed Blender is up with no scene, waiting for open();
 * loading: a pre-warmed Blender is loading the scene open() named;
 * ready: the scene is loaded and frames can be rendered.
 */
type Phase = 'starting' | 'waiting' | 'loading' | 'ready';

/**
 * One Blender process that keeps a scene loaded and renders frames on command
 * (blender/session.py), avoiding Blender's start-up and scene load per frame.
 * Renders run one at a time, in the order they were requested.
 *
 * start() launches Blender with the scene (cold start). prewarm() launches it with
 * none, so start-up can happen before there is work; open() then loads the scene,
 * once: a session never switches to another scene.
 */
export class BlenderSession {
  private readonly tail: string[] = [];
  private pending: PendingFrame | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private phase: Phase = 'starting';
  private closing = false;
  private exited = false;
  private exitDescription = '';
  private spawnError: Error | null = null;
  private readonly exitListeners: Array<() => void> = [];
  private startListener: ((event: SessionEvent) => void) | null = null;
  /** The render device asked for (sent with `open`), and the one in use, read back from Blender once ready. */
  private device: RenderDevice | undefined;
  usedDevice: UsedDevice | null = null;
  /** A probe or configure command waiting for its answer (one at a time, in the queue with renders). */
  private asking: { accept: (event: SessionEvent) => boolean; reject: (error: Error) => void } | null = null;
  private eventOrder: EventOrder | null = null;
  /** Set for a pre-warmed session: settles when it waits for a scene, or failed to get there. */
  private warmedUp: Promise<void> | null = null;

  private constructor(
    private readonly child: ChildProcess,
    /** Proves an event or a fence line came from session.py, not from the scene. */
    private readonly nonce: string,
    /** null until a pre-warmed session is told which scene to open. */
    private blendFile: string | null,
    private readonly logger: Logger,
    private readonly startTimeoutMs: number,
    private readonly nice: number,
  ) {
    this.attachStreams();
    lowerPriority(child.pid, nice, logger);
  }

  /** Launch Blender with the scene and wait until it can render (cold start). */
  static async start(opts: BlenderSessionOptions): Promise<BlenderSession> {
    const session = BlenderSession.launch(
      opts,
      [opts.blendFile, opts.allowScripts ? '-y' : '-Y'],
      [
        '--overrides',
        JSON.stringify(opts.overrides),
        ...(opts.project ? ['--project', JSON.stringify(opts.project)] : []),
        ...(opts.device ? ['--device', JSON.stringify(opts.device)] : []),
      ],
      opts.blendFile,
    );
    await session.waitFor('ready');
    session.lowerPriorityAgain();
    session.logger.info({ blendFile: opts.blendFile, pid: session.pid }, 'Blender session ready');
    return session;
  }

  /**
   * Launch Blender with no scene, to be given one later with open(). Returns at once;
   * start-up goes on in the background (see untilWarm()).
   */
  static prewarm(opts: BlenderLaunchOptions): BlenderSession {
    // -Y: nothing but Blender's own start-up is loaded yet; open() allows or refuses
    // the scene's scripts, as -y / -Y would on a cold start.
    const session = BlenderSession.launch(opts, ['-Y'], [PREWARMED_FLAG], null);
    const launchedAt = performance.now();
    session.warmedUp = session.waitFor('waiting');
    session.warmedUp.then(
      () => {
        session.lowerPriorityAgain();
        session.logger.info({ pid: session.pid, ms: Math.round(performance.now() - launchedAt) }, 'pre-warmed Blender waiting for a scene');
      },
      // Not reported here: whoever takes the session hears the reason from untilWarm().
      () => undefined,
    );
    return session;
  }

  private static launch(
    opts: BlenderLaunchOptions,
    sceneArgs: string[],
    scriptArgs: string[],
    blendFile: string | null,
  ): BlenderSession {
    if (!existsSync(SESSION_SCRIPT)) {
      throw new Error(`Blender session script is missing: ${SESSION_SCRIPT}`);
    }
    const args = ['-b', ...sceneArgs, '-t', String(opts.threads), '--python', SESSION_SCRIPT, '--', ...scriptArgs];
    const logger = opts.logger ?? silentLogger;
    logger.debug({ blenderPath: opts.blenderPath, args }, 'starting Blender session');
    const nonce = newEventNonce();
    // stdio[3] (EVENT_FD) is the event pipe: the scene can print on stdout and stderr, not there.
    const child = spawn(opts.blenderPath, args, {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, [EVENT_NONCE_VARIABLE]: nonce },
    });
    const session = new BlenderSession(child, nonce, blendFile, logger, opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, opts.nice ?? 0);
    session.device = opts.device;
    return session;
  }

  /**
   * Resolves once a pre-warmed Blender waits for its scene; rejects with the reason
   * when it failed to start or has exited since.
   */
  async untilWarm(): Promise<void> {
    if (!this.warmedUp) throw new Error('not a pre-warmed Blender session');
    await this.warmedUp;
    if (this.exited) throw new Error(`pre-warmed Blender exited (${this.exitDescription}) while waiting for a scene`);
  }

  /**
   * Load the scene into a pre-warmed Blender; from then on the session renders as
   * one from start() would. Fails the way start() does for a scene Blender cannot load.
   */
  async open(scene: SceneToOpen): Promise<void> {
    await this.untilWarm();
    if (this.phase !== 'waiting') throw new Error(`this Blender session already has a scene (${this.blendFile})`);
    this.blendFile = scene.blendFile;
    this.phase = 'loading';
    const loaded = this.waitFor('ready');
    this.send({
      cmd: 'open',
      file: scene.blendFile,
      allowScripts: scene.allowScripts,
      overrides: scene.overrides,
      project: scene.project ?? null,
      ...(this.device ? { device: this.device } : {}),
    });
    await loaded;
    this.lowerPriorityAgain();
    this.logger.info({ blendFile: scene.blendFile, pid: this.pid, prewarmed: true }, 'Blender session ready');
  }

  /** Threads Blender started while loading get the session's niceness too (see priority.ts). */
  private lowerPriorityAgain(): void {
    if (!this.exited) lowerPriority(this.child.pid, this.nice, this.logger);
  }

  /** True while Blender runs and accepts renders (not closing, not dead). */
  get alive(): boolean {
    return this.phase === 'ready' && !this.exited && !this.closing;
  }

  /** True for a pre-warmed Blender that runs and has no scene yet (still starting, or waiting for open()). */
  get awaitingScene(): boolean {
    return this.warmedUp !== null && (this.phase === 'starting' || this.phase === 'waiting') && !this.exited && !this.closing;
  }

  /** A pre-warmed Blender that has started and waits for open(). */
  get waitingForScene(): boolean {
    return this.phase === 'waiting' && !this.exited && !this.closing;
  }

  get pid(): number | undefined {
    return this.child.pid;
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
    return this.inQueue(() => this.renderNow(frame, outputPattern, onProgress, tile));
  }

  /** Runs `work` after everything asked of this session before it, failed or not. */
  private inQueue<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Sends a command and resolves on the event `accept` takes; an error event, an exit or a timeout rejects. */
  private ask(command: SessionCommand, accept: (event: SessionEvent) => boolean): Promise<void> {
    if (!this.alive) return Promise.reject(new Error(`cannot ${command.cmd}: ${this.exited ? `Blender exited (${this.exitDescription})` : 'no scene is loaded'}`));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`Blender did not answer "${command.cmd}" within ${this.startTimeoutMs} ms\n${this.formatTail()}`)), this.startTimeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        this.asking = null;
        reject(error);
      };
      this.asking = {
        accept: (event) => {
          if (!accept(event)) return false;
          clearTimeout(timer);
          this.asking = null;
          resolve();
          return true;
        },
        reject: fail,
      };
      this.send(command);
    });
  }

  /**
   * The loaded scene's settings and the preflight's findings, read in this session: the
   * job's probe costs no Blender start and no second load of its scene.
   */
  probe(): Promise<SceneInfo> {
    return this.inQueue(async () => {
      let info: SceneInfo | undefined;
      await this.ask({ cmd: 'probe' }, (event) => {
        if (event.event !== 'probe') return false;
        const { event: _, ...fields } = event;
        info = fields;
        return true;
      });
      return info!;
    });
  }

  /** Applies a job's overrides to a session opened (with none) to probe the job. */
  configure(overrides: SceneOverrides): Promise<void> {
    return this.inQueue(() => this.ask({ cmd: 'configure', overrides }, (event) => event.event === 'ready'));
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
    const patternProblem = outputPatternProblem(outputPattern);
    if (patternProblem) return Promise.reject(new Error(patternProblem));
    if (!this.alive) {
      const why = this.exited
        ? `Blender exited (${this.exitDescription})`
        : this.closing
          ? 'the session is closing'
          : 'no scene is loaded yet';
      return Promise.reject(new Error(`cannot render frame ${frame}: ${why}`));
    }
    return new Promise<RenderResult>((resolve, reject) => {
      this.pending = { frame, outputPattern, startedAt: performance.now(), log: [], onProgress, resolve, reject };
      // A whole frame sends no "tile" key at all, as before tiles existed.
      this.send({ cmd: 'render', frame, output: outputPattern, ...(tile ? { tile } : {}) });
    });
  }

  /**
   * Resolves when session.py reports `expected` ("waiting" for a pre-warmed start,
   * "ready" once the scene is loaded); on a fatal event, an exit or the time limit,
   * kills Blender and rejects with the reason and Blender's last output.
   */
  private waitFor(expected: 'waiting' | 'ready'): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = () => {
        settled = true;
        clearTimeout(timer);
        this.startListener = null;
      };
      const fail = (reason: string) => {
        if (settled) return;
        settle();
        this.kill();
        reject(new Error(`${reason}\n${this.formatTail()}`));
      };
      const timer = setTimeout(
        () => fail(`Blender did not ${this.blendFile ? `load ${this.blendFile}` : 'start'} within ${this.startTimeoutMs} ms`),
        this.startTimeoutMs,
      );
      this.startListener = (event) => {
        if (event.event === expected) {
          if (event.event === 'ready' && event.device) this.usedDevice = event.device;
          settle();
          this.phase = expected;
          resolve();
        } else if (event.event === 'fatal') {
          fail(`Blender session failed to start${this.blendFile ? ` for ${this.blendFile}` : ''}: ${event.message}`);
        }
      };
      this.exitListeners.push(() => fail(this.describeEarlyExit()));
    });
  }

  private describeEarlyExit(): string {
    if (this.spawnError) return `Could not run Blender (${this.child.spawnfile}): ${this.spawnError.message}`;
    const error = findBlenderError(this.tail);
    const before = this.blendFile ? `before loading ${this.blendFile}` : 'while starting';
    return `Blender exited (${this.exitDescription}) ${before}` + (error ? `: ${error}` : '');
  }

  private attachStreams(): void {
    const { child } = this;
    // Writing after Blender died raises EPIPE; the 'close' handler reports the death.
    child.stdin?.on('error', (error) => this.logger.debug({ err: error }, 'Blender stdin error'));
    const order = new EventOrder(this.nonce, {
      line: (_stream, line) => this.onLine(line),
      event: (event) => this.onEvent(event),
      rejected: (line, reason) => this.logger.warn({ line, reason }, 'ignored a line on the Blender event pipe'),
    });
    this.eventOrder = order;
    createInterface({ input: child.stdout! }).on('line', (line) => order.addOutputLine('stdout', line));
    createInterface({ input: child.stderr! }).on('line', (line) => order.addOutputLine('stderr', line));
    const events = child.stdio[EVENT_FD] as Readable;
    createInterface({ input: events }).on('line', (line) => order.addEventLine(line));
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

  /** A line of Blender's output: text the scene may control, never an event. */
  private onLine(line: string): void {
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
    if (this.startListener) {
      this.startListener(event);
      return;
    }
    if (this.asking) {
      if (event.event === 'error') this.asking.reject(new Error(event.message));
      else if (!this.asking.accept(event)) this.logger.warn({ event }, 'unexpected event from Blender session');
      return;
    }
    const pending = this.pending;
    if (event.event === 'saved' && pending && event.frame === pending.frame) {
      this.pending = null;
      this.settleSaved(pending, event.path);
    } else if (event.event === 'error' && pending && (event.frame ?? pending.frame) === pending.frame) {
      this.pending = null;
      pending.reject(new BlenderRenderError(event.message, pending.frame, pending.log.join('\n')));
    } else {
      this.logger.warn({ event }, 'unexpected event from Blender session');
    }
  }

  /** Resolves the frame only when the file Blender names is exactly the one it must have written. */
  private settleSaved(pending: PendingFrame, path: string): void {
    const renderMs = Math.round(performance.now() - pending.startedAt);
    const log = pending.log.join('\n');
    checkSavedFile(pending.outputPattern, pending.frame, path).then(
      () => pending.resolve({ frame: pending.frame, path, renderMs, log }),
      (error: Error) => {
        this.logger.error({ frame: pending.frame, path, reason: error.message }, 'refused the file Blender reported');
        pending.reject(new BlenderRenderError(error.message, pending.frame, log));
      },
    );
  }

  private onExit(description: string): void {
    if (this.exited) return;
    // Lines held behind a fence whose event never came still belong in the log.
    this.eventOrder?.flush();
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
    this.asking?.reject(new Error(`Blender exited (${description})${findBlenderError(this.tail) ? `: ${findBlenderError(this.tail)}` : ''}`));
    for (const listener of this.exitListeners.splice(0)) listener();
  }

  private waitForExit(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => this.exitListeners.push(resolve));
  }

  /** Writes a command on Blender's stdin; checked first against the schema session.py checks it with. */
  private send(command: SessionCommand): void {
    const checked = sessionCommandSchema.parse(command);
    const stdin = this.child.stdin;
    if (stdin && !stdin.destroyed && stdin.writable) stdin.write(JSON.stringify(checked) + '\n');
  }

  private formatTail(): string {
    return this.tail.length > 0
      ? `--- last Blender output ---\n${this.tail.join('\n')}`
      : '(Blender printed nothing)';
  }
}
