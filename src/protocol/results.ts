import { z } from 'zod';
import { sha256Schema } from './api.ts';
import { installedVersionSchema } from './blender-versions.ts';

/**
 * What a worker delivers for a rendered frame or tile: one multipart upload holding a
 * `manifest` field (this schema) first, then the image in the file field `image` and the
 * compositor's File Output passes in the file fields `pass0`, `pass1`, … in the order of
 * `passes` (field names, not file names, say which is which: clients may shorten those).
 * The frame's log comes in the manifest, so it arrives with the frame, never before it.
 */
export const RESULT_MANIFEST_FIELD = 'manifest';
export const RESULT_IMAGE_FIELD = 'image';
export const RESULT_PASS_FIELD = 'pass';

/** Passes one frame may bring (a File Output node writes one file per slot). */
export const MAX_PASSES_PER_FRAME = 64;
export const MAX_RESULT_LOG_CHARS = 64 * 1024;

/**
 * A pass's name is its path inside the frame's passes folder, e.g.
 * "compositor/File Output/Depth0001.png": plain characters, no part that is empty or
 * starts with "." (so never ".."), so it is safe as a path on the server and in a zip.
 */
export const passNameSchema = z
  .string()
  .min(1)
  .max(300)
  .regex(/^[A-Za-z0-9_ -][A-Za-z0-9 ._-]*(\/[A-Za-z0-9_ -][A-Za-z0-9 ._-]*)*$/, 'a pass name is a relative path of letters, digits, spaces, ".", "_" and "-" whose parts do not start with "."');

export const resultManifestSchema = z
  .object({
    /** SHA-256 of the image part. */
    sha256: sha256Schema,
    renderMs: z.number().min(0).max(1e10),
    log: z.string().max(MAX_RESULT_LOG_CHARS).default(''),
    passes: z.array(z.object({ name: passNameSchema, sha256: sha256Schema })).max(MAX_PASSES_PER_FRAME).default([]),
    /** The version of the Blender installation that rendered it, shown per frame. */
    blenderVersion: installedVersionSchema.nullable().default(null),
  })
  .refine((m) => new Set(m.passes.map((p) => p.name.toLowerCase())).size === m.passes.length, 'pass names must be unique');
export type ResultManifest = z.infer<typeof resultManifestSchema>;

/** A pass kept with a finished frame, as the API lists it. */
export const framePassSchema = z.object({
  name: passNameSchema,
  size: z.number().int().min(0),
});
export type FramePass = z.infer<typeof framePassSchema>;
