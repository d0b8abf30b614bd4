import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { apiPath, type Job } from '../protocol/index.ts';
import { MultipartBody } from '../util/multipart-body.ts';
import { ApiError, type ApiClient } from './client.ts';

/**
 * Streams a .blend as multipart/form-data without reading it into memory, reporting bytes
 * sent, so a 1 GB scene shows a moving bar and costs a few buffers.
 */
export async function uploadJob(
  client: ApiClient,
  file: string,
  fields: Record<string, string>,
  onProgress: (sent: number, total: number) => void,
): Promise<Job> {
  const { size } = await stat(file);
  const body = new MultipartBody(fields, [{ field: 'file', fileName: path.basename(file), source: { file, size } }]);
  let sent = 0;
  const answer = await send(client, 'POST', apiPath('submitJob'), body.contentType, body.length, (out) =>
    body.writeTo(out, (bytes) => onProgress((sent += bytes), size)),
  );
  if (answer.status !== 201) throw ApiError.fromAnswer(answer.status, answer.body, answer.statusText);
  try {
    return JSON.parse(answer.body) as Job;
  } catch {
    throw new ApiError(`the server accepted the file but answered something that is not JSON: ${answer.body.slice(0, 200)}`, 201);
  }
}

/** Streams one project file to the server, which keeps it once it proves to have this SHA-256. */
export async function uploadProjectFile(client: ApiClient, file: { local: string; sha256: string; size: number }, onBytes: (bytes: number) => void): Promise<void> {
  const answer = await send(client, 'PUT', apiPath('uploadProjectFile', { sha256: file.sha256 }), 'application/octet-stream', file.size, async (out) => {
    for await (const chunk of createReadStream(file.local) as AsyncIterable<Buffer>) {
      if (!out.write(chunk)) await new Promise((resolve) => out.once('drain', resolve));
      onBytes(chunk.length);
    }
    out.end();
  });
  if (answer.status !== 201) throw ApiError.fromAnswer(answer.status, answer.body, answer.statusText);
}

/** One request whose body `write` streams; resolves with the answer, whatever its status. */
function send(
  client: ApiClient,
  method: string,
  pathName: string,
  contentType: string,
  length: number,
  write: (out: Writable) => Promise<void>,
): Promise<{ status: number; body: string; statusText?: string }> {
  return new Promise((resolve, reject) => {
    const request = client.transport.request(new URL(pathName, client.baseUrl), {
      method,
      headers: { ...client.headers(), 'content-type': contentType, 'content-length': length },
    });
    request.on('error', (error) => reject(client.connectionError(error, 'upload failed: cannot reach the server at')));
    request.on('response', (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, statusText: response.statusMessage }));
    });
    write(request).catch(reject);
  });
}
