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

/** Lets a multi-step upload be cancelled between steps and during the request under way. */
interface Steps {
  stopIfCancelled(): void;
  current(request: { abort(): void }): void;
}

function cancellable(run: (steps: Steps) => Promise<Job>): Upload {
  let cancelled = false;
  let current: { abort(): void } | null = null;
  const steps: Steps = {
    stopIfCancelled: () => {
      if (cancelled) throw new ApiError('upload cancelled', -1);
    },
    current: (request) => (current = request),
  };
  return {
    promise: run(steps),
    abort: () => {
      cancelled = true;
      current?.abort();
    },
  };
}

/**
 * Submits a project as the command line does: hash every file, tell the server the
 * manifest, upload only the files it lacks, then submit the main .blend naming the
 * project. The job exists only once every file is on the server, so a failure or a
 * cancel at any step leaves no job behind (files already sent stay stored, deduplicated).
 */
export function sendProject(project: PickedProject, mainPath: string, fields: Record<string, string>, onProgress: (progress: ProjectProgress) => void): Upload {
  return cancellable(async (steps) => {
    const main = project.files.find((file) => file.path === mainPath);
    if (!main) throw new ApiError(`${mainPath} is not in ${project.name}`, 0);
    const hashed = await hashAll(project, onProgress, steps);
    const sent = await sendFiles(project, main, hashed, main.blob.size, onProgress, steps);
    const blend = main.blob instanceof File ? main.blob : new File([main.blob], mainPath.split('/').pop()!);
    const job = uploadBlend(blend, { ...fields, project: sent.projectId }, (blendSent) => sent.report(blendSent));
    steps.current(job);
    return job.promise;
  });
}

/**
 * Adds the files a held job lacked: the folder (or .zip) it came from, with the files now
 * in place. Its .blend is found by content; only files the server lacks are sent, and the
 * job takes the new project, so its scene is read again.
 */
export function addProjectFiles(project: PickedProject, job: Job, onProgress: (progress: ProjectProgress) => void): Upload {
  return cancellable(async (steps) => {
    const hashed = await hashAll(project, onProgress, steps);
    const main = project.files.find((file) => /\.blend$/i.test(file.path) && hashed.hashes.get(file) === job.blendSha256);
    if (!main) throw new ApiError(`${project.name} does not hold this job's .blend: add the folder the job was submitted from`, 0);
    const sent = await sendFiles(project, main, hashed, 0, onProgress, steps);
    steps.stopIfCancelled();
    return api.replaceJobProject(job.id, sent.projectId);
  });
}

/**
 * Tells the server the project's manifest and uploads the files it lacks. Progress counts
 * the bytes actually sent, with `moreBytes` still to come after (the .blend, on submit).
 */
async function sendFiles(
  project: PickedProject,
  main: ProjectEntry,
  { hashes, roots }: Hashed,
  moreBytes: number,
  onProgress: (progress: ProjectProgress) => void,
  steps: Steps,
): Promise<{ projectId: string; report: (inFlight: number) => void }> {
  const others = project.files.filter((file) => file !== main);
  const files: ProjectFile[] = others.map((file) => ({ path: file.path, sha256: hashes.get(file)!, size: file.blob.size }));
  // The main .blend's own record of the root wins; a library's is the next best thing.
  const root = roots.get(main.path) ?? roots.values().next().value ?? project.name;
  steps.stopIfCancelled();
  const created = await api.createProject({ root, main: main.path, files }).catch((error: ApiError) => {
    throw new ApiError(`the server refused the list of the project's files: ${error.message}`, error.status, error.code);
  });

  // One upload per missing content, whichever paths share it.
  const lacking = new Set(created.missing);
  const toSend: ProjectEntry[] = others.filter((file) => lacking.delete(hashes.get(file)!));
  const missingHashes = new Set(created.missing);
  const reusedFiles = others.filter((file) => !missingHashes.has(hashes.get(file)!)).length;
  const total = toSend.reduce((sum, file) => sum + file.blob.size, 0) + moreBytes;
  let sent = 0;
  const report = (inFlight: number) => onProgress({ stage: 'uploading', done: sent + inFlight, total, reusedFiles });
  report(0);
  for (const file of toSend) {
    steps.stopIfCancelled();
    const upload = uploadProjectFile(hashes.get(file)!, file.blob, report);
    steps.current(upload);
    await upload.promise.catch((error: ApiError) => {
      throw error.status === -1 ? error : new ApiError(`${file.path} could not be uploaded: ${error.message}`, error.status, error.code);
    });
    sent += file.blob.size;
  }
  steps.stopIfCancelled();
  return { projectId: created.id, report };
}

interface Hashed {
  hashes: Map<ProjectEntry, string>;
  /** .blend path -> the project root it recorded (from its absolute paths), where it did. */
  roots: Map<string, string>;
}

/** Every file's SHA-256, and the project's root as the .blend files recorded it. */
async function hashAll(project: PickedProject, onProgress: (progress: ProjectProgress) => void, steps: Steps): Promise<Hashed> {
  if (!canDigest()) throw new ApiError(NEEDS_SECURE_CONTEXT, 0);
  const total = project.files.reduce((sum, file) => sum + file.blob.size, 0);
  const paths = new Set(project.files.map((file) => file.path.toLowerCase()));
  const hashes = new Map<ProjectEntry, string>();
  const roots = new Map<string, string>();
  let done = 0;
  let next = 0;
  let failed = false;
  const report = () => onProgress({ stage: 'hashing', done, total, reusedFiles: 0 });
  report();
  const worker = async () => {
    while (next < project.files.length && !failed) {
      steps.stopIfCancelled();
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
      report();
    }
  };
  await Promise.all(Array.from({ length: HASHING_AT_ONCE }, worker));
  return { hashes, roots };
}
