import { z } from 'zod';

/**
 * Something the preflight (blender/probe.py) found that would spoil the render. Errors
 * fail the job before its first frame (unless `fix` names an option that avoids them);
 * MISSING_FILE holds the job until the files are added or the user starts it anyway;
 * other warnings are shown and the job goes on.
 */
export const problemCodes = ['NO_CAMERA', 'DENOISER_UNAVAILABLE', 'ENGINE_UNAVAILABLE', 'MISSING_FILE', 'NEWER_BLENDER', 'SCRIPTS_NEEDED'] as const;
export const sceneProblemSchema = z.object({
  /** Unknown codes from a newer worker are kept as they are. */
  code: z.string().max(40),
  severity: z.enum(['error', 'warning']),
  message: z.string().max(300),
  /** The file's path as the .blend names it ("//tex/wood.png"), for MISSING_FILE. */
  path: z.string().max(1000).optional(),
  /** A job option that avoids the problem: `disable_denoising` (submit with denoising off). */
  fix: z.string().max(40).optional(),
});
export type SceneProblem = z.infer<typeof sceneProblemSchema>;

/** What a worker reads from a .blend with Blender's Python API (blender/probe.py). */
export const sceneInfoSchema = z.object({
  sceneName: z.string(),
  frameStart: z.number().int(),
  frameEnd: z.number().int(),
  frameStep: z.number().int().min(1),
  fps: z.number().positive(),
  resolutionX: z.number().int().positive(),
  resolutionY: z.number().int().positive(),
  resolutionPercentage: z.number().int().positive(),
  engine: z.string(),
  fileFormat: z.string(),
  samples: z.number().int().nullable(),
  denoising: z.boolean(),
  blenderVersion: z.string(),
  /**
   * Why frames of this scene should not be split into tiles: settings that work on the
   * whole image (denoising, glare and blur in the compositor, screen-space effects), each
   * said in words a user understands. Empty when tiles are safe.
   */
  tileBlockers: z.array(z.string().max(300)).max(20).default([]),
  /** The preflight's findings, errors first. */
  problems: z.array(sceneProblemSchema).max(50).default([]),
  /** The Blender version that saved the file. */
  savedWith: z.string().max(40).nullable().default(null),
});
export type SceneInfo = z.infer<typeof sceneInfoSchema>;

/** Output formats a job may ask for; Blender's own names (image_settings.file_format). */
export const outputFormats = ['PNG', 'JPEG', 'OPEN_EXR', 'TIFF'] as const;
export const outputFormatSchema = z.enum(outputFormats);
export type OutputFormat = z.infer<typeof outputFormatSchema>;

export const fileExtensionOf: Record<string, string> = {
  PNG: 'png',
  JPEG: 'jpg',
  OPEN_EXR: 'exr',
  OPEN_EXR_MULTILAYER: 'exr',
  TIFF: 'tif',
  BMP: 'bmp',
  TARGA: 'tga',
  TARGA_RAW: 'tga',
  WEBP: 'webp',
};

/**
 * Scene values a job overrides; null keeps the .blend's own value, so a job with no
 * overrides renders exactly what `blender -b file -f N` would.
 */
export const sceneOverridesSchema = z.object({
  engine: z.enum(['CYCLES', 'BLENDER_EEVEE', 'BLENDER_WORKBENCH']).nullable().default(null),
  resolutionPercentage: z.number().int().min(1).max(1000).nullable().default(null),
  samples: z.number().int().min(1).max(1_000_000).nullable().default(null),
  fileFormat: outputFormatSchema.nullable().default(null),
  /** false: render with Cycles' denoising off (for workers whose Blender lacks the denoiser). */
  denoising: z.literal(false).nullable().default(null),
});
export type SceneOverrides = z.infer<typeof sceneOverridesSchema>;
