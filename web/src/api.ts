import { z } from 'zod';
import {
  apiErrorSchema,
  ApiError,
  apiPath,
  CLIENT_HEADER,
  infoSchema,
  sessionSchema,
  type Info,
  frameColumnsSchema,
  frameLogSchema,
  framePassSchema,
  jobSchema,
  workerSchema,
  type FrameColumns,
  type FrameLog,
  type FramePass,
  type Job,
  type JobPatch,
  type Worker,
  type ErrorCode,
  projectCreatedSchema,
  storedFileSchema,
  type ProjectCreated,
  type ProjectManifest,
} from '../../src/protocol/index.ts';

// The two small shapes below are answered by src/server/http.ts but not (yet) defined in
// src/protocol; they are kept minimal and validated all the same.
export type FarmInfo = Info;

export { ApiError };

/** Called whenever the API says 401: the page shows the login form. */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

async function errorOf(response: Response): Promise<ApiError> {
  return ApiError.fromAnswer(response.status, await response.text().catch(() => ''), response.statusText);
}

declare global {
  interface Window {
    /** GET requests web/index.html started before the app's script ran, by path. */
    archenlandPrefetch?: Record<string, Promise<Response>>;
  }
}

/** The answer to a GET that web/index.html already asked for, if it did; each is taken once. */
function takePrefetched(path: string): Promise<Response> | undefined {
  const started = window.archenlandPrefetch;
  const answer = started?.[path];
  if (answer) delete started![path];
  return answer;
}

async function request<T>(method: string, path: string, schema: z.ZodType<T> | null, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== 'GET') headers[CLIENT_HEADER] = 'web';
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await ((method === 'GET' ? takePrefetched(path) : undefined) ??
      fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
      }));
  } catch {
    throw new ApiError('the farm server cannot be reached', 0);
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (error.code === 'UNAUTHENTICATED' && path !== apiPath('login')) onUnauthorized();
    throw error;
  }
  if (schema === null || response.status === 204) return undefined as T;
  const parsed = schema.safeParse(await response.json());
  if (!parsed.success) throw new ApiError(`unexpected answer from ${path}: ${parsed.error.issues[0]?.message ?? 'invalid'}`, 0);
  return parsed.data;
}

export type JobAction = 'cancel' | 'pause' | 'resume' | 'retry';
export type WorkerMode = 'enable' | 'drain' | 'disable';

export const api = {
  session: () => request('GET', apiPath('session'), sessionSchema),
  login: (token: string) => request('POST', apiPath('login'), sessionSchema, { token }),
  logout: () => request('POST', apiPath('logout'), sessionSchema),
  info: (): Promise<FarmInfo> => request('GET', apiPath('info'), infoSchema),
  jobs: (): Promise<Job[]> => request('GET', apiPath('listJobs'), z.array(jobSchema)),
  /** A job with its frames in columns; with `since` (a cursor from an earlier answer), only the frames changed after it. */
  frames: (id: string, since?: string): Promise<FrameColumns> =>
    request('GET', `${apiPath('frameColumns', { id })}${since === undefined ? '' : `?since=${encodeURIComponent(since)}`}`, frameColumnsSchema),
  patchJob: (id: string, patch: JobPatch): Promise<Job> => request('PATCH', apiPath('patchJob', { id }), jobSchema, patch),
  jobAction: (id: string, action: JobAction): Promise<Job> => request('POST', apiPath(`${action}Job`, { id }), jobSchema),
  deleteJob: (id: string): Promise<void> => request('DELETE', apiPath('deleteJob', { id }), null),
  frameLog: (id: string, frame: number): Promise<FrameLog> => request('GET', apiPath('frameLog', { id, frame }), frameLogSchema),
  framePasses: (id: string, frame: number): Promise<FramePass[]> => request('GET', apiPath('framePasses', { id, frame }), z.array(framePassSchema)),
  workers: (): Promise<Worker[]> => request('GET', apiPath('listWorkers'), z.array(workerSchema)),
  workerMode: (id: string, mode: WorkerMode): Promise<Worker> => request('POST', apiPath(`${mode}Worker`, { id }), workerSchema),
  /** null: back to the worker's own `tags` setting. */
  setWorkerTags: (id: string, tags: string[] | null): Promise<Worker> => request('PUT', apiPath('setWorkerTags', { id }), workerSchema, { tags }),
  /** Describes a project; the answer names the files (by SHA-256) the server still lacks. */
  createProject: (manifest: ProjectManifest): Promise<ProjectCreated> => request('POST', apiPath('createProject'), projectCreatedSchema, manifest),
  replaceJobProject: (id: string, project: string): Promise<Job> => request('PUT', apiPath('replaceJobProject', { id }), jobSchema, { project }),
};

export const urls = {
  frame: (jobId: string, frame: number) => apiPath('frameFile', { id: jobId, frame }),
  preview: (jobId: string, frame: number, size: 'small' | 'large') => `${apiPath('framePreview', { id: jobId, frame })}?size=${size}`,
  /** One finished tile of a split frame, while the frame waits for its other tiles. */
  tilePreview: (jobId: string, frame: number, tile: number, size: 'small' | 'large') =>
    `${apiPath('tilePreview', { id: jobId, frame, tile })}?size=${size}`,
  video: (jobId: string) => apiPath('video', { id: jobId }),
  zip: (jobId: string) => apiPath('framesZip', { id: jobId }),
  /** One File Output pass of a frame, by its name. */
  pass: (jobId: string, frame: number, name: string) => apiPath('passFile', { id: jobId, frame, name }),
};

export interface Upload<T = Job> {
  promise: Promise<T>;
  abort(): void;
}

/**
 * Sends a .blend as `POST /api/jobs`. XMLHttpRequest rather than fetch, because only it
 * reports upload progress.
 */
export function uploadBlend(file: File, fields: Record<string, string>, onProgress: (sent: number, total: number) => void): Upload {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  form.append('file', file, file.name);
  return uploadWithProgress('POST', apiPath('submitJob'), form, jobSchema, (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size));
}

/**
 * Sends one project file as `PUT /api/files/{sha256}`; the server keeps it once its content
 * proves to have that hash.
 */
export function uploadProjectFile(sha256: string, blob: Blob, onProgress: (sent: number) => void): Upload<void> {
  const upload = uploadWithProgress('PUT', apiPath('uploadProjectFile', { sha256 }), blob, storedFileSchema, (event) => onProgress(event.loaded));
  return { promise: upload.promise.then(() => onProgress(blob.size)), abort: upload.abort };
}

/** An upload whose progress is reported (XMLHttpRequest: fetch cannot), answered with `success` or the farm's `{code, error}`. */
function uploadWithProgress<T>(
  method: 'POST' | 'PUT',
  path: string,
  body: FormData | Blob,
  success: z.ZodType<T>,
  onProgress: (event: ProgressEvent) => void,
): Upload<T> {
  const xhr = new XMLHttpRequest();
  const promise = new Promise<T>((resolve, reject) => {
    xhr.open(method, path);
    xhr.setRequestHeader(CLIENT_HEADER, 'web');
    if (body instanceof Blob) xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.responseType = 'text';
    xhr.upload.onprogress = onProgress;
    xhr.onload = () => {
      let answer: unknown = null;
      try {
        answer = JSON.parse(xhr.responseText);
      } catch {
        // handled below
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        const parsed = success.safeParse(answer);
        if (parsed.success) resolve(parsed.data);
        else reject(new ApiError('the server accepted the file but answered something unexpected', xhr.status));
        return;
      }
      const error = apiErrorSchema.safeParse(answer);
      if (!error.success) {
        // A proxy's or a cut-off answer: the status is all there is.
        reject(new ApiError(xhr.status === 413 ? 'the file is too large for this farm' : `upload refused (${xhr.status})`, xhr.status));
        return;
      }
      if (error.data.code === 'UNAUTHENTICATED') onUnauthorized();
      reject(new ApiError(error.data.error, xhr.status, error.data.code));
    };
    xhr.onerror = () => reject(new ApiError('the upload was interrupted: the server closed the connection or cannot be reached', 0));
    xhr.onabort = () => reject(new ApiError('upload cancelled', -1));
    xhr.send(body);
  });
  return { promise, abort: () => xhr.abort() };
}
