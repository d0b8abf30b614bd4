import type { Job, ProjectFile } from '../../../src/protocol/index.ts';
import { api, ApiError, uploadBlend, uploadProjectFile, type Upload } from '../api.ts';
import { canDigest, NEEDS_SECURE_CONTEXT, rootFromBlend, sha256Hex } from './digest.ts';
import type { PickedProject, ProjectEntry } from './read-project.ts';

export interface ProjectProgress {
  stage: 'hashing' | 'uploading';
  /** Bytes hashed, or bytes actually sent (the files the server lacked, then the .blend). */
  done: number;
  total: number;
  /** Files the server already had, from this or any earlier project: never sent again. */
  reusedFiles: number;
}

/** Files hashed at once: enough to keep the disk busy, few enough to bound memory. */
const HASHING_AT_ONCE = 4;

/**
 * Submits a project as the command line does: hash every file, tell the server the
 * manifest, upload only the files it lacks, then submit the main .blend naming the
 * project. The job exists only once every file is on the server, so a failure or a
 * cancel at any step leaves no job behind (files already sent stay stored, deduplicated).
 */
export function sendProject(project: PickedProject, mainPath: string, fields: Record<string, string>, onProgress: (progress: ProjectProgress) => void): Upload {
  let cancelled = false;
  let current: { abort(): void } | null = null;
  const stopIfCancelled = () => {
    if (cancelled) throw new ApiError('upload cancelled', -1);
  };

  const run = async (): Promise<Job> => {
    if (!canDigest()) throw new ApiError(NEEDS_SECURE_CONTEXT, 0);
    const main = project.files.find((file) => file.path === mainPath);
    if (!main) throw new ApiError(`${mainPath} is not in ${project.name}`, 0);

    const { hashes, root } = await hashAll(project, mainPath, (done, total) => onProgress({ stage: 'hashing', done, total, reusedFiles: 0 }), stopIfCancelled);
    const others = project.files.filter((file) => file !== main);
    const files: ProjectFile[] = others.map((file) => ({ path: file.path, sha256: hashes.get(file)!, size: file.blob.size }));
    stopIfCancelled();
    const created = await api.createProject({ root: root ?? project.name, main: mainPath, files }).catch((error: ApiError) => {
      throw new ApiError(`the server refused the list of the project's files: ${error.message}`, error.status, error.code);
    });

    // One upload per missing content, whichever paths share it.
    const lacking = new Set(created.missing);
    const toSend: ProjectEntry[] = others.filter((file) => lacking.delete(hashes.get(file)!));
    const missingHashes = new Set(created.missing);
    const reusedFiles = others.filter((file) => !missingHashes.has(hashes.get(file)!)).length;
    const total = toSend.reduce((sum, file) => sum + file.blob.size, 0) + main.blob.size;
    let sent = 0;
    const report = (inFlight: number) => onProgress({ stage: 'uploading', done: sent + inFlight, total, reusedFiles });
    report(0);
    for (const file of toSend) {
      stopIfCancelled();
      const upload = uploadProjectFile(hashes.get(file)!, file.blob, report);
      current = upload;
      await upload.promise.catch((error: ApiError) => {
        throw error.status === -1 ? error : new ApiError(`${file.path} could not be uploaded: ${error.message}`, error.status, error.code);
      });
      sent += file.blob.size;
    }

    stopIfCancelled();
    const blend = main.blob instanceof File ? main.blob : new File([main.blob], mainPath.split('/').pop()!);
    const job = uploadBlend(blend, { ...fields, project: created.id }, (blendSent) => report(blendSent));
    current = job;
    return job.promise;
  };

  return {
    promise: run(),
    abort: () => {
      cancelled = true;
      current?.abort();
    },
  };
}

/** Every file's SHA-256, and the project's root as the .blend files recorded it, if they did. */
async function hashAll(
  project: PickedProject,
  mainPath: string,
  onProgress: (done: number, total: number) => void,
  stopIfCancelled: () => void,
): Promise<{ hashes: Map<ProjectEntry, string>; root: string | null }> {
  const total = project.files.reduce((sum, file) => sum + file.blob.size, 0);
  const paths = new Set(project.files.map((file) => file.path.toLowerCase()));
  const hashes = new Map<ProjectEntry, string>();
  const roots = new Map<string, string>();
  let done = 0;
  let next = 0;
  let failed = false;
  onProgress(0, total);
  const worker = async () => {
    while (next < project.files.length && !failed) {
      stopIfCancelled();
      const file = project.files[next++]!;
      let data: ArrayBuffer;
      try {
        data = await file.blob.arrayBuffer();
      } catch (error) {
        failed = true; // the other readers stop too
        throw new ApiError(`${file.path} cannot be read: ${(error as Error).message}`, 0);
      }
      hashes.set(file, await sha256Hex(data));
      if (/\.blend$/i.test(file.path)) {
        const root = await rootFromBlend(data, paths);
        if (root) roots.set(file.path, root);
      }
      done += file.blob.size;
      onProgress(done, total);
    }
  };
  await Promise.all(Array.from({ length: HASHING_AT_ONCE }, worker));
    // The main .blend's own record wins; a library's is the next best thing.
  return { hashes, root: roots.get(mainPath) ?? roots.values().next().value ?? null };
}
