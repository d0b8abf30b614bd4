import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { apiPath, UPLOAD_KEY_HEADER } from '../protocol/index.ts';
import type { TlsClient } from '../util/tls-client.ts';
import { sha256OfFile } from './blend-cache.ts';

export interface FrameUpload {
  jobId: string;
  frame: number;
  /** Set when the file is one tile of a split frame. */
  tile?: number;
  file: string;
  renderMs: number;
}

export interface UploadAnswer {
  accepted: boolean;
  reason?: string;
}

/**
 * Streams one rendered frame to the server with its checksum; the server verifies it.
 * `uploadKey` is the one the worker's current connection was welcomed with. `transport`
 * is http or https (with the worker's TLS trust) by serverUrl's scheme.
 */
export async function uploadFrame(serverUrl: string, token: string, uploadKey: string, upload: FrameUpload, transport: TlsClient): Promise<UploadAnswer> {
  const sha256 = await sha256OfFile(upload.file);
  const { size } = await stat(upload.file);
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
        'content-type': 'application/octet-stream',
        'content-length': size,
        [UPLOAD_KEY_HEADER]: uploadKey,
        'x-archenland-sha256': sha256,
        'x-archenland-render-ms': String(Math.round(upload.renderMs)),
      },
    });
    request.on('response', (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk) => (body += chunk));
      response.on('end', () => {
        const json = safeJson(body);
        if (response.statusCode === 200) resolve(json as UploadAnswer);
        else reject(new UploadRejected(response.statusCode ?? 0, (json as { error?: string })?.error ?? body));
      });
    });
    request.on('error', reject);
    createReadStream(upload.file).on('error', reject).pipe(request);
  });
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
