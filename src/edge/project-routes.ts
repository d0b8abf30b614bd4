import type { FastifyInstance } from 'fastify';
import type { Farm } from '../farm/index.ts';
import { projectManifestSchema, type StoredFile } from '../protocol/index.ts';
import type { DataDir } from '../store/index.ts';
import { on, pathOf } from './routing.ts';
import type { ServedFiles } from './serve-limit.ts';
import { receiveToTemp } from './upload.ts';
import { parse } from './validate.ts';

/** A manifest lists up to 100,000 files, about 150 bytes each. */
const MANIFEST_BODY_LIMIT = 32 * 1024 * 1024;

/**
 * Projects: a client describes the files its .blend uses, uploads the ones the server
 * lacks, and workers fetch the manifest and the files. Each file is stored once by content.
 */
export function registerProjectRoutes(app: FastifyInstance<any, any, any, any, any>, farm: Farm, dataDir: DataDir, maxUploadBytes: number, served: ServedFiles): void {
  on(app, 'createProject', async (request) => farm.createProject(parse(projectManifestSchema, request.body)), { bodyLimit: MANIFEST_BODY_LIMIT });

  void app.register(async (files) => {
    // A file streams straight to disk whatever its content type.
    files.removeAllContentTypeParsers();
    files.addContentTypeParser('*', (_request, _payload, done) => done(null));
    on(files, 'uploadProjectFile', async (request, reply) => {
      const { sha256 } = pathOf('uploadProjectFile', request);
      const upload = await receiveToTemp(request.raw, dataDir.tmp, { maxBytes: maxUploadBytes, announcedBytes: announced(request.headers['content-length']) });
      await farm.storeProjectFile(sha256, upload);
      return reply.status(201).send({ sha256, size: upload.size } satisfies StoredFile);
    });
  });

  on(app, 'getProject', async (request) => farm.project(pathOf('getProject', request).sha256));
  on(app, 'downloadProjectFile', async (request, reply) => {
    const { sha256 } = pathOf('downloadProjectFile', request);
    return served.send(reply, farm.projectFile(sha256), sha256);
  });
}

function announced(header: string | undefined): number | undefined {
  const length = Number(header);
  return header !== undefined && Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}
