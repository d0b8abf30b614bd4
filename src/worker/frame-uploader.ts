import { stat } from 'node:fs/promises';
import {
  apiPath,
  RESULT_IMAGE_FIELD,
  RESULT_MANIFEST_FIELD,
  RESULT_PASS_FIELD,
  UPLOAD_KEY_HEADER,
  type ResultManifest,
} from '../protocol/index.ts';
import { MultipartBody, type MultipartFile } from '../util/multipart-body.ts';
import type { TlsClient } from '../util/tls-client.ts';
import { sha256OfFile } from '../util/hash.ts';

export interface FrameUpload {
  jobId: string;
  frame: number;
  /** Set when the file is one tile of a split frame. */
  tile?: number;
  file: string;
  renderMs: number;
  /** Blender's output for this frame; it travels with the image. */
  log?: string;
  /** Files the compositor's File Output nodes wrote for this frame, by their names in the frame's passes. */
  passes?: Array<{ name: string; file: string }>;
  /** The frame's own output folder, removed once the upload is done. */
  folder?: string;
  /** The version of the Blender that rendered it. */
  blenderVersion?: string;
}

export interface UploadAnswer {
  accepted: boolean;
  reason?: string;
}

/**
 * Sends one rendered frame to the server in a single upload: a manifest (checksums,
 * render time, log), the image, and its passes; the server checks every checksum.
 * `uploadKey` is the one the worker's current connection was welcomed with. `transport`
 * is http or https (with the worker's TLS trust) by serverUrl's scheme.
 */
export async function uploadFrame(serverUrl: string, token: string, uploadKey: string, upload: FrameUpload, transport: TlsClient): Promise<UploadAnswer> {
  const passes = upload.passes ?? [];
  const [image, ...passFiles] = await Promise.all([upload.file, ...passes.map((p) => p.file)].map(describeFile));
  const manifest: ResultManifest = {
    sha256: image!.sha256,
    renderMs: Math.round(upload.renderMs),
    log: upload.log ?? '',
    passes: passes.map((pass, index) => ({ name: pass.name, sha256: passFiles[index]!.sha256 })),
    blenderVersion: upload.blenderVersion ?? null,
  };
  const files: MultipartFile[] = [
    { field: RESULT_IMAGE_FIELD, fileName: 'image', source: { file: upload.file, size: image!.size } },
    ...passes.map((pass, index) => ({ field: `${RESULT_PASS_FIELD}${index}`, fileName: pass.name, source: { file: pass.file, size: passFiles[index]!.size } })),
  ];
  const body = new MultipartBody({ [RESULT_MANIFEST_FIELD]: JSON.stringify(manifest) }, files);
  const path =
    upload.tile === undefined
      ? apiPath('uploadFrame', { id: upload.jobId, frame: upload.frame })
      : apiPath('uploadTile', { id: upload.jobId, frame: upload.frame, tile: upload.tile });
  const url = new URL(path, serverUrl);
  return new Promise((resolve, reject) => {
    const request = transport.request(url, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': body.contentType,
        'content-length': body.length,
        [UPLOAD_KEY_HEADER]: uploadKey,
      },
    });
    request.on('response', (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk) => (text += chunk));
      response.on('end', () => {
        const json = safeJson(text);
        if (response.statusCode === 200) resolve(json as UploadAnswer);
        else reject(new UploadRejected(response.statusCode ?? 0, (json as { error?: string })?.error ?? text));
      });
    });
    request.on('error', reject);
    body.writeTo(request).catch(reject);
  });
}

async function describeFile(file: string): Promise<{ sha256: string; size: number }> {
  const [sha256, { size }] = await Promise.all([sha256OfFile(file), stat(file)]);
  return { sha256, size };
}

/** The server answered and refused; retrying the same bytes will not help unless it is a 5xx. */
export class UploadRejected extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(`server refused the frame (HTTP ${statusCode}): ${message}`);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { error: text };
  }
}
