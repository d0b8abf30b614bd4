import { z } from 'zod';
import { frameCursorSchema, idSchema, sha256Schema, tagSchema, UPLOAD_KEY_HEADER } from './api.ts';
import type { ErrorCode } from './errors.ts';
import { PROTOCOL_VERSION } from './messages.ts';
import { excludedPeersSchema } from './peers.ts';
import { passNameSchema } from './results.ts';
import { tileIndexSchema } from './tiles.ts';

/**
 * Every route of the HTTP API, declared once: its name, method and path, who may call it,
 * its parameters, body, answers and the error codes it may answer. The server takes each
 * route's access from here when it registers the route, the OpenAPI document is generated
 * from it, and clients build URLs with apiPath() by the route's name.
 */

/**
 * open: anyone (the web UI's files, login, the API description, health and metrics).
 * user: a user token, a browser session, or a trusted loopback caller.
 * worker: a worker token; the worker protocol only.
 */
export type Access = 'open' | 'user' | 'worker';

/** The browser session cookie set by login. */
export const SESSION_COOKIE = 'archenland_session';


type Body =
  | { kind: 'json'; ref: string }
  | { kind: 'multipart' }
  /** A worker's result: manifest, image and passes (src/protocol/results.ts). */
  | { kind: 'result' }
  | { kind: 'binary'; description: string };
interface Answer {
  description: string;
  /** A component id (JSON), `[id]` for an array of it, or a media type for files. */
  json?: string;
  array?: boolean;
  media?: string[];
  headers?: Record<string, string>;
}
interface Param {
  name: string;
  in: 'path' | 'query' | 'header';
  schema: z.ZodType;
  description: string;
  required?: boolean;
}
export interface RouteDoc {
  /** How clients name the route (apiPath); also the OpenAPI operationId. */
  name: string;
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Fastify style, e.g. /api/jobs/:id */
  path: string;
  tag: string;
  summary: string;
  description?: string;
  access: Access;
  params?: readonly Param[];
  body?: Body;
  ok: Record<number, Answer>;
  /** Error codes besides the ones every route of its kind can answer (src/protocol/errors.ts). */
  errors?: readonly ErrorCode[];
}

const jobId: Param = { name: 'id', in: 'path', schema: idSchema, description: 'job id' };
const workerId: Param = { name: 'id', in: 'path', schema: idSchema, description: 'worker id' };
const workerTag: Param = { name: 'tag', in: 'path', schema: tagSchema, description: 'a worker tag, e.g. room-2' };
const frameNumber: Param = { name: 'frame', in: 'path', schema: z.int(), description: 'frame number (may be negative)' };
const previewSize: Param = { name: 'size', in: 'query', schema: z.enum(['small', 'large']).default('small'), description: 'preview size', required: false };
const sha256Param = (description: string): Param => ({ name: 'sha256', in: 'path', schema: sha256Schema, description });
const tileNumber: Param = { name: 'tile', in: 'path', schema: tileIndexSchema, description: 'tile index, row by row from the top-left, from 0' };
const uploadKeyHeader: Param = {
  name: UPLOAD_KEY_HEADER, in: 'header', schema: z.string(), required: true,
  description: "the upload key of the worker's open WebSocket connection (sent in its welcome); an unknown key is answered 503",
};
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/x-exr', 'image/tiff', 'application/octet-stream'];

const jobAction = <A extends 'cancel' | 'pause' | 'resume' | 'retry'>(action: A, summary: string, conflict: string) => ({
  name: `${action}Job` as const,
  method: 'post' as const,
  path: `/api/jobs/:id/${action}` as const,
  tag: 'jobs',
  summary,
  description: `Answers \`JOB_STATE_CONFLICT\` when ${conflict}.`,
  access: 'user' as const,
  params: [jobId],
  ok: { 200: { description: 'the job after the change', json: 'Job' } },
  errors: ['JOB_NOT_FOUND', 'JOB_STATE_CONFLICT'] as const,
});

const workerMode = <M extends 'enable' | 'drain' | 'disable'>(mode: M, summary: string) => ({
  name: `${mode}Worker` as const,
  method: 'post' as const,
  path: `/api/workers/:id/${mode}` as const,
  tag: 'workers',
  summary,
  access: 'user' as const,
  params: [workerId],
  ok: { 200: { description: 'the worker after the change', json: 'Worker' } },
  errors: ['WORKER_NOT_FOUND'] as const,
});

/**
 * Every route of the HTTP app, with the access it needs: the server takes each route's
 * access from here when the route is registered (access.ts), and test/openapi.test.ts
 * checks this table against the routes Fastify has.
 */
export const routeDocs = [
  {
    name: 'health', method: 'get', path: '/healthz', tag: 'operations', access: 'open',
    summary: 'Liveness and database check',
    description: 'For load balancers and service managers: 200 when the server answers and its database does, 503 otherwise.',
    ok: { 200: { description: 'healthy', json: 'Health' }, 503: { description: 'the database does not answer', json: 'Health' } },
  },
  {
    name: 'metrics', method: 'get', path: '/metrics', tag: 'operations', access: 'open',
    summary: 'Prometheus metrics',
    description: 'Prometheus text format: jobs, workers and frames by state, frames rendered, frame render times, upload bytes, process metrics. See docs/api.md.',
    ok: { 200: { description: 'metrics in the Prometheus text format', media: ['text/plain'] } },
  },
  {
    name: 'webUi', method: 'get', path: '/', tag: 'operations', access: 'open',
    summary: 'The web interface',
    description: 'Serves the web UI (and its files) when it is built; otherwise a short JSON note.',
    ok: { 200: { description: 'the web UI', media: ['text/html', 'application/json'] } },
  },
  {
    name: 'info', method: 'get', path: '/api/info', tag: 'operations', access: 'open',
    summary: 'Protocol version and WebSocket port',
    description: `Live events: open a WebSocket on \`wsPort\`, send \`{"type":"observe","protocol":${PROTOCOL_VERSION},"token":"…"}\` (ObserverMessage) and receive FarmEvent messages.`,
    ok: { 200: { description: 'server info', json: 'Info' } },
  },
  {
    name: 'openApi', method: 'get', path: '/api/openapi.json', tag: 'operations', access: 'open',
    summary: 'This document (OpenAPI 3.1)',
    ok: { 200: { description: 'the OpenAPI document', media: ['application/json'] } },
  },
  {
    name: 'apiDocs', method: 'get', path: '/api/docs', tag: 'operations', access: 'open',
    summary: 'This document as a web page',
    ok: { 200: { description: 'HTML', media: ['text/html'] } },
  },
  {
    name: 'session', method: 'get', path: '/api/session', tag: 'session', access: 'open',
    summary: 'Whether this request carries valid credentials',
    ok: { 200: { description: 'session state', json: 'Session' } },
  },
  {
    name: 'login', method: 'post', path: '/api/login', tag: 'session', access: 'open',
    summary: 'Browser login with a user token',
    description: `Starts a server-side session and sets the HttpOnly cookie \`${SESSION_COOKIE}\` holding its random id. Sessions expire after 14 days, end at logout, and end when their token is revoked. Worker tokens cannot log in.`,
    body: { kind: 'json', ref: 'Login' },
    ok: { 200: { description: 'logged in; the cookie is set', json: 'Session', headers: { 'set-cookie': 'the session cookie' } } },
    errors: ['UNAUTHENTICATED'],
  },
  {
    name: 'logout', method: 'post', path: '/api/logout', tag: 'session', access: 'open',
    summary: 'Browser logout: ends the session on the server and clears the cookie',
    ok: { 200: { description: 'logged out', json: 'Session' } },
  },
  {
    name: 'submitJob', method: 'post', path: '/api/jobs', tag: 'jobs', access: 'user',
    summary: 'Submit a .blend',
    description:
      'multipart/form-data with the .blend in the field `file` and optional text fields. The server probes the scene (frame range, fps, resolution, engine, format) on a worker, and its preflight looks for problems (no camera, a denoiser the workers lack, files the project lacks); fields given here override the file\'s values. A .blend that uses other files (textures, libraries, caches) names its project in the field `project`.',
    body: { kind: 'multipart' },
    ok: { 201: { description: 'the new job (state probing)', json: 'Job' } },
    errors: ['BAD_UPLOAD', 'EMPTY_FILE', 'INVALID_JOB_SETTINGS', 'TOO_LARGE', 'NOT_A_BLEND', 'UNSUPPORTED_MEDIA_TYPE', 'CORRUPT_UPLOAD', 'DISK_FULL', 'PROJECT_NOT_FOUND', 'PROJECT_INCOMPLETE'],
  },
  {
    name: 'createProject', method: 'post', path: '/api/projects', tag: 'projects', access: 'user',
    summary: 'Describe a project (the files a .blend uses) and learn which files the server lacks',
    description: 'The id is the manifest\'s hash: the same project gets the same id. Upload each missing file with `PUT /api/files/{sha256}`, then submit the job with the field `project`. Files already on the server (from any earlier project) are not sent again.',
    body: { kind: 'json', ref: 'ProjectManifest' },
    ok: { 200: { description: 'the project id and the files still to upload', json: 'ProjectCreated' } },
  },
  {
    name: 'uploadProjectFile', method: 'put', path: '/api/files/:sha256', tag: 'projects', access: 'user',
    summary: 'Upload one project file; the server keeps it once its content proves to have that SHA-256',
    params: [sha256Param('SHA-256 of the file')],
    body: { kind: 'binary', description: 'the file' },
    ok: { 201: { description: 'stored', json: 'StoredFile' } },
    errors: ['CORRUPT_UPLOAD', 'TOO_LARGE', 'DISK_FULL'],
  },
  {
    name: 'listJobs', method: 'get', path: '/api/jobs', tag: 'jobs', access: 'user',
    summary: 'List jobs, oldest first',
    ok: { 200: { description: 'every job', json: 'Job', array: true } },
  },
  {
    name: 'getJob', method: 'get', path: '/api/jobs/:id', tag: 'jobs', access: 'user',
    summary: 'One job with its frames',
    params: [jobId],
    ok: { 200: { description: 'the job', json: 'JobDetail' } },
    errors: ['JOB_NOT_FOUND'],
  },
  {
    name: 'frameColumns', method: 'get', path: '/api/jobs/:id/frames', tag: 'jobs', access: 'user',
    summary: 'One job with its frames in columns (what the web UI reads)',
    description:
      'The frames of `GET /api/jobs/{id}` in a compact form for large jobs. With `since`, the `cursor` of an earlier answer, only the frames that changed after that answer (`partial: true`), so a client that was not listening for live events can catch up; a cursor the server no longer knows (too old, or from before a restart) gets every frame.',
    params: [jobId, { name: 'since', in: 'query', schema: frameCursorSchema, description: 'the `cursor` of an earlier answer', required: false }],
    ok: { 200: { description: 'the job and its frames', json: 'FrameColumns' } },
    errors: ['JOB_NOT_FOUND'],
  },
  {
    name: 'patchJob', method: 'patch', path: '/api/jobs/:id', tag: 'jobs', access: 'user',
    summary: 'Rename, re-prioritise or re-configure a job',
    params: [jobId],
    body: { kind: 'json', ref: 'JobPatch' },
    ok: { 200: { description: 'the job after the change', json: 'Job' } },
    errors: ['JOB_NOT_FOUND', 'JOB_STATE_CONFLICT', 'INVALID_JOB_SETTINGS'],
  },
  {
    name: 'replaceJobProject', method: 'put', path: '/api/jobs/:id/project', tag: 'jobs', access: 'user',
    summary: 'Add files to a held job: it takes a project holding them, and its scene is read again',
    description: 'For a job held because its project lacks files (or any job held before its first frame): make a project with the files added (`POST /api/projects`, upload the missing ones), then give its id here. The job keeps its .blend and settings; its preflight runs again, so it is queued, or held again if files are still missing.',
    params: [jobId],
    body: { kind: 'json', ref: 'JobProject' },
    ok: { 200: { description: 'the job, being read again', json: 'Job' } },
    errors: ['JOB_NOT_FOUND', 'JOB_STATE_CONFLICT', 'PROJECT_NOT_FOUND', 'PROJECT_INCOMPLETE'],
  },
  {
    name: 'deleteJob', method: 'delete', path: '/api/jobs/:id', tag: 'jobs', access: 'user',
    summary: 'Delete a job with its frames and files (a running job is cancelled first)',
    params: [jobId],
    ok: { 204: { description: 'deleted' } },
    errors: ['JOB_NOT_FOUND'],
  },
  jobAction('cancel', 'Cancel a job', 'the job already ended'),
  jobAction('pause', 'Pause a job: frames under way finish, no new ones are handed out', 'only a queued or rendering job can be paused'),
  jobAction('resume', 'Resume a paused (or held) job', 'the job is not paused'),
  jobAction('retry', "Queue a job's failed frames again, with fresh attempts", 'the job has no failed frames or has ended otherwise'),
  {
    name: 'frameFile', method: 'get', path: '/api/jobs/:id/frames/:frame', tag: 'results', access: 'user',
    summary: 'One rendered frame, as Blender saved it',
    params: [jobId, frameNumber],
    ok: { 200: { description: 'the image file', media: IMAGE_TYPES } },
    errors: ['FRAME_NOT_FOUND', 'FRAME_NOT_RENDERED'],
  },
  {
    name: 'framePreview', method: 'get', path: '/api/jobs/:id/frames/:frame/preview', tag: 'results', access: 'user',
    summary: 'A WebP preview of a rendered frame',
    params: [jobId, frameNumber, previewSize],
    ok: { 200: { description: 'WebP image', media: ['image/webp'] } },
    errors: ['FRAME_NOT_FOUND', 'FRAME_NOT_RENDERED', 'NO_PREVIEW'],
  },
  {
    name: 'tilePreview', method: 'get', path: '/api/jobs/:id/frames/:frame/tiles/:tile/preview', tag: 'results', access: 'user',
    summary: 'A WebP preview of one finished tile of a split frame, until the frame is stitched',
    params: [jobId, frameNumber, tileNumber, previewSize],
    ok: { 200: { description: 'WebP image', media: ['image/webp'] } },
    errors: ['JOB_NOT_FOUND', 'TILE_NOT_FOUND', 'NO_PREVIEW'],
  },
  {
    name: 'framePasses', method: 'get', path: '/api/jobs/:id/frames/:frame/passes', tag: 'results', access: 'user',
    summary: "The compositor's File Output passes kept with a rendered frame",
    params: [jobId, frameNumber],
    ok: { 200: { description: 'each pass by name (its path in the frame\'s passes) and size', json: 'FramePass', array: true } },
    errors: ['FRAME_NOT_FOUND', 'FRAME_NOT_RENDERED'],
  },
  {
    name: 'passFile', method: 'get', path: '/api/jobs/:id/frames/:frame/passes/:name', tag: 'results', access: 'user',
    summary: 'One File Output pass of a rendered frame, as Blender saved it',
    params: [jobId, frameNumber, { name: 'name', in: 'path', schema: passNameSchema, description: 'the pass name as listed, URL-encoded (its "/" as %2F)' }],
    ok: { 200: { description: 'the file', media: IMAGE_TYPES } },
    errors: ['FRAME_NOT_FOUND', 'FRAME_NOT_RENDERED', 'PASS_NOT_FOUND'],
  },
  {
    name: 'frameLog', method: 'get', path: '/api/jobs/:id/frames/:frame/log', tag: 'results', access: 'user',
    summary: "Blender's output for a frame",
    params: [jobId, frameNumber],
    ok: { 200: { description: 'the log', json: 'FrameLog' } },
    errors: ['FRAME_NOT_FOUND'],
  },
  {
    name: 'video', method: 'get', path: '/api/jobs/:id/video', tag: 'results', access: 'user',
    summary: 'The H.264 MP4 of a completed job',
    params: [jobId],
    ok: { 200: { description: 'the video', media: ['video/mp4'] } },
    errors: ['JOB_NOT_FOUND', 'VIDEO_NOT_READY'],
  },
  {
    name: 'framesZip', method: 'get', path: '/api/jobs/:id/frames.zip', tag: 'results', access: 'user',
    summary: 'Every finished frame in one zip, with its File Output passes under passes/<frame>/ (streamed, stored uncompressed; no Content-Length)',
    params: [jobId],
    ok: { 200: { description: 'zip archive', media: ['application/zip'] } },
    errors: ['JOB_NOT_FOUND', 'FRAME_NOT_RENDERED'],
  },
  {
    name: 'listTokens', method: 'get', path: '/api/tokens', tag: 'tokens', access: 'user',
    summary: 'List access tokens (never their secrets)',
    ok: { 200: { description: 'every token, oldest first', json: 'TokenInfo', array: true } },
  },
  {
    name: 'createToken', method: 'post', path: '/api/tokens', tag: 'tokens', access: 'user',
    summary: 'Create a user or worker token',
    description: 'A worker token opens the worker protocol only; a user token the API, the CLI and the web UI. The secret is in this answer only: the server keeps a SHA-256 digest.',
    body: { kind: 'json', ref: 'TokenRequest' },
    ok: { 201: { description: 'the new token with its secret', json: 'CreatedToken' } },
  },
  {
    name: 'revokeToken', method: 'delete', path: '/api/tokens/:id', tag: 'tokens', access: 'user',
    summary: 'Revoke a token: its sessions end and workers using it are disconnected',
    params: [{ name: 'id', in: 'path', schema: z.string().regex(/^[a-z0-9]{1,40}$/, 'expected a token id'), description: 'token id' }],
    ok: { 204: { description: 'revoked' } },
    errors: ['TOKEN_NOT_FOUND', 'TOKEN_FROM_SETTINGS'],
  },
  {
    name: 'listWorkers', method: 'get', path: '/api/workers', tag: 'workers', access: 'user',
    summary: 'List workers with state, current frame and average frame time',
    ok: { 200: { description: 'every worker the farm has seen', json: 'Worker', array: true } },
  },
  workerMode('enable', 'Let a worker take frames again'),
  workerMode('drain', 'Let a worker finish its frame, then take no more'),
  workerMode('disable', 'Take a worker out at once: its frame goes back to the queue'),
  {
    name: 'setWorkerTags', method: 'put', path: '/api/workers/:id/tags', tag: 'workers', access: 'user',
    summary: "Set the tags a worker takes jobs by, on the server: they survive restarts and replace the worker's own `tags` setting",
    description: '`{"tags": null}` goes back to the worker\'s own setting. A job that requires tags goes only to workers with all of them.',
    params: [workerId],
    body: { kind: 'json', ref: 'WorkerTags' },
    ok: { 200: { description: 'the worker', json: 'Worker' } },
    errors: ['WORKER_NOT_FOUND'],
  },
  {
    name: 'listTagSchedules', method: 'get', path: '/api/tag-schedules', tag: 'workers', access: 'user',
    summary: 'The schedules set per worker tag, with the connected workers that carry each tag',
    ok: { 200: { description: 'every tag schedule, by tag', json: 'TagScheduleView', array: true } },
  },
  {
    name: 'setTagSchedule', method: 'put', path: '/api/tag-schedules/:tag', tag: 'workers', access: 'user',
    summary: "Set the hours the workers carrying a tag render (a whole room's), in each worker's local time",
    description:
      "Replaces the tag's schedule, if it had one. Every worker carrying the tag follows it at once, without reconnecting, beside its own `schedule` setting and its other tags' schedules: it renders only in hours that all of them allow. `stop` says what happens to a frame under way when the hours end (`finish` it, or hand it back `now`); null leaves it to each worker's `schedule_stop`.",
    params: [workerTag],
    body: { kind: 'json', ref: 'TagScheduleInput' },
    ok: { 200: { description: 'the tag schedule', json: 'TagScheduleView' } },
  },
  {
    name: 'clearTagSchedule', method: 'delete', path: '/api/tag-schedules/:tag', tag: 'workers', access: 'user',
    summary: "Remove a tag's schedule: its workers go back to their own schedules at once",
    params: [workerTag],
    ok: { 204: { description: 'removed' } },
    errors: ['TAG_SCHEDULE_NOT_FOUND'],
  },
  {
    name: 'downloadBlend', method: 'get', path: '/api/worker/blends/:sha256', tag: 'worker protocol', access: 'worker',
    summary: 'Download a scene by its SHA-256 (workers)',
    params: [sha256Param('SHA-256 of the .blend')],
    ok: { 200: { description: 'the .blend', media: ['application/octet-stream'] } },
    errors: ['BLEND_NOT_FOUND'],
  },
  {
    name: 'getProject', method: 'get', path: '/api/worker/projects/:sha256', tag: 'worker protocol', access: 'worker',
    summary: "A project's manifest (workers), to lay its files out around the .blend",
    params: [sha256Param('the project id')],
    ok: { 200: { description: 'the manifest', json: 'ProjectManifest' } },
    errors: ['PROJECT_NOT_FOUND'],
  },
  {
    name: 'downloadProjectFile', method: 'get', path: '/api/worker/files/:sha256', tag: 'worker protocol', access: 'worker',
    summary: 'Download a project file by its SHA-256 (workers)',
    params: [sha256Param('SHA-256 of the file')],
    ok: { 200: { description: 'the file', media: ['application/octet-stream'] } },
    errors: ['FILE_NOT_FOUND'],
  },
  {
    name: 'fileSources', method: 'get', path: '/api/worker/files/:sha256/sources', tag: 'worker protocol', access: 'worker',
    summary: 'Where a worker should fetch a file (.blend or project file) from: peers that hold it, or wait, or the server (workers)',
    description:
      'Peers that hold the file and have a free upload slot, least busy first (`peers`, to try in order, then the server); or `waitMs` when the file is on its way to a peer or every peer that holds it is busy, so the worker fetches other files first and asks again; or no peers, when only the server has it. The asking worker is named by its upload key. See src/protocol/peers.ts.',
    params: [
      sha256Param('SHA-256 of the file'),
      uploadKeyHeader,
      { name: 'exclude', in: 'query', schema: excludedPeersSchema, description: 'peers that failed this worker for this file (worker ids, comma-separated): never offered again', required: false },
    ],
    ok: { 200: { description: 'the sources', json: 'FileSources' } },
    errors: ['WORKER_NOT_CONNECTED'],
  },
  {
    name: 'uploadFrame', method: 'put', path: '/api/worker/jobs/:id/frames/:frame', tag: 'worker protocol', access: 'worker',
    summary: 'Upload a rendered frame (workers)',
    params: [jobId, frameNumber, uploadKeyHeader],
    body: { kind: 'result' },
    ok: { 200: { description: 'whether the frame was taken', json: 'FrameUploadAnswer' } },
    errors: ['FRAME_NOT_FOUND', 'WORKER_NOT_CONNECTED', 'TOO_LARGE', 'CORRUPT_UPLOAD', 'DISK_FULL'],
  },
  {
    name: 'uploadTile', method: 'put', path: '/api/worker/jobs/:id/frames/:frame/tiles/:tile', tag: 'worker protocol', access: 'worker',
    summary: 'Upload one rendered tile of a split frame (workers); the last tile in gets the frame stitched',
    params: [jobId, frameNumber, tileNumber, uploadKeyHeader],
    body: { kind: 'result' },
    ok: { 200: { description: 'whether the tile was taken', json: 'FrameUploadAnswer' } },
    errors: ['FRAME_NOT_FOUND', 'WORKER_NOT_CONNECTED', 'TOO_LARGE', 'CORRUPT_UPLOAD', 'DISK_FULL'],
  },
] as const satisfies readonly RouteDoc[];

export type RouteName = (typeof routeDocs)[number]['name'];
export type RouteNamed<N extends RouteName> = Extract<(typeof routeDocs)[number], { name: N }>;

/** ":id" and ":frame" of "/api/jobs/:id/frames/:frame". */
export type PathParamNames<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? Name | PathParamNames<`/${Rest}`>
  : P extends `${string}:${infer Name}`
    ? Name
    : never;
export type RouteParams<N extends RouteName> = Record<PathParamNames<RouteNamed<N>['path']>, string | number>;

/** What each path parameter holds: a name means the same thing on every route. */
interface PathParamTypes {
  id: string;
  frame: number;
  tile: number;
  sha256: string;
  name: string;
  tag: string;
}
/** A route's path parameters once checked against its declaration (edge/routing.ts pathOf). */
export type PathValues<N extends RouteName> = {
  [K in PathParamNames<RouteNamed<N>['path']>]: K extends keyof PathParamTypes ? PathParamTypes[K] : string;
};
/** What each query parameter holds, by name, once checked (defaults applied). */
export interface QueryValues {
  size: 'small' | 'large';
  since?: string;
  exclude?: string;
}

/** A route's declaration by its name. */
export function routeNamed<N extends RouteName>(name: N): RouteNamed<N> {
  const route = routeDocs.find((candidate) => candidate.name === name);
  if (!route) throw new Error(`no route named ${name}`);
  return route as RouteNamed<N>;
}

/** The URL path of a route by its name, its parameters filled in (encoded). */
export function apiPath<N extends RouteName>(name: N, ...[params]: PathParamNames<RouteNamed<N>['path']> extends never ? [] : [RouteParams<N>]): string {
  return routeNamed(name).path.replace(/:(\w+)/g, (_, key: string) => {
    const value = (params as Record<string, string | number> | undefined)?.[key];
    if (value === undefined) throw new Error(`apiPath(${name}): no value for :${key}`);
    return encodeURIComponent(String(value));
  });
}
