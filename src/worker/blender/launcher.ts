import { silentLogger, type Logger } from '../../util/log.ts';
import { BlenderSession, type BlenderLaunchOptions, type SceneToOpen } from './session.ts';

export type BlenderLauncherOptions = BlenderLaunchOptions & {
  /** Keep one Blender started, with no scene, while the worker is idle (setting prewarm_blender). */
  prewarm: boolean;
};

/**
 * Starts the Blender sessions a worker renders jobs in. With pre-warming on it keeps
 * one Blender already started (no scene, waiting on stdin) while the worker is idle,
 * so a job's first frame waits only for its scene to load, not for Blender's
 * start-up (about 1.5–2 s).
 *
 * A pre-warmed Blender is handed out once: after it has loaded a job's scene, that
 * scene's scripts and handlers could leak into another job, so it ends with the job's
 * session and the worker asks for a fresh one (warmUp) when it is idle again.
 */
export class BlenderLauncher {
  private warm: BlenderSession | null = null;
  private stopped = false;
  private readonly logger: Logger;

  constructor(private readonly opts: BlenderLauncherOptions) {
    this.logger = opts.logger ?? silentLogger;
  }

  /** Starts a pre-warmed Blender in the background, unless one is already starting or waiting. */
  warmUp(): void {
    if (!this.opts.prewarm || this.stopped || this.warm?.awaitingScene) return;
    this.warm?.kill(); // one that died or timed out: make sure it is gone before replacing it
    try {
      this.warm = BlenderSession.prewarm(this.opts);
      this.logger.info({ pid: this.warm.pid }, 'pre-warming Blender for the next job');
    } catch (error) {
      this.warm = null;
      // Jobs still run: open() starts Blender cold and reports the same problem to the server.
      this.logger.warn({ error: (error as Error).message }, 'could not pre-warm Blender');
    }
  }

  /**
   * A session with the scene loaded: the pre-warmed Blender when it is usable, else a
   * fresh one (cold start). Another installation than the default (`blenderPath`, for a
   * job that renders with another version) always starts cold; the warm one waits on.
   */
  async open(scene: SceneToOpen, blenderPath = this.opts.blenderPath): Promise<BlenderSession> {
    if (blenderPath !== this.opts.blenderPath) return BlenderSession.start({ ...this.opts, blenderPath, ...scene });
    const warm = await this.takeWarm();
    if (!warm) return BlenderSession.start({ ...this.opts, ...scene });
    this.logger.info({ blendFile: scene.blendFile, pid: warm.pid }, 'loading the scene into the pre-warmed Blender');
    await warm.open(scene);
    return warm;
  }

  /** A pre-warmed Blender is up and waiting for a scene (benchmarks wait for this, so its start-up overlaps nothing they time). */
  get warmAndWaiting(): boolean {
    return this.warm?.waitingForScene ?? false;
  }

  /** Ends the pre-warmed Blender while the worker sleeps, giving its memory back; warmUp starts another. */
  coolDown(): void {
    this.warm?.kill();
    this.warm = null;
  }

  /** Kills the pre-warmed Blender: it must not outlive the worker. */
  stop(): void {
    this.stopped = true;
    this.warm?.kill();
    this.warm = null;
  }

  /**
   * The pre-warmed Blender once it waits for a scene, or null when there is none or it
   * is unusable (logged, and killed). One still starting is waited for: it began before
   * a cold start would, so it is ready sooner.
   */
  private async takeWarm(): Promise<BlenderSession | null> {
    const warm = this.warm;
    this.warm = null; // handed out at most once, whatever happens next
    if (!warm) return null;
    try {
      await warm.untilWarm();
      return warm;
    } catch (error) {
      warm.kill();
      this.logger.warn(
        { pid: warm.pid, reason: firstLine((error as Error).message) },
        'the pre-warmed Blender is not usable; starting Blender cold',
      );
      return null;
    }
  }
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]!;
}
