// The public surface of Archenland's Blender integration.
export {
  BlenderSession,
  BlenderRenderError,
  type BlenderLaunchOptions,
  type BlenderSessionOptions,
  type SceneToOpen,
  type ProjectLayout,
  type RenderResult,
  type SceneOverrides,
} from './session.ts';
export { BlenderLauncher, type BlenderLauncherOptions } from './launcher.ts';
export { probeScene, type ProbeOptions } from './probe.ts';
export {
  parseProgressLine,
  parseSessionEvent,
  type FrameProgress,
  type SessionEvent,
} from './progress.ts';
export { checkSavedFile } from './saved-file.ts';
export { checkRenderDevice, RenderDeviceError } from './devices.ts';
