import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import compress, { type FastifyCompressOptions } from '@fastify/compress';
import { z } from 'zod';
import {
  jobPatchSchema,
  jobProjectSchema,
  workerTagsSchema,
  tagScheduleInputSchema,
  MAX_PASSES_PER_FRAME,
  PROTOCOL_VERSION,
  UPLOAD_KEY_HEADER,
  errorCatalogue,
  type ErrorAnswer,
  type ErrorCode,
  type FarmChange,
} from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import { installAccessControl, type HostPolicy } from './access.ts';
import type { Credentials } from './credentials.ts';
import { limitRequestTime } from './request-limits.ts';
import { registerSessionRoutes, registerTokenRoutes } from './session-routes.ts';
import type { ServerTls } from './tls.ts';
import { parse } from './validate.ts';
import { registerWebUi } from './web-ui.ts';
import { blendKindOf, isTruncatedPlainBlend } from './blend-file.ts';
import type { DataDir } from '../store/index.ts';
import { frameFileName } from '../store/index.ts';
import { FarmError, type Farm } from '../farm/index.ts';
import { FrameChangeLog } from '../farm/index.ts';
import { parseJobFields } from './job-form.ts';
import { canPreview, previewOf } from './thumbnails.ts';
import { registerMetrics } from './metrics.ts';
import { registerOpenApi } from './openapi.ts';
import { discardFile, type ReceivedFile } from '../store/index.ts';
import { isDiskFull, receiveToTemp, tooLarge } from './upload.ts';
import { receiveResult } from './result-upload.ts';
import { on, pathOf, queryOf } from './routing.ts';
import { sendFile } from './send-file.ts';
import { registerProjectRoutes } from './project-routes.ts';
import { ServedFiles } from './serve-limit.ts';

/**
 * A 100,000-frame job's frame columns are 1.6 MB of JSON, 30-140 KB compressed, and the
 * page draws nothing before all of it is in: over a 100 Mbit/s network that is about 130 ms
 * instead of 10. The fastest settings are used: for 1.6 MB, Brotli quality 1 took 3 ms and
 * gzip level 1 9 ms here (gzip's default level 43 ms), and higher levels saved under 15%;
 * a busy 2-core server is short of CPU, not of bytes. Compressed in one go (syncThreshold):
 * the stream path sends its chunks one event-loop turn after another, which on a busy
 * server took the download from 10 to 160 ms even on loopback. On loopback it now costs
 * about 5 ms. Only this route is compressed: the other large answers are files (.blend,
 * frames, video), mostly compressed already, and no request is decompressed.
 */
const FRAME_COLUMNS_COMPRESSION: FastifyCompressOptions = {
  global: false,
  globalCompression: true,
  globalDecompression: false,
  encodings: ['br', 'gzip'],
  threshold: 16 * 1024,
  syncThreshold: 16 * 1024 * 1024,
  brotliOptions: { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT } },
  zlibOptions: { level: 1 },
};

export interface HttpOptions {
  credentials: Credentials;
  hosts: HostPolicy;
  trustLoopback: boolean;
  /** The server's certificate and key: HTTPS instead of HTTP, and session cookies marked Secure. */
  tls: ServerTls | null;
  /** The legacy farm token comes from the `token` setting, so it cannot be revoked from here. */
  legacyTokenFromSettings: boolean;
  maxUploadBytes: number;
  /** Time to read a request other than an upload; see request-limits.ts. */
  requestReadLimitMs?: number;
  /** Told to browsers so the UI can open its live connection. */
  wsPort: number;
  /** serve_limit_mbps: the shared limit on what the server sends workers (.blend and project files); 0 = none. */
  serveLimitMbps?: number;
}

/**
 * The HTTP edge on `web_port`: the public API used by the web UI and the CLI, and the
 * two worker endpoints (download a .blend, upload a frame). Worker endpoints always need
 * the farm token; the rest need it unless the caller is on loopback and that is trusted.
 */
export function buildHttpApp(farm: Farm, dataDir: DataDir, options: HttpOptions, log: Logger) {
  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // With tls_cert and tls_key: HTTPS on the same port, nothing else changes.
    ...(options.tls ? { https: { cert: options.tls.cert, key: options.tls.key } } : {}),
  });

  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const answer = errorAnswer(error);
    if (answer.code === 'DISK_FULL') request.log.error({ err: error, url: request.url }, 'disk full');
    else if (errorCatalogue[answer.code].status >= 500) request.log.error({ err: error, url: request.url }, 'request failed');
    void reply.status(errorCatalogue[answer.code].status).send(answer);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({ code: 'NOT_FOUND', error: `no route ${request.method} ${request.url.split('?')[0]}` } satisfies ErrorAnswer);
  });

  const routes = installAccessControl(app, {
    credentials: options.credentials,
    hosts: options.hosts,
    trustLoopback: options.trustLoopback,
  });
  limitRequestTime(app, options.requestReadLimitMs);

  // One for the whole server: the limit is on its uplink, shared by every worker's download.
  const served = new ServedFiles(options.serveLimitMbps ?? 0);
  registerMetrics(app, farm, served);
  registerOpenApi(app);
  on(app, 'info', async (request) => ({ protocol: PROTOCOL_VERSION, wsPort: options.wsPort, tls: request.protocol === 'https' }));

  registerSessionRoutes(app, options.credentials, options.tls !== null);
  registerTokenRoutes(app, options.credentials, dataDir, options.legacyTokenFromSettings);
  registerProjectRoutes(app, farm, dataDir, options.maxUploadBytes, served);

  void app.register(async (api) => {
    await api.register(multipart, {
      limits: { fileSize: options.maxUploadBytes, files: 1, fields: 20, fieldSize: 1024, parts: 30 },
    });

    on(api, 'submitJob', async (request, reply) => {
      const { upload, fields, fileName } = await receiveJobUpload(request, dataDir, options.maxUploadBytes);
      try {
        if (upload.size === 0) throw new FarmError('EMPTY_FILE', 'the file is empty');
        const kind = blendKindOf(upload.head);
        if (!kind) {
          throw new FarmError('NOT_A_BLEND', `"${fileName}" is not a Blender file (a .blend starts with "BLENDER", or is zstd or gzip compressed)`);
        }
        if (kind === 'plain' && (await isTruncatedPlainBlend(upload.tempPath, upload.head))) {
          throw new FarmError('CORRUPT_UPLOAD', `"${fileName}" is cut short: it lacks the end marker every complete .blend has; upload the whole file`);
        }
        const job = await farm.submitJob(upload, parseJobFields(fields), fileName);
        return reply.status(201).send(job);
      } catch (error) {
        await discardFile(upload.tempPath);
        throw error;
      }
    });
  });

  on(app, 'listJobs', async () => farm.listJobs());
  on(app, 'getJob', async (request) => farm.getJobDetail(pathOf('getJob', request).id));
  const frameChanges = watchFrameChanges(app, farm);
  void app.register(async (compressed) => {
    await compressed.register(compress, FRAME_COLUMNS_COMPRESSION);
    // The web UI's frame list: compact columns, and after `since` only the frames changed since.
    on(compressed, 'frameColumns', async (request) => {
      const { id } = pathOf('frameColumns', request);
      const { since } = queryOf('frameColumns', request);
      // Taken before the frames are read, so every change up to the cursor is in the answer.
      const cursor = frameChanges.cursor();
      const changed = since === undefined ? null : frameChanges.changedSince(id, since);
      return farm.frameColumns(id, cursor, changed ?? undefined);
    });
  });
  on(app, 'cancelJob', async (request) => farm.cancelJob(pathOf('cancelJob', request).id));
  on(app, 'pauseJob', async (request) => farm.pauseJob(pathOf('pauseJob', request).id));
  on(app, 'resumeJob', async (request) => farm.resumeJob(pathOf('resumeJob', request).id));
  on(app, 'retryJob', async (request) => farm.retryFailed(pathOf('retryJob', request).id));
  on(app, 'replaceJobProject', async (request) => farm.replaceJobProject(pathOf('replaceJobProject', request).id, parse(jobProjectSchema, request.body).project));
  on(app, 'patchJob', async (request) => farm.patchJob(pathOf('patchJob', request).id, parse(jobPatchSchema, request.body)));
  on(app, 'deleteJob', async (request, reply) => {
    await farm.deleteJob(pathOf('deleteJob', request).id);
    return reply.status(204).send();
  });

  on(app, 'frameLog', async (request) => {
    const { id, frame } = pathOf('frameLog', request);
    return farm.frameLog(id, frame);
  });

  on(app, 'framePasses', async (request) => {
    const { id, frame } = pathOf('framePasses', request);
    return farm.framePasses(id, frame);
  });
  on(app, 'passFile', async (request, reply) => {
    const { id, frame, name } = pathOf('passFile', request);
    const file = await farm.passFile(id, frame, name);
    return sendFile(reply, file, `${frameFileName(frame)}-${name.replaceAll('/', '-')}`);
  });

  on(app, 'framePreview', async (request, reply) => {
    const { id, frame } = pathOf('framePreview', request);
    const { size } = queryOf('framePreview', request);
    const file = await farm.frameFile(id, frame);
    if (!canPreview(file)) throw new FarmError('NO_PREVIEW', `no preview for ${path.extname(file)} frames; download the frame instead`);
    const preview = await previewOf(file, path.join(dataDir.jobDir(id), 'previews'), size);
    return sendFile(reply.header('cache-control', 'private, max-age=86400'), preview, path.basename(preview), 'image/webp');
  });

  // A tile of a split frame while it waits for the others, so the UI fills the frame in tile by tile.
  on(app, 'tilePreview', async (request, reply) => {
    const { id, frame, tile } = pathOf('tilePreview', request);
    const { size } = queryOf('tilePreview', request);
    const file = await farm.tileFile(id, frame, tile);
    if (!canPreview(file)) throw new FarmError('NO_PREVIEW', `no preview for ${path.extname(file)} tiles`);
    // Read whole (a small WebP): the last tile may come in and the stitch remove this tile's
    // folder, previews and all, at any moment. The tile is then gone, as if asked a moment later.
    const preview = await previewOf(file, path.join(path.dirname(file), 'previews'), size)
      .then((made) => readFile(made))
      .catch((error: Error) => {
        if (existsSync(file)) throw error;
        throw new FarmError('TILE_NOT_FOUND', `tile ${tile} of frame ${frame} was stitched into its frame meanwhile`);
      });
    return reply.header('cache-control', 'no-cache').type('image/webp').send(preview);
  });

  on(app, 'frameFile', async (request, reply) => {
    const { id, frame } = pathOf('frameFile', request);
    const file = await farm.frameFile(id, frame);
    return sendFile(reply, file, path.basename(file));
  });

  on(app, 'video', async (request, reply) => {
    const { id } = pathOf('video', request);
    return sendFile(reply, await farm.videoFile(id), `${id}.mp4`, 'video/mp4');
  });

  on(app, 'framesZip', async (request, reply) => {
    const { id } = pathOf('framesZip', request);
    const frames = await farm.doneFrames(id);
    if (frames.length === 0) throw new FarmError('FRAME_NOT_RENDERED', `job ${id} has no finished frames yet`);
    // Frames are already compressed images: store them, do not spend CPU deflating them.
    const { ZipArchive } = await import('archiver'); // loaded on first use: ~19 MB idle otherwise
    const zip = new ZipArchive({ store: true });
    for (const f of frames) zip.file(f.file, { name: `${frameFileName(f.number)}${path.extname(f.file)}` });
    // File Output passes, kept only for finished frames: passes/frame_0001/<pass name>.
    if (existsSync(dataDir.passesDir(id))) zip.directory(dataDir.passesDir(id), 'passes');
    void zip.finalize();
    return reply
      .header('content-type', 'application/zip')
      .header('content-disposition', `attachment; filename="${id}-frames.zip"`)
      .send(zip);
  });

  on(app, 'listWorkers', async () => farm.listWorkers());
  on(app, 'setWorkerTags', async (request) => farm.setWorkerTags(pathOf('setWorkerTags', request).id, parse(workerTagsSchema, request.body).tags));
  on(app, 'listTagSchedules', async () => farm.listTagSchedules());
  on(app, 'setTagSchedule', async (request) => farm.setTagSchedule(pathOf('setTagSchedule', request).tag, parse(tagScheduleInputSchema, request.body)));
  on(app, 'clearTagSchedule', async (request, reply) => {
    await farm.clearTagSchedule(pathOf('clearTagSchedule', request).tag);
    return reply.status(204).send();
  });
  for (const mode of ['enable', 'drain', 'disable'] as const) {
    on(app, `${mode}Worker`, async (request) => farm.setWorkerMode(pathOf(`${mode}Worker`, request).id, mode));
  }

  // ---- worker endpoints ----
  on(app, 'downloadBlend', async (request, reply) => {
    const { sha256 } = pathOf('downloadBlend', request);
    const file = dataDir.blend(sha256);
    if (!existsSync(file)) throw new FarmError('BLEND_NOT_FOUND', `no .blend with SHA-256 ${sha256}`);
    return served.send(reply, file, `${sha256}.blend`);
  });
  on(app, 'fileSources', async (request) => {
    const { sha256 } = pathOf('fileSources', request);
    const { exclude } = queryOf('fileSources', request);
    const { [UPLOAD_KEY_HEADER]: uploadKey } = parse(frameUploadHeaders, request.headers);
    return farm.fileSources(uploadKey, sha256, new Set(exclude?.split(',') ?? []));
  });

  void app.register(async (workerApi) => {
    await workerApi.register(multipart, {
      limits: { fileSize: options.maxUploadBytes, files: 1 + MAX_PASSES_PER_FRAME, fields: 1, fieldSize: MAX_MANIFEST_BYTES, parts: 2 + MAX_PASSES_PER_FRAME },
    });
    // A whole frame, or one tile of a split frame, with its log and passes (src/protocol/results.ts).
    const receiveFrame = async (request: FastifyRequest, id: string, frame: number, tile?: number) => {
      const headers = parse(frameUploadHeaders, request.headers);
      // Checked before a byte is stored: the upload must come from an open worker connection.
      const workerId = farm.workerForUploadKey(headers[UPLOAD_KEY_HEADER]);
      if (workerId === undefined) {
        throw new FarmError('WORKER_NOT_CONNECTED', 'this upload key belongs to no open worker connection: upload again once the worker has reconnected');
      }
      if (!request.isMultipart()) throw new FarmError('UNSUPPORTED_MEDIA_TYPE', 'a result is a multipart/form-data upload (src/protocol/results.ts)');
      try {
        const result = await receiveResult(request, dataDir.tmp, options.maxUploadBytes, announcedLength(request));
        return await farm.frameUploaded(workerId, id, frame, result, tile);
      } catch (error) {
        if (isDiskFull(error)) await farm.storageFull(id, (error as Error).message);
        throw error;
      }
    };
    on(workerApi, 'uploadFrame', async (request) => {
      const { id, frame } = pathOf('uploadFrame', request);
      return receiveFrame(request, id, frame);
    });
    on(workerApi, 'uploadTile', async (request) => {
      const { id, frame, tile } = pathOf('uploadTile', request);
      return receiveFrame(request, id, frame, tile);
    });
  });

  registerWebUi(app);
  return Object.assign(app, { registeredRoutes: routes });
}

/** The upload key of a worker's open connection: names the worker on its uploads and source questions. */
const frameUploadHeaders = z.object({ [UPLOAD_KEY_HEADER]: z.string().min(16).max(100) });

/** The manifest holds the frame's log (64 KiB of text, up to 6 bytes a character once escaped as JSON) and the pass list. */
const MAX_MANIFEST_BYTES = 512 * 1024;

/** The answer for an error: the farm's own code, or the closest code for Fastify's and Node's errors. */
function errorAnswer(error: Error & { statusCode?: number }): ErrorAnswer {
  if (error instanceof FarmError) return { code: error.code, error: error.message };
  if (isDiskFull(error)) return { code: 'DISK_FULL', error: "the server's disk is full: free space in its data folder and try again" };
  const status = error.statusCode ?? 500;
  if (status >= 500) return { code: 'INTERNAL', error: 'internal server error' };
  const byStatus: Record<number, ErrorCode> = { 404: 'NOT_FOUND', 413: 'TOO_LARGE', 415: 'UNSUPPORTED_MEDIA_TYPE' };
  return { code: byStatus[status] ?? 'INVALID_REQUEST', error: error.message };
}

/** A log of the farm's frame changes for as long as the app runs. */
function watchFrameChanges(app: FastifyInstance<any, any, any, any, any>, farm: Farm): FrameChangeLog {
  const log = new FrameChangeLog();
  const record = (change: FarmChange) => log.record(change);
  farm.on('event', record);
  app.addHook('onClose', async () => void farm.off('event', record));
  return log;
}

/** The body size the client announced, if it did (chunked uploads do not). */
function announcedLength(request: FastifyRequest): number | undefined {
  const length = Number(request.headers['content-length']);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/** Reads the multipart body: the file streams to a temp file; fields are collected as text. */
async function receiveJobUpload(request: FastifyRequest, dataDir: DataDir, maxBytes: number) {
  if (!request.isMultipart()) throw new FarmError('UNSUPPORTED_MEDIA_TYPE', 'expected a multipart/form-data upload with a "file" field');
  const fields: Record<string, string> = {};
  let upload: ReceivedFile | undefined;
  let fileName = '';
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file' || upload) {
          part.file.resume();
          throw new FarmError('BAD_UPLOAD', `unexpected file field "${part.fieldname}": send one .blend in the field "file"`);
        }
        fileName = part.filename;
        upload = await receiveToTemp(part.file, dataDir.tmp, { maxBytes, isTruncated: () => part.file.truncated });
      } else {
        fields[part.fieldname] = String(part.value);
      }
    }
  } catch (error) {
    if (upload) await discardFile(upload.tempPath);
    const code = (error as { code?: string }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(maxBytes);
    if (code?.startsWith('FST_')) throw new FarmError('BAD_UPLOAD', `bad upload: ${(error as Error).message}`);
    throw error;
  }
  if (!upload) throw new FarmError('BAD_UPLOAD', 'no file: send the .blend in the multipart field "file"');
  return { upload, fields, fileName };
}
