import { z } from 'zod';
import { sceneInfoSchema } from './scene.ts';
import { tileRegionSchema } from './tiles.ts';

/**
 * What the worker and its Blender session (blender/session.py) say to each other: commands
 * as JSON lines on Blender's stdin, events as JSON lines on its event pipe. Declared once
 * here; blender/farm_session/session_protocol.json is generated from these schemas
 * (scripts/session-protocol.ts, checked by a test) and session.py validates against it, so
 * both sides check the same shapes.
 */

/** Where a job's project is on the worker, and the submitting machine's folder it came from. */
export const projectLayoutSchema = z.object({ root: z.string().min(1), tree: z.string().min(1) });
export type ProjectLayout = z.infer<typeof projectLayoutSchema>;

/**
 * Scene settings a session changes once after loading; null or absent keeps the scene's
 * own. Wider than a job's overrides (src/protocol/scene.ts): any engine or format name
 * Blender knows ("TGA", "JP2" as `blender -F` spells them) is left to Blender to judge.
 */
export const sessionOverridesSchema = z.object({
  engine: z.string().min(1).nullable().optional(),
  resolutionPercentage: z.number().int().min(1).max(1000).nullable().optional(),
  /** Cycles samples or EEVEE render samples, whichever engine is active. */
  samples: z.number().int().min(1).max(1_000_000).nullable().optional(),
  fileFormat: z.string().min(1).nullable().optional(),
  /** false: Cycles' denoising off. */
  denoising: z.boolean().nullable().optional(),
});
export type SessionOverrides = z.infer<typeof sessionOverridesSchema>;

/** Where Cycles renders: the CPU, or the GPUs of one backend (worker settings render_device, gpus). */
export const renderBackends = ['CPU', 'CUDA', 'OPTIX', 'HIP', 'ONEAPI', 'METAL'] as const;
export const renderDeviceSchema = z.object({
  type: z.enum(renderBackends),
  /** Indices among the backend's devices, in Blender's order; empty: all of them. */
  gpus: z.array(z.number().int().min(0).max(63)).max(64),
});
export type RenderDevice = z.infer<typeof renderDeviceSchema>;

/** The device a session renders on, read back from Blender after setting it. */
export const usedDeviceSchema = z.object({ type: z.string(), devices: z.array(z.string()), computeDeviceType: z.string() });
export type UsedDevice = z.infer<typeof usedDeviceSchema>;

export const sessionCommandSchema = z.discriminatedUnion('cmd', [
  /** The first command of a pre-warmed session: load this scene, as `blender -b FILE` would. */
  z.object({
    cmd: z.literal('open'),
    file: z.string().min(1),
    allowScripts: z.boolean(),
    overrides: sessionOverridesSchema,
    project: projectLayoutSchema.nullable(),
    /** Absent: the CPU. */
    device: renderDeviceSchema.optional(),
  }),
  /** Render one frame (or one tile of it) to `output`, a path with "#" for the frame number. */
  z.object({ cmd: z.literal('render'), frame: z.number().int(), output: z.string().min(1), tile: tileRegionSchema.optional() }),
  /** Read the loaded scene's settings and run the preflight: the probe, in the Blender that renders the job next. */
  z.object({ cmd: z.literal('probe') }),
  /** Apply a job's overrides to a session opened (with none) to probe it; answered by "ready". */
  z.object({ cmd: z.literal('configure'), overrides: sessionOverridesSchema }),
  z.object({ cmd: z.literal('quit') }),
]);
export type SessionCommand = z.infer<typeof sessionCommandSchema>;

export const sessionEventSchema = z.discriminatedUnion('event', [
  /** A pre-warmed session is up, with no scene yet, waiting for "open". */
  z.object({ event: z.literal('waiting'), blenderVersion: z.string() }),
  z.object({ event: z.literal('ready'), blenderVersion: z.string(), sceneName: z.string(), device: usedDeviceSchema.optional() }),
  z.object({ event: z.literal('saved'), frame: z.number().int(), path: z.string().min(1) }),
  z.object({ event: z.literal('error'), frame: z.number().int().nullable(), message: z.string() }),
  /** The session could not start serving (e.g. an invalid override); Blender exits. */
  z.object({ event: z.literal('fatal'), message: z.string() }),
  sceneInfoSchema.extend({ event: z.literal('probe') }),
]);
export type SessionEvent = z.infer<typeof sessionEventSchema>;

/** The JSON Schema document session.py validates with (blender/farm_session/session_protocol.json). */
export function sessionProtocolDocument(): Record<string, unknown> {
  const plain = (schema: z.ZodType) => {
    const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: 'input' }) as Record<string, unknown>;
    return rest;
  };
  return {
    $comment: 'Generated from src/protocol/blender-session.ts by scripts/session-protocol.ts: do not edit.',
    commands: plain(sessionCommandSchema),
    overrides: plain(sessionOverridesSchema),
    project: plain(projectLayoutSchema),
    device: plain(renderDeviceSchema),
    events: plain(sessionEventSchema),
  };
}
