import { z } from 'zod';
import { sha256Schema } from './api.ts';

/**
 * A project: a main .blend and the files it uses (textures, libraries, caches…), each by
 * its path relative to the project's root folder and its content's SHA-256. The server
 * stores every file once by content; workers lay the project out as a folder tree, so the
 * .blend's relative ("//") paths resolve, and its absolute paths under `root` are remapped
 * into that tree.
 */

/** Files one project may list. */
export const MAX_PROJECT_FILES = 100_000;

/**
 * A path inside a project: relative, "/"-separated, no part empty, "." or "..", no
 * backslash or control character, so it lands inside the project's folder on any worker.
 */
export const projectPathSchema = z
  .string()
  .min(1)
  .max(1000)
  .refine((p) => !p.startsWith('/') && !/[\\\u0000-\u001f]/.test(p), 'a project path is relative, with "/" between folders and no control characters')
  .refine((p) => p.split('/').every((part) => part !== '' && part !== '.' && part !== '..'), 'a project path has no empty, "." or ".." parts');

export const projectFileSchema = z.object({
  path: projectPathSchema,
  sha256: sha256Schema,
  size: z.number().int().min(0),
});
export type ProjectFile = z.infer<typeof projectFileSchema>;

export const projectManifestSchema = z
  .object({
    /**
     * The folder on the submitting machine that the paths are relative to (POSIX or
     * Windows); absolute paths in the .blend under it are remapped on the workers.
     */
    root: z.string().min(1).max(4096),
    /** Where the main .blend sits in the project, e.g. "shots/010/main.blend". */
    main: projectPathSchema,
    files: z.array(projectFileSchema).max(MAX_PROJECT_FILES),
  })
  .superRefine((manifest, ctx) => {
    const seen = new Set<string>();
    for (const file of manifest.files) {
      // Case-insensitive: a project must lay out the same on a Windows or macOS worker.
      const key = file.path.toLowerCase();
      if (seen.has(key)) ctx.addIssue({ code: 'custom', message: `"${file.path}" is listed twice`, path: ['files'] });
      seen.add(key);
    }
    if (seen.has(manifest.main.toLowerCase())) ctx.addIssue({ code: 'custom', message: 'the main .blend is sent with the job, not listed among its files', path: ['main'] });
  });
export type ProjectManifest = z.infer<typeof projectManifestSchema>;

/** `PUT /api/jobs/:id/project`: a held job takes this project (its files and the ones added), and its scene is read again. */
export const jobProjectSchema = z.strictObject({ project: sha256Schema });
export type JobProject = z.infer<typeof jobProjectSchema>;

/** The answer to a new project: its id (the manifest's hash) and the files the server lacks. */
export const projectCreatedSchema = z.object({
  id: sha256Schema,
  missing: z.array(sha256Schema),
  totalBytes: z.number().int().min(0),
  missingBytes: z.number().int().min(0),
});
export type ProjectCreated = z.infer<typeof projectCreatedSchema>;

/** What a job tells workers about its project; they fetch the manifest once by id. */
export const projectRefSchema = z.object({ id: sha256Schema, root: z.string(), main: projectPathSchema });
export type ProjectRef = z.infer<typeof projectRefSchema>;

/** The answer to an uploaded project file. */
export const storedFileSchema = z.object({ sha256: sha256Schema, size: z.number().int().min(0) });
export type StoredFile = z.infer<typeof storedFileSchema>;
