import type { FastifyRequest } from 'fastify';
import { FarmError, type DeliveredResult } from '../farm/index.ts';
import {
  RESULT_IMAGE_FIELD,
  RESULT_MANIFEST_FIELD,
  RESULT_PASS_FIELD,
  resultManifestSchema,
  type ResultManifest,
} from '../protocol/index.ts';
import { discardFile, type ReceivedFile } from '../store/index.ts';
import { receiveToTemp, tooLarge } from './upload.ts';
import { parse } from './validate.ts';


/**
 * Reads a worker's result upload (src/protocol/results.ts): the manifest first, then the
 * image and each pass, streamed to temp files and checked against the manifest's
 * checksums. Anything unexpected refuses the whole upload and leaves no file behind.
 */
export async function receiveResult(request: FastifyRequest, tmpDir: string, maxBytes: number, requestBytes?: number): Promise<DeliveredResult> {
  let manifest: ResultManifest | undefined;
  let image: ReceivedFile | undefined;
  const passes = new Map<number, ReceivedFile>();
  const received: ReceivedFile[] = [];
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (part.fieldname !== RESULT_MANIFEST_FIELD || manifest) throw badUpload(`unexpected field "${part.fieldname}"`);
        manifest = parse(resultManifestSchema, parseJson(String(part.value)));
        continue;
      }
      const index = passIndex(part.fieldname);
      const expected = !manifest ? undefined
        : part.fieldname === RESULT_IMAGE_FIELD ? (image ? undefined : manifest.sha256)
        : index !== undefined && !passes.has(index) ? manifest.passes[index]?.sha256
        : undefined;
      if (!expected) {
        part.file.resume();
        throw badUpload(manifest ? `unexpected file field "${part.fieldname}"` : `the "${RESULT_MANIFEST_FIELD}" field must come before the files`);
      }
      // A part is no larger than the whole request: a small request's parts are read in one go.
      const file = await receiveToTemp(part.file, tmpDir, { maxBytes, isTruncated: () => part.file.truncated, announcedBytes: requestBytes });
      received.push(file);
      if (file.sha256 !== expected) {
        throw new FarmError('CORRUPT_UPLOAD', `checksum mismatch in "${part.fieldname}": the upload has SHA-256 ${file.sha256}, the manifest says ${expected}`);
      }
      if (index === undefined) image = file;
      else passes.set(index, file);
    }
    if (!manifest || !image) throw badUpload(`a result needs the "${RESULT_MANIFEST_FIELD}" field and the "${RESULT_IMAGE_FIELD}" file`);
    if (passes.size !== manifest.passes.length) throw new FarmError('CORRUPT_UPLOAD', `the manifest lists ${manifest.passes.length} passes, the upload holds ${passes.size}`);
    if (image.size === 0) throw new FarmError('CORRUPT_UPLOAD', 'the frame file is empty');
    return {
      image,
      renderMs: manifest.renderMs,
      log: manifest.log,
      blenderVersion: manifest.blenderVersion,
      passes: manifest.passes.map((pass, i) => ({ name: pass.name, file: passes.get(i)! })),
    };
  } catch (error) {
    await Promise.all(received.map((file) => discardFile(file.tempPath)));
    const code = (error as { code?: string }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(maxBytes);
    if (code?.startsWith('FST_')) throw badUpload((error as Error).message);
    throw error;
  }
}

/** `pass3` -> 3; undefined for any other field name. */
function passIndex(field: string): number | undefined {
  const match = new RegExp(`^${RESULT_PASS_FIELD}(\\d{1,3})$`).exec(field);
  return match ? Number(match[1]) : undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw badUpload(`the "${RESULT_MANIFEST_FIELD}" field is not JSON`);
  }
}

function badUpload(detail: string): FarmError {
  return new FarmError('BAD_UPLOAD', `bad result upload: ${detail}`);
}
