import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  apiErrorSchema,
  errorCatalogue,
  type ErrorCode,
  CLIENT_HEADER,
  farmChangeSchema,
  farmEventSchema,
  frameColumnsSchema,
  frameCountsSchema,
  frameCursorSchema,
  frameLogSchema,
  frameRangeSchema,
  frameSchema,
  idSchema,
  jobDetailSchema,
  jobOptionsSchema,
  jobPatchSchema,
  jobSchema,
  jobStateSchema,
  frameStateSchema,
  loginSchema,
  createdTokenSchema,
  tokenInfoSchema,
  tokenRequestSchema,
  observerMessageSchema,
  outputFormatSchema,
  PROTOCOL_VERSION,
  sceneInfoSchema,
  sceneOverridesSchema,
  sha256Schema,
  tileIndexSchema,
  UPLOAD_KEY_HEADER,
  workerSchema,
  workerStateSchema,
} from '../protocol/index.ts';
import { SESSION_COOKIE } from './auth.ts';
import { knownJobFields } from './job-form.ts';

/**
 * The OpenAPI 3.1 description of the HTTP API, generated from the zod schemas the server
 * validates with, so the document cannot drift from the code. `GET /api/openapi.json`
 * serves it; `GET /api/docs` renders it as a self-contained page (no scripts, no CDN).
 */

// ---- shapes that are not (yet) in src/protocol --------------------------------------

export const infoSchema = z.object({
  protocol: z.number().int().describe('WebSocket protocol version'),
  wsPort: z.number().int().describe('WebSocket port for live events (`{"type":"observe","protocol":1}`) and workers'),
  tls: z.boolean().describe('true when the server speaks HTTPS and WSS (tls_cert and tls_key): open wss:// on wsPort'),
});
export const sessionSchema = z.object({ authenticated: z.boolean() });
export const healthSchema = z.object({
  ok: z.boolean(),
  database: z.boolean().describe('the job database answered a query'),
  error: z.string().optional(),
});
export const frameUploadAnswerSchema = z.object({
  accepted: z.boolean().describe('false when the frame was already done or the job ended; the upload was discarded'),
  reason: z.string().optional(),
});

// ---- components --------------------------------------------------------------------

type Meta = { id: string; description?: string };

/** Shapes the server sends: rendered as they come out (defaults applied). */
function responseRegistry() {
  const registry = z.registry<Meta>();
  registry.add(jobSchema, { id: 'Job', description: 'A job with its frame counts.' });
  registry.add(jobDetailSchema, { id: 'JobDetail', description: 'A job with every frame.' });
  registry.add(jobStateSchema, { id: 'JobState' });
  registry.add(frameSchema, { id: 'Frame' });
  registry.add(frameColumnsSchema, {
    id: 'FrameColumns',
    description:
      'A job with its frames in columns: entry i of every column is the i-th frame number of `runs`, ascending; `errors`, `progress` and `tiles` list only the frames that have one, as [index, value]. Says what `frameList` says, in about a tenth of the bytes.',
  });
  registry.add(frameStateSchema, { id: 'FrameState' });
  registry.add(frameCountsSchema, { id: 'FrameCounts' });
  registry.add(frameRangeSchema, { id: 'FrameRange', description: 'Frames start..end (inclusive), every step-th; end >= start.' });
  registry.add(frameLogSchema, { id: 'FrameLog', description: "Blender's output for one frame, and its error if it failed." });
  registry.add(sceneInfoSchema, { id: 'SceneInfo', description: 'What a worker read from the .blend.' });
  registry.add(sceneOverridesSchema, { id: 'SceneOverrides', description: 'Scene values the job overrides; null keeps the .blend\'s own.' });
  registry.add(outputFormatSchema, { id: 'OutputFormat' });
  registry.add(workerSchema, { id: 'Worker' });
  registry.add(workerStateSchema, { id: 'WorkerState' });
  registry.add(apiErrorSchema, { id: 'Error', description: 'Every error answer: a message fit to show to a person.' });
  registry.add(infoSchema, { id: 'Info' });
  registry.add(sessionSchema, { id: 'Session' });
  registry.add(tokenInfoSchema, { id: 'TokenInfo', description: 'An access token, without its secret.' });
  registry.add(createdTokenSchema, { id: 'CreatedToken', description: 'A new token with its secret, shown only here.' });
  registry.add(healthSchema, { id: 'Health' });
  registry.add(frameUploadAnswerSchema, { id: 'FrameUploadAnswer' });
  registry.add(farmChangeSchema, { id: 'FarmChange', description: 'One change in the farm.' });
  registry.add(farmEventSchema, { id: 'FarmEvent', description: 'What WebSocket observers receive: changes in coalesced batches.' });
  return registry;
}

/** Shapes clients send: rendered as accepted (defaults make fields optional). */
function requestRegistry() {
  const registry = z.registry<Meta>();
  registry.add(jobPatchSchema, {
    id: 'JobPatch',
    description: 'Name and priority change any time; frames, fileFormat, resolutionPercentage and samples only before the first frame is handed out (a held or queued job). null resets an override to the scene\'s value.',
  });
  registry.add(frameRangeSchema, { id: 'FrameRangeInput', description: 'Frames start..end (inclusive), every step-th (default 1); end >= start.' });
  registry.add(outputFormatSchema, { id: 'OutputFormat' });
  registry.add(loginSchema, { id: 'Login' });
  registry.add(tokenRequestSchema, { id: 'TokenRequest' });
  registry.add(observerMessageSchema, { id: 'ObserverMessage', description: 'The first WebSocket message of a live-event client.' });
  return registry;
}

const SAFE_INT = Number.MAX_SAFE_INTEGER;

/**
 * Drops zod's JSON Schema noise: per-schema $schema/$id and the safe-integer bounds of
 * every z.int(). With `open`, objects accept fields they do not list: what the server
 * sends may grow, and clients are expected to ignore fields they do not know.
 */
function tidy(value: unknown, open = false): unknown {
  if (Array.isArray(value)) return value.map((v) => tidy(v, open));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key === '$schema' || key === '$id') continue;
    if ((key === 'minimum' || key === 'maximum') && (v === SAFE_INT || v === -SAFE_INT)) continue;
    if (open && key === 'additionalProperties' && v === false) continue;
    out[key] = tidy(v, open);
  }
  return out;
}

const REF = (id: string) => `#/components/schemas/${id}`;

function componentsOf(registry: ReturnType<typeof responseRegistry>, io: 'input' | 'output') {
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-2020-12', io, unrepresentable: 'any', uri: REF }) as {
    schemas: Record<string, unknown>;
  };
  return tidy(schemas, io === 'output') as Record<string, Record<string, unknown>>;
}

/** An inline schema for a parameter or field; registered schemas inside become $refs. */
function inline(schema: z.ZodType, io: 'input' | 'output' = 'input'): Record<string, unknown> {
  return tidy(z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' })) as Record<string, unknown>;
}

// ---- routes ------------------------------------------------------------------------

import type { Access } from './access.ts';
type Body =
  | { kind: 'json'; ref: string }
  | { kind: 'multipart' }
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
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** Fastify style, e.g. /api/jobs/:id */
  path: string;
  tag: string;
  summary: string;
  description?: string;
  access: Access;
  params?: Param[];
  body?: Body;
  ok: Record<number, Answer>;
  /** Error codes besides the ones every route of its kind can answer (src/protocol/errors.ts). */
  errors?: ErrorCode[];
}

const jobId: Param = { name: 'id', in: 'path', schema: idSchema, description: 'job id' };
const workerId: Param = { name: 'id', in: 'path', schema: idSchema, description: 'worker id' };
const frameNumber: Param = { name: 'frame', in: 'path', schema: z.int(), description: 'frame number (may be negative)' };
const tileNumber: Param = { name: 'tile', in: 'path', schema: tileIndexSchema, description: 'tile index, row by row from the top-left, from 0' };
const uploadHeaders: Param[] = [
  { name: UPLOAD_KEY_HEADER, in: 'header', schema: z.string(), description: "the upload key of the worker's open WebSocket connection (sent in its welcome); an unknown key is answered 503", required: true },
  { name: 'x-archenland-sha256', in: 'header', schema: sha256Schema, description: 'SHA-256 of the body; a mismatch is refused', required: true },
  { name: 'x-archenland-render-ms', in: 'header', schema: z.number().min(0).max(1e10), description: 'render time in milliseconds', required: true },
];
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/x-exr', 'image/tiff', 'application/octet-stream'];

const jobAction = (action: string, summary: string, conflict: string): RouteDoc => ({
  method: 'post',
  path: `/api/jobs/:id/${action}`,
  tag: 'jobs',
  summary,
  description: `Answers \`JOB_STATE_CONFLICT\` when ${conflict}.`,
  access: 'user',
  params: [jobId],
  ok: { 200: { description: 'the job after the change', json: 'Job' } },
  errors: ['JOB_NOT_FOUND', 'JOB_STATE_CONFLICT'],
});

const workerMode = (mode: 'enable' | 'drain' | 'disable', summary: string): RouteDoc => ({
  method: 'post',
  path: `/api/workers/:id/${mode}`,
  tag: 'workers',
  summary,
  access: 'user',
  params: [workerId],
  ok: { 200: { description: 'the worker after the change', json: 'Worker' } },
  errors: ['WORKER_NOT_FOUND'],
});

/**
 * Every route of the HTTP app, with the access it needs: the server takes each route's
 * access from here when the route is registered (access.ts), and test/openapi.test.ts
 * checks this table against the routes Fastify has.
 */
export const routeDocs: RouteDoc[] = [
  {
    method: 'get', path: '/healthz', tag: 'operations', access: 'open',
    summary: 'Liveness and database check',
    description: 'For load balancers and service managers: 200 when the server answers and its database does, 503 otherwise.',
    ok: { 200: { description: 'healthy', json: 'Health' }, 503: { description: 'the database does not answer', json: 'Health' } },
  },
  {
    method: 'get', path: '/metrics', tag: 'operations', access: 'open',
    summary: 'Prometheus metrics',
    description: 'Prometheus text format: jobs, workers and frames by state, frames rendered, frame render times, upload bytes, process metrics. See docs/api.md.',
    ok: { 200: { description: 'metrics in the Prometheus text format', media: ['text/plain'] } },
  },
  {
    method: 'get', path: '/', tag: 'operations', access: 'open',
    summary: 'The web interface',
    description: 'Serves the web UI (and its files) when it is built; otherwise a short JSON note.',
    ok: { 200: { description: 'the web UI', media: ['text/html', 'application/json'] } },
  },
  {
    method: 'get', path: '/api/info', tag: 'operations', access: 'open',
    summary: 'Protocol version and WebSocket port',
    description: `Live events: open a WebSocket on \`wsPort\`, send \`{"type":"observe","protocol":${PROTOCOL_VERSION},"token":"…"}\` (ObserverMessage) and receive FarmEvent messages.`,
    ok: { 200: { description: 'server info', json: 'Info' } },
  },
  {
    method: 'get', path: '/api/openapi.json', tag: 'operations', access: 'open',
    summary: 'This document (OpenAPI 3.1)',
    ok: { 200: { description: 'the OpenAPI document', media: ['application/json'] } },
  },
  {
    method: 'get', path: '/api/docs', tag: 'operations', access: 'open',
    summary: 'This document as a web page',
    ok: { 200: { description: 'HTML', media: ['text/html'] } },
  },
  {
    method: 'get', path: '/api/session', tag: 'session', access: 'open',
    summary: 'Whether this request carries valid credentials',
    ok: { 200: { description: 'session state', json: 'Session' } },
  },
  {
    method: 'post', path: '/api/login', tag: 'session', access: 'open',
    summary: 'Browser login with a user token',
    description: `Starts a server-side session and sets the HttpOnly cookie \`${SESSION_COOKIE}\` holding its random id. Sessions expire after 14 days, end at logout, and end when their token is revoked. Worker tokens cannot log in.`,
    body: { kind: 'json', ref: 'Login' },
    ok: { 200: { description: 'logged in; the cookie is set', json: 'Session', headers: { 'set-cookie': 'the session cookie' } } },
    errors: ['UNAUTHENTICATED'],
  },
  {
    method: 'post', path: '/api/logout', tag: 'session', access: 'open',
    summary: 'Browser logout: ends the session on the server and clears the cookie',
    ok: { 200: { description: 'logged out', json: 'Session' } },
  },
  {
    method: 'post', path: '/api/jobs', tag: 'jobs', access: 'user',
    summary: 'Submit a .blend',
    description:
      'multipart/form-data with the .blend in the field `file` and optional text fields. The server probes the scene (frame range, fps, resolution, engine, format) on a worker; fields given here override the file\'s values.',
    body: { kind: 'multipart' },
    ok: { 201: { description: 'the new job (state probing)', json: 'Job' } },
    errors: ['BAD_UPLOAD', 'EMPTY_FILE', 'INVALID_JOB_SETTINGS', 'TOO_LARGE', 'NOT_A_BLEND', 'UNSUPPORTED_MEDIA_TYPE', 'CORRUPT_UPLOAD', 'DISK_FULL'],
  },
  {
    method: 'get', path: '/api/jobs', tag: 'jobs', access: 'user',
    summary: 'List jobs, oldest first',
    ok: { 200: { description: 'every job', json: 'Job', array: true } },
  },
  {
    method: 'get', path: '/api/jobs/:id', tag: 'jobs', access: 'user',
    summary: 'One job with its frames',
    params: [jobId],
    ok: { 200: { description: 'the job', json: 'JobDetail' } },
    errors: ['JOB_NOT_FOUND'],
  },
  {
    method: 'get', path: '/api/jobs/:id/frames', tag: 'jobs', access: 'user',
    summary: 'One job with its frames in columns (what the web UI reads)',
    description:
      'The frames of `GET /api/jobs/{id}` in a compact form for large jobs. With `since`, the `cursor` of an earlier answer, only the frames that changed after that answer (`partial: true`), so a client that was not listening for live events can catch up; a cursor the server no longer knows (too old, or from before a restart) gets every frame.',
    params: [jobId, { name: 'since', in: 'query', schema: frameCursorSchema, description: 'the `cursor` of an earlier answer', required: false }],
    ok: { 200: { description: 'the job and its frames', json: 'FrameColumns' } },
    errors: ['JOB_NOT_FOUND'],
  },
  {
    method: 'patch', path: '/api/jobs/:id', tag: 'jobs', access: 'user',
    summary: 'Rename, re-prioritise or re-configure a job',
    params: [jobId],
    body: { kind: 'json', ref: 'JobPatch' },
    ok: { 200: { description: 'the job after the change', json: 'Job' } },
    errors: ['JOB_NOT_FOUND', 'JOB_STATE_CONFLICT', 'INVALID_JOB_SETTINGS'],
  },
  {
    method: 'delete', path: '/api/jobs/:id', tag: 'jobs', access: 'user',
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
    method: 'get', path: '/api/jobs/:id/frames/:frame', tag: 'results', access: 'user',
    summary: 'One rendered frame, as Blender saved it',
    params: [jobId, frameNumber],
    ok: { 200: { description: 'the image file', media: IMAGE_TYPES } },
    errors: ['FRAME_NOT_FOUND', 'FRAME_NOT_RENDERED'],
  },
  {
    method: 'get', path: '/api/jobs/:id/frames/:frame/preview', tag: 'results', access: 'user',
    summary: 'A WebP preview of a rendered frame',
    params: [jobId, frameNumber, { name: 'size', in: 'query', schema: z.enum(['small', 'large']).default('small'), description: 'preview size', required: false }],
    ok: { 200: { description: 'WebP image', media: ['image/webp'] } },
    errors: ['FRAME_NOT_FOUND', 'FRAME_NOT_RENDERED', 'NO_PREVIEW'],
  },
  {
    method: 'get', path: '/api/jobs/:id/frames/:frame/tiles/:tile/preview', tag: 'results', access: 'user',
    summary: 'A WebP preview of one finished tile of a split frame, until the frame is stitched',
    params: [jobId, frameNumber, tileNumber, { name: 'size', in: 'query', schema: z.enum(['small', 'large']).default('small'), description: 'preview size', required: false }],
    ok: { 200: { description: 'WebP image', media: ['image/webp'] } },
    errors: ['JOB_NOT_FOUND', 'TILE_NOT_FOUND', 'NO_PREVIEW'],
  },
  {
    method: 'get', path: '/api/jobs/:id/frames/:frame/log', tag: 'results', access: 'user',
    summary: "Blender's output for a frame",
    params: [jobId, frameNumber],
    ok: { 200: { description: 'the log', json: 'FrameLog' } },
    errors: ['FRAME_NOT_FOUND'],
  },
  {
    method: 'get', path: '/api/jobs/:id/video', tag: 'results', access: 'user',
    summary: 'The H.264 MP4 of a completed job',
    params: [jobId],
    ok: { 200: { description: 'the video', media: ['video/mp4'] } },
    errors: ['JOB_NOT_FOUND', 'VIDEO_NOT_READY'],
  },
  {
    method: 'get', path: '/api/jobs/:id/frames.zip', tag: 'results', access: 'user',
    summary: 'Every finished frame in one zip (streamed, stored uncompressed; no Content-Length)',
    params: [jobId],
    ok: { 200: { description: 'zip archive', media: ['application/zip'] } },
    errors: ['JOB_NOT_FOUND', 'FRAME_NOT_RENDERED'],
  },
  {
    method: 'get', path: '/api/tokens', tag: 'tokens', access: 'user',
    summary: 'List access tokens (never their secrets)',
    ok: { 200: { description: 'every token, oldest first', json: 'TokenInfo', array: true } },
  },
  {
    method: 'post', path: '/api/tokens', tag: 'tokens', access: 'user',
    summary: 'Create a user or worker token',
    description: 'A worker token opens the worker protocol only; a user token the API, the CLI and the web UI. The secret is in this answer only: the server keeps a SHA-256 digest.',
    body: { kind: 'json', ref: 'TokenRequest' },
    ok: { 201: { description: 'the new token with its secret', json: 'CreatedToken' } },
  },
  {
    method: 'delete', path: '/api/tokens/:id', tag: 'tokens', access: 'user',
    summary: 'Revoke a token: its sessions end and workers using it are disconnected',
    params: [{ name: 'id', in: 'path', schema: z.string(), description: 'token id' }],
    ok: { 204: { description: 'revoked' } },
    errors: ['TOKEN_NOT_FOUND', 'TOKEN_FROM_SETTINGS'],
  },
  {
    method: 'get', path: '/api/workers', tag: 'workers', access: 'user',
    summary: 'List workers with state, current frame and average frame time',
    ok: { 200: { description: 'every worker the farm has seen', json: 'Worker', array: true } },
  },
  workerMode('enable', 'Let a worker take frames again'),
  workerMode('drain', 'Let a worker finish its frame, then take no more'),
  workerMode('disable', 'Take a worker out at once: its frame goes back to the queue'),
  {
    method: 'get', path: '/api/worker/blends/:sha256', tag: 'worker protocol', access: 'worker',
    summary: 'Download a scene by its SHA-256 (workers)',
    params: [{ name: 'sha256', in: 'path', schema: sha256Schema, description: 'SHA-256 of the .blend' }],
    ok: { 200: { description: 'the .blend', media: ['application/octet-stream'] } },
    errors: ['BLEND_NOT_FOUND'],
  },
  {
    method: 'put', path: '/api/worker/jobs/:id/frames/:frame', tag: 'worker protocol', access: 'worker',
    summary: 'Upload a rendered frame (workers)',
    params: [jobId, frameNumber, ...uploadHeaders],
    body: { kind: 'binary', description: 'the image file as Blender saved it' },
    ok: { 200: { description: 'whether the frame was taken', json: 'FrameUploadAnswer' } },
    errors: ['FRAME_NOT_FOUND', 'WORKER_NOT_CONNECTED', 'TOO_LARGE', 'CORRUPT_UPLOAD', 'DISK_FULL'],
  },
  {
    method: 'put', path: '/api/worker/jobs/:id/frames/:frame/tiles/:tile', tag: 'worker protocol', access: 'worker',
    summary: 'Upload one rendered tile of a split frame (workers); the last tile in gets the frame stitched',
    params: [jobId, frameNumber, tileNumber, ...uploadHeaders],
    body: { kind: 'binary', description: 'the tile image as Blender saved it (cropped to the tile)' },
    ok: { 200: { description: 'whether the tile was taken', json: 'FrameUploadAnswer' } },
    errors: ['FRAME_NOT_FOUND', 'WORKER_NOT_CONNECTED', 'TOO_LARGE', 'CORRUPT_UPLOAD', 'DISK_FULL'],
  },
];

/** The declared access of a route (HEAD follows GET); undefined for a route not in the table. */
export function routeAccess(method: string, path: string): Access | undefined {
  const wanted = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
  return routeDocs.find((route) => route.method === wanted && route.path === path)?.access;
}

/** Field descriptions of the job upload; types come from jobOptionsSchema. */
const jobFieldDescriptions: Record<string, string> = {
  name: 'job name (default: the file name)',
  frames: 'frames to render: `N`, `A-B` or `A-B:STEP` (default: the scene\'s range)',
  fileFormat: 'output format (default: the scene\'s)',
  resolutionPercentage: 'resolution percentage override',
  samples: 'samples override',
  allowScripts: 'let Python scripts inside the .blend run (only for files you trust)',
  priority: 'higher runs first',
  hold: 'queue the job paused after probing, so its settings can be reviewed and edited first',
  tiles: 'split frames into tiles rendered on several workers: `auto` (when idle workers outnumber the frames left; default), `off`, a count such as `4`, or a grid such as `2x2`',
  forceTiles: 'split even when the scene uses effects that cross tile edges (denoising, glare); seams may show',
};

function multipartSchema(): Record<string, unknown> {
  const properties: Record<string, unknown> = {
    file: { type: 'string', contentMediaType: 'application/octet-stream', description: 'the .blend (plain, gzip or zstd)' },
  };
  const shape = jobOptionsSchema.shape as Record<string, z.ZodType>;
  for (const field of knownJobFields) {
    const schema =
      field === 'frames'
        ? { type: 'string', pattern: '^\\s*-?\\d+\\s*(-\\s*-?\\d+\\s*)?(:\\s*\\d+\\s*)?$', examples: ['1-250', '1-250:5', '12'] }
        : field === 'tiles'
          ? { type: 'string', pattern: '^\\s*(auto|off|\\d+|\\d+\\s*x\\s*\\d+)\\s*$', examples: ['auto', 'off', '4', '2x2'] }
          : inline(shape[field]!);
    properties[field] = { ...schema, description: jobFieldDescriptions[field] ?? '' };
  }
  return { type: 'object', required: ['file'], properties, additionalProperties: false };
}

/** Every code a route may answer: its own, and those of every route of its kind. */
export function routeErrorCodes(route: RouteDoc): ErrorCode[] {
  const codes = new Set<ErrorCode>();
  if (route.params?.length || route.body) codes.add('INVALID_REQUEST');
  if (route.access !== 'worker') codes.add('UNKNOWN_HOST');
  if (route.access !== 'open') codes.add('UNAUTHENTICATED').add('WRONG_TOKEN_ROLE');
  if (route.access === 'user' && route.method !== 'get') codes.add('CROSS_SITE_REQUEST');
  for (const code of route.errors ?? []) codes.add(code);
  codes.add('INTERNAL');
  return [...codes];
}

function errorsByStatus(route: RouteDoc): Map<number, ErrorCode[]> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of routeErrorCodes(route)) {
    const status = errorCatalogue[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return new Map([...byStatus].sort(([a], [b]) => a - b));
}

/** An error answer: which codes it may carry (listed again as x-error-codes for tools) and what each means. */
const errorAnswer = (codes: ErrorCode[]) => ({
  description: codes.map((code) => `\`${code}\`: ${errorCatalogue[code].title}`).join('; '),
  'x-error-codes': codes,
  content: { 'application/json': { schema: { $ref: REF('Error') } } },
});

function operation(route: RouteDoc): Record<string, unknown> {
  const op: Record<string, unknown> = {
    operationId: operationId(route),
    tags: [route.tag],
    summary: route.summary,
  };
  if (route.description) op.description = route.description;
  const changesState = route.method !== 'get';
  if (route.access === 'open') op.security = [];
  if (route.access === 'worker') op.security = [{ bearer: [] }];
  if (route.params?.length || (route.access === 'user' && changesState)) {
    const params = (route.params ?? []).map((p) => ({
      name: p.name,
      in: p.in,
      required: p.in === 'path' ? true : (p.required ?? false),
      description: p.description,
      schema: inline(p.schema),
    }));
    if (route.access === 'user' && changesState) {
      params.push({
        name: CLIENT_HEADER,
        in: 'header',
        required: false,
        description: 'required on state-changing requests that authenticate with the session cookie or loopback trust (protection against cross-site requests); not needed with a bearer token',
        schema: { type: 'string' },
      });
    }
    op.parameters = params;
  }
  if (route.body?.kind === 'json') {
    op.requestBody = { required: true, content: { 'application/json': { schema: { $ref: REF(route.body.ref) } } } };
  } else if (route.body?.kind === 'multipart') {
    op.requestBody = {
      required: true,
      content: { 'multipart/form-data': { schema: multipartSchema(), encoding: { file: { contentType: 'application/octet-stream' } } } },
    };
  } else if (route.body?.kind === 'binary') {
    op.requestBody = { required: true, description: route.body.description, content: { 'application/octet-stream': {} } };
  }

  const responses: Record<string, unknown> = {};
  for (const [status, answer] of Object.entries(route.ok)) {
    const response: Record<string, unknown> = { description: answer.description };
    if (answer.json) {
      const ref = { $ref: REF(answer.json) };
      response.content = { 'application/json': { schema: answer.array ? { type: 'array', items: ref } : ref } };
    } else if (answer.media) {
      response.content = Object.fromEntries(answer.media.map((m) => [m, {}]));
    }
    if (answer.headers) {
      response.headers = Object.fromEntries(Object.entries(answer.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }]));
    }
    responses[status] = response;
  }
  for (const [status, codes] of errorsByStatus(route)) {
    if (!(status in responses)) responses[status] = errorAnswer(codes);
  }
  op.responses = responses;
  return op;
}

function operationId(route: RouteDoc): string {
  const words = route.path
    .split('/')
    .filter((s) => s && s !== 'api')
    .map((s) => (s.startsWith(':') ? `by-${s.slice(1)}` : s.replace(/\W+/g, '-')));
  const camel = [route.method, ...words]
    .join('-')
    .split('-')
    .filter(Boolean)
    .map((w, i) => (i === 0 ? w : w[0]!.toUpperCase() + w.slice(1)))
    .join('');
  return camel || `${route.method}Root`;
}

/** `/api/jobs/:id` -> `/api/jobs/{id}` */
export const openApiPath = (fastifyPath: string) => fastifyPath.replace(/:(\w+)/g, '{$1}');

let cached: Record<string, unknown> | undefined;

export function buildOpenApiDocument(): Record<string, unknown> {
  if (cached) return cached;
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routeDocs) {
    const key = openApiPath(route.path);
    (paths[key] ??= {})[route.method] = operation(route);
  }
  cached = {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'Archenland render farm API',
      version: '0.1.0',
      description:
        'The HTTP API of an Archenland server: submit Blender scenes, steer jobs and workers, fetch frames and videos. ' +
        'Calls from other machines need the farm token (`Authorization: Bearer …`); calls from the server\'s own machine are trusted unless `trust_loopback = false`. ' +
        'Every error answer is `{"error": "…"}`. Generated from the same zod schemas the server validates with.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'jobs', description: 'submit and steer jobs' },
      { name: 'results', description: 'frames, previews, logs, videos' },
      { name: 'workers', description: 'render machines' },
      { name: 'session', description: 'browser login' },
      { name: 'tokens', description: 'user and worker access tokens' },
      { name: 'operations', description: 'health, metrics, server info, this document' },
      { name: 'worker protocol', description: 'used by workers, with the farm token' },
    ],
    security: [{ bearer: [] }, { cookie: [] }],
    paths,
    components: {
      schemas: { ...componentsOf(responseRegistry(), 'output'), ...componentsOf(requestRegistry(), 'input') },
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'a user token (API) or a worker token (worker protocol); the first of each is made on first start in data_dir/user-token and data_dir/worker-token' },
        cookie: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE, description: 'set by POST /api/login' },
      },
    },
  };
  return cached;
}

/** Serves the document and its HTML rendering. */
export function registerOpenApi(app: FastifyInstance<any, any, any, any, any>): void {
  app.get('/api/openapi.json', async (_request, reply) => reply.type('application/json; charset=utf-8').send(buildOpenApiDocument()));
  let page: string | undefined;
  app.get('/api/docs', async (_request, reply) => {
    page ??= renderDocsPage(buildOpenApiDocument());
    return reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
      .send(page);
  });
}

// ---- the HTML page -------------------------------------------------------------------

type Json = Record<string, any>;

const escapeHtml = (text: unknown) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Inline code spans in descriptions, on escaped text. */
const prose = (text: unknown) => escapeHtml(text ?? '').replace(/`([^`]+)`/g, '<code>$1</code>');

/** A compact, readable type for a JSON Schema: `Job`, `string (pattern …)`, `integer 1..1000 | null`. */
function typeOf(schema: Json | undefined): string {
  if (!schema || Object.keys(schema).length === 0) return 'any';
  if (schema.$ref) {
    const id = String(schema.$ref).split('/').pop()!;
    return `<a href="#schema-${escapeHtml(id)}">${escapeHtml(id)}</a>`;
  }
  if (schema.anyOf || schema.oneOf) return (schema.anyOf ?? schema.oneOf).map(typeOf).join(' | ');
  if (schema.enum) return schema.enum.map((v: unknown) => `<code>${escapeHtml(JSON.stringify(v))}</code>`).join(' | ');
  if (schema.const !== undefined) return `<code>${escapeHtml(JSON.stringify(schema.const))}</code>`;
  if (schema.type === 'array') return `array of ${typeOf(schema.items)}`;
  if (schema.type === 'object' && schema.properties) return 'object';
  const parts = [escapeHtml(Array.isArray(schema.type) ? schema.type.join(' | ') : (schema.type ?? 'any'))];
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  if (min !== undefined || max !== undefined) parts.push(`${min ?? ''}..${max ?? ''}`);
  if (schema.minLength !== undefined || schema.maxLength !== undefined) parts.push(`length ${schema.minLength ?? 0}..${schema.maxLength ?? ''}`);
  if (schema.pattern) parts.push(`<code>${escapeHtml(schema.pattern)}</code>`);
  if (schema.format) parts.push(`(${escapeHtml(schema.format)})`);
  if (schema.contentMediaType) parts.push(`(${escapeHtml(schema.contentMediaType)})`);
  if (schema.default !== undefined) parts.push(`default <code>${escapeHtml(JSON.stringify(schema.default))}</code>`);
  return parts.join(' ');
}

function propertiesTable(schema: Json, depth = 0): string {
  const variants = schema.oneOf ?? schema.anyOf;
  if (variants && depth < 3) {
    return variants
      .map((v: Json, i: number) => `<p class="variant">variant ${i + 1}: ${typeOf(v)}</p>${v.properties ? propertiesTable(v, depth + 1) : ''}`)
      .join('');
  }
  if (!schema.properties) return `<p>${typeOf(schema)}</p>`;
  const required = new Set<string>(schema.required ?? []);
  const rows = Object.entries(schema.properties as Record<string, Json>).map(([name, prop]) => {
    const nested = prop.type === 'object' && prop.properties && depth < 3 ? propertiesTable(prop, depth + 1) : '';
    const nullableObject = (prop.anyOf ?? []).find((p: Json) => p.type === 'object' && p.properties);
    const nestedNullable = nullableObject && depth < 3 ? `<p class="variant">or null:</p>${propertiesTable(nullableObject, depth + 1)}` : '';
    return `<tr><td><code>${escapeHtml(name)}</code>${required.has(name) ? '' : ' <span class="opt">optional</span>'}</td><td>${typeOf(prop)}${nested}${nestedNullable}</td><td>${prose(prop.description)}</td></tr>`;
  });
  return `<table class="props"><thead><tr><th>field</th><th>type</th><th>meaning</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

export function renderDocsPage(doc: Json): string {
  const info = doc.info as Json;
  const byTag = new Map<string, string[]>();
  const toc: string[] = [];
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Json>)) {
    for (const [method, op] of Object.entries(methods as Record<string, Json>)) {
      const anchor = `op-${op.operationId}`;
      const params = (op.parameters ?? []) as Json[];
      const paramRows = params
        .map((p) => `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${escapeHtml(p.in)}${p.required ? '' : ' <span class="opt">optional</span>'}</td><td>${typeOf(p.schema)}</td><td>${prose(p.description)}</td></tr>`)
        .join('');
      const body = op.requestBody
        ? Object.entries(op.requestBody.content as Record<string, Json>)
            .map(([media, content]) => `<h4>request body <code>${escapeHtml(media)}</code></h4>${content.schema ? propertiesTable(content.schema.$ref ? { anyOf: [content.schema] } : content.schema) : `<p>${prose(op.requestBody.description ?? 'raw bytes')}</p>`}`)
            .join('')
        : '';
      const responses = Object.entries(op.responses as Record<string, Json>)
        .map(([status, r]) => {
          const contents = Object.entries((r.content ?? {}) as Record<string, Json>)
            .map(([media, c]) => `<code>${escapeHtml(media)}</code>${c.schema ? ` ${typeOf(c.schema)}` : ''}`)
            .join(', ');
          return `<tr><td class="status s${status[0]}">${escapeHtml(status)}</td><td>${prose(r.description)}</td><td>${contents}</td></tr>`;
        })
        .join('');
      const access = Array.isArray(op.security) && op.security.length === 0 ? '<span class="badge open">no token</span>' : '';
      const html = `<section class="op" id="${escapeHtml(anchor)}">
<h3><span class="method ${escapeHtml(method)}">${escapeHtml(method.toUpperCase())}</span> <code>${escapeHtml(path)}</code> ${access}</h3>
<p>${prose(op.summary)}</p>${op.description ? `<p class="desc">${prose(op.description)}</p>` : ''}
${paramRows ? `<h4>parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>meaning</th></tr></thead><tbody>${paramRows}</tbody></table>` : ''}
${body}
<h4>responses</h4><table><thead><tr><th>status</th><th>meaning</th><th>content</th></tr></thead><tbody>${responses}</tbody></table>
</section>`;
      const tag = (op.tags?.[0] as string) ?? 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag)!.push(html);
      toc.push(`<li><a href="#${escapeHtml(anchor)}"><span class="method ${escapeHtml(method)}">${escapeHtml(method.toUpperCase())}</span> ${escapeHtml(path)}</a></li>`);
    }
  }
  const tags = (doc.tags as Json[]).map((t) => t.name as string).filter((t) => byTag.has(t));
  const sections = tags.map((tag) => `<h2 id="tag-${escapeHtml(tag)}">${escapeHtml(tag)}</h2>${byTag.get(tag)!.join('\n')}`).join('\n');
  const schemas = Object.entries(doc.components.schemas as Record<string, Json>)
    .map(([id, schema]) => `<section class="schema" id="schema-${escapeHtml(id)}"><h3>${escapeHtml(id)}</h3>${schema.description ? `<p>${prose(schema.description)}</p>` : ''}${propertiesTable(schema)}</section>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(info.title)}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1d2330;color:#fff;padding:1.2em 2em}header p{margin:.3em 0 0;color:#c9d1e0;max-width:60em}
header a{color:#9cc4ff}header code{background:#2c3547;color:#e8edf5}
main{display:grid;grid-template-columns:22em 1fr;gap:2em;padding:1.5em 2em}
nav ul{list-style:none;padding:0;margin:0;font-size:13px}nav li{margin:.15em 0}nav a{color:#1d2330;text-decoration:none}
nav a:hover{text-decoration:underline}
.op,.schema{background:#fff;border:1px solid #dfe3ea;border-radius:6px;padding:.3em 1.2em 1em;margin:0 0 1.2em}
h2{text-transform:capitalize;border-bottom:2px solid #dfe3ea;padding-bottom:.2em}
h3{font-size:16px}h4{margin:1em 0 .3em;font-size:13px;text-transform:uppercase;color:#5a6477}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #eef0f4;vertical-align:top}
th{color:#5a6477;font-weight:600}code{font:12.5px ui-monospace,monospace;background:#f1f3f7;padding:0 .25em;border-radius:3px}
.method{display:inline-block;min-width:4.2em;text-align:center;font:600 11px ui-monospace,monospace;border-radius:3px;padding:.15em .3em;color:#fff}
.get{background:#2f7d4f}.post{background:#2b5fb4}.put{background:#8a5a00}.patch{background:#7b4bb3}.delete{background:#b33a3a}
.opt{color:#8a93a5;font-size:11px}.badge{font-size:11px;border-radius:3px;padding:.1em .4em}.open{background:#e6f4ea;color:#2f7d4f}
.status{font-weight:600}.s2{color:#2f7d4f}.s4{color:#b36b00}.s5{color:#b33a3a}.desc{color:#3e475a}.variant{margin:.4em 0 .2em;color:#5a6477}
table.props table.props{margin:.3em 0 0 .5em;width:auto}
</style></head>
<body><header><h1>${escapeHtml(info.title)} <small>${escapeHtml(info.version)}</small></h1><p>${prose(info.description)}</p>
<p>OpenAPI ${escapeHtml(doc.openapi)} document: <a href="/api/openapi.json">/api/openapi.json</a></p></header>
<main><nav><h3>Endpoints</h3><ul>${toc.join('')}</ul><h3>Schemas</h3><ul>${Object.keys(doc.components.schemas).map((id) => `<li><a href="#schema-${escapeHtml(id)}">${escapeHtml(id)}</a></li>`).join('')}</ul></nav>
<div>${sections}<h2 id="schemas">schemas</h2>${schemas}</div></main></body></html>
`;
}
