import { z } from 'zod';

/** A scene's render settings as reported by blender/probe.py. */
export const sceneInfoSchema = z.object({
  frameStart: z.number().int(),
  frameEnd: z.number().int(),
  frameStep: z.number().int().positive(),
  /** render.fps / render.fps_base, e.g. 29.97 for NTSC. */
  fps: z.number().positive(),
  resolutionX: z.number().int().positive(),
  resolutionY: z.number().int().positive(),
  resolutionPercentage: z.number().int().positive(),
  /** Blender's engine id: "CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH", … */
  engine: z.string().min(1),
  /** scene.render.image_settings.file_format, e.g. "PNG". */
  fileFormat: z.string().min(1),
  /** Cycles or EEVEE render samples; null for engines without a sample count. */
  samples: z.number().int().nullable(),
  /** Cycles denoising: Debian's Blender cannot render such scenes (no OpenImageDenoise). */
  denoising: z.boolean(),
  blenderVersion: z.string(),
  sceneName: z.string(),
});

export type SceneInfo = z.infer<typeof sceneInfoSchema>;
