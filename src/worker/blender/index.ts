// The public surface of Archenland's Blender integration.
export {
  BlenderSession,
  BlenderRenderError,
  type BlenderSessionOptions,
  type RenderResult,
  type SceneOverrides,
} from './session.ts';
export { probeScene, type ProbeOptions } from './probe.ts';
export {
  parseProgressLine,
  parseSessionEvent,
  SESSION_EVENT_PREFIX,
  type FrameProgress,
  type SessionEvent,
} from './progress.ts';
