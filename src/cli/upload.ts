import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { apiPath, type Job } from '../protocol/index.ts';
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
  const boundary = `----archenland${randomBytes(12).toString('hex')}`;
  const fieldParts = Object.entries(fields)
    .map(([name, value]) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`)
    .join('');
  const safeName = path.basename(file).replace(/["\r\n]/g, '_');
  const head = Buffer.from(
    `${fieldParts}--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${safeName}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const url = new URL(apiPath('submitJob'), client.baseUrl);

  return new Promise((resolve, reject) => {
    const request = client.transport.request(url, {
      method: 'POST',
      headers: {
        ...client.headers(),
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': head.length + size + tail.length,
      },
    });
    request.on('error', (error) => reject(client.connectionError(error, 'upload failed: cannot reach the server at')));
    request.on('response', (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk) => (body += chunk));
      response.on('end', () => {
        if (response.statusCode !== 201) return reject(ApiError.fromAnswer(response.statusCode ?? 0, body, response.statusMessage));
        try {
          resolve(JSON.parse(body) as Job);
        } catch {
          reject(new ApiError(`the server accepted the file but answered something that is not JSON: ${body.slice(0, 200)}`, 201));
        }
      });
    });
    request.write(head);
    let sent = 0;
    const stream = createReadStream(file);
    stream.on('data', (chunk) => {
      sent += chunk.length;
      onProgress(sent, size);
    });
    stream.on('error', reject);
    stream.on('end', () => request.end(tail));
    stream.pipe(request, { end: false });
  });
}
