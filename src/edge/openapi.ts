import type { FastifyInstance } from 'fastify';
import { on } from './routing.ts';
import { z } from 'zod';
import {
  apiErrorSchema,
  framePassSchema,
  projectCreatedSchema,
  projectManifestSchema,
  storedFileSchema,
  fileSourcesSchema,
  workerTagsSchema,
  tagScheduleInputSchema,
  tagScheduleViewSchema,
  resultManifestSchema,
  RESULT_IMAGE_FIELD,
  RESULT_MANIFEST_FIELD,
  RESULT_PASS_FIELD,
  errorCatalogue,
  type ErrorCode,
  CLIENT_HEADER,
  farmChangeSchema,
  farmEventSchema,
  frameColumnsSchema,
  frameCountsSchema,
  frameLogSchema,
  frameRangeSchema,
  frameSchema,
  jobDetailSchema,
  jobOptionsSchema,
  jobPatchSchema,
  jobProjectSchema,
  jobSchema,
  jobStateSchema,
  frameStateSchema,
  loginSchema,
  createdTokenSchema,
  tokenInfoSchema,
  tokenRequestSchema,
  observerMessageSchema,
  outputFormatSchema,
  sceneInfoSchema,
  sceneOverridesSchema,
  routeDocs,
  SESSION_COOKIE,
  type RouteDoc,
  workerSchema,
  workerStateSchema,
} from '../protocol/index.ts';
import { renderDocsPage } from './docs-page.ts';
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
  registry.add(resultManifestSchema, { id: 'ResultManifest', description: 'What a worker says about the frame it uploads; the server checks every checksum.' });
  registry.add(projectManifestSchema, { id: 'ProjectManifest', description: "A project: where the main .blend sits and every file it uses, each by path (relative to `root`, the submitting machine's folder), SHA-256 and size." });
  registry.add(projectCreatedSchema, { id: 'ProjectCreated', description: 'A project\'s id and the files (by SHA-256) the server still lacks.' });
  registry.add(storedFileSchema, { id: 'StoredFile' });
  registry.add(fileSourcesSchema, { id: 'FileSources', description: 'Where to fetch a file from: peers to try in order (then the server), or how long to wait before asking again.' });
  registry.add(workerTagsSchema, { id: 'WorkerTags', description: "A worker's tags from now on, or null for its own `tags` setting." });
  registry.add(tagScheduleViewSchema, {
    id: 'TagScheduleView',
    description: "A schedule set for a worker tag: the hours its workers render, in each worker's local time, and what happens to a frame under way when they end (null: each worker's schedule_stop).",
  });
  registry.add(framePassSchema, { id: 'FramePass', description: "A compositor File Output pass kept with a frame: its name (path in the frame's passes) and size in bytes." });
  registry.add(farmChangeSchema, { id: 'FarmChange', description: 'One change in the farm.' });
  registry.add(farmEventSchema, { id: 'FarmEvent', description: 'What WebSocket observers receive: changes in coalesced batches.' });
  return registry;
}

/** Shapes clients send: rendered as accepted (defaults make fields optional). */
function requestRegistry() {
  const registry = z.registry<Meta>();
  registry.add(jobProjectSchema, { id: 'JobProject', description: 'The project a held job takes: its own files and those added.' });
  registry.add(jobPatchSchema, {
    id: 'JobPatch',
    description: 'Name and priority change any time; frames, fileFormat, resolutionPercentage and samples only before the first frame is handed out (a held or queued job). null resets an override to the scene\'s value.',
  });
  registry.add(frameRangeSchema, { id: 'FrameRangeInput', description: 'Frames start..end (inclusive), every step-th (default 1); end >= start.' });
  registry.add(outputFormatSchema, { id: 'OutputFormat' });
  registry.add(loginSchema, { id: 'Login' });
  registry.add(tagScheduleInputSchema, {
    id: 'TagScheduleInput',
    description: 'A tag\'s schedule from now on, e.g. `{"schedule": "Mon-Fri 18:00-08:00; Sat-Sun", "stop": "finish"}`: entries separated by `;`, each days (Mon, Mon-Fri, Mon,Wed) and an optional HH:MM-HH:MM range that runs past midnight when it ends before it starts.',
  });
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
  denoising: '`false`: render with Cycles\' denoising off, for workers whose Blender lacks the denoiser (the fix the preflight offers for DENOISER_UNAVAILABLE)',
  project: 'the id of a project made with `POST /api/projects` whose files (textures, libraries, caches) the .blend uses; every file must be uploaded first',
  requiredTags: 'comma-separated worker tags, e.g. `gpu,room-2`: only workers whose `tags` setting has all of them render the job',
  blender: 'render with this Blender release, e.g. `4.2` (or one release, `4.2.1`); only workers that have it take the frames. Default: the oldest release the workers have that is not older than the Blender that saved the file',
  maxWorkers: 'at most this many workers render the job at once, leaving the others to other jobs (default: no limit)',
  order: 'the order frames are handed out in: `interleaved` (first, last, middle, then filling in, so a broken shot shows early; default) or `sequential` (frame order, for unbaked simulations)',
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
    operationId: route.name,
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
  } else if (route.body?.kind === 'result') {
    op.requestBody = {
      required: true,
      description: `the manifest field \`${RESULT_MANIFEST_FIELD}\` first (JSON: the image's SHA-256, the render time, Blender's log, and each pass's name and SHA-256), then the image in \`${RESULT_IMAGE_FIELD}\` and the passes in \`${RESULT_PASS_FIELD}0\`, \`${RESULT_PASS_FIELD}1\`, … in the manifest's order`,
      content: {
        'multipart/form-data': {
          schema: {
            type: 'object',
            required: [RESULT_MANIFEST_FIELD, RESULT_IMAGE_FIELD],
            properties: {
              [RESULT_MANIFEST_FIELD]: { $ref: REF('ResultManifest') },
              [RESULT_IMAGE_FIELD]: { type: 'string', contentMediaType: 'application/octet-stream', description: 'the image as Blender saved it (a tile: cropped to the tile)' },
            },
            patternProperties: { [`^${RESULT_PASS_FIELD}\\d+$`]: { type: 'string', contentMediaType: 'application/octet-stream' } },
          },
          encoding: { [RESULT_MANIFEST_FIELD]: { contentType: 'application/json' } },
        },
      },
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
        'Calls from other machines need a user token (`Authorization: Bearer …`) or a browser session; the worker protocol needs a worker token. Calls from the server\'s own machine, naming it by a loopback name, are trusted unless `trust_loopback = false`. ' +
        'Every error answer is `{"code": "…", "error": "…"}`, each code with one status (the Error schema lists them). Generated from the same route table and zod schemas the server validates with.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'jobs', description: 'submit and steer jobs' },
      { name: 'projects', description: 'the files a .blend uses (textures, libraries, caches), each uploaded once' },
      { name: 'results', description: 'frames, previews, logs, videos' },
      { name: 'workers', description: 'render machines' },
      { name: 'session', description: 'browser login' },
      { name: 'tokens', description: 'user and worker access tokens' },
      { name: 'operations', description: 'health, metrics, server info, this document' },
      { name: 'worker protocol', description: 'used by workers, with a worker token' },
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
  on(app, 'openApi', async (_request, reply) => reply.type('application/json; charset=utf-8').send(buildOpenApiDocument()));
  let page: string | undefined;
  on(app, 'apiDocs', async (_request, reply) => {
    page ??= renderDocsPage(buildOpenApiDocument());
    return reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
      .send(page);
  });
}
