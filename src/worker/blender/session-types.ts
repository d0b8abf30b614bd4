import type { ProjectLayout, RenderDevice, SessionOverrides } from '../../protocol/index.ts';
import type { Logger } from '../../util/log.ts';

/** The shapes a Blender session (session.ts) is started, opened and answered with. */

export type { ProjectLayout };

/** Scene settings to change once after loading (src/protocol/blender-session.ts). */
export type SceneOverrides = SessionOverrides;

/** How Blender is run: the same for a cold start and a pre-warmed one. */
export type BlenderLaunchOptions = {
  blenderPath: string;
  /** Render threads; 0 lets Blender use every core. */
  threads: number;
  /** CPU niceness (0..19) Blender runs at, its I/O priority following; 0 or absent leaves both as they are. */
  nice?: number;
  /** Where Cycles renders (settings render_device, gpus); absent: the CPU. */
  device?: RenderDevice;
  logger?: Logger;
  /** Start-up, and loading a heavy scene, can take a while; give up on each after this. */
  startTimeoutMs?: number;
};

/** The scene a session renders, and how it is loaded. */
export type SceneToOpen = {
  blendFile: string;
  /** Run Python embedded in the .blend (-y) instead of refusing it (-Y). */
  allowScripts: boolean;
  overrides: SceneOverrides;
  /** The job's project laid out in `tree`: absolute paths under the submitter's `root` are remapped into it. */
  project?: ProjectLayout | null;
};

export type BlenderSessionOptions = BlenderLaunchOptions & SceneToOpen;

export type RenderResult = {
  frame: number;
  /** The file Blender wrote, with "#" expanded and the extension added; checked to be exactly that file. */
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
