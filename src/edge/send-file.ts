import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyReply } from 'fastify';

/** Streams a stored file with its length, type (from its extension unless given) and name. */
export async function sendFile(reply: FastifyReply, file: string, downloadName: string, type?: string) {
  if (type) void reply.header('content-type', type);
  else void reply.type(contentTypeOf(file));
  const { size } = await stat(file);
  return reply
    .header('content-length', size)
    .header('content-disposition', `inline; filename="${downloadName}"`)
    .send(createReadStream(file));
}

function contentTypeOf(file: string): string {
  const types: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.exr': 'image/x-exr', '.tif': 'image/tiff' };
  return types[path.extname(file)] ?? 'application/octet-stream';
}
