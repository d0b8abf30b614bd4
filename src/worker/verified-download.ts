import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { text } from 'node:stream/consumers';
import type { TlsClient } from '../util/tls-client.ts';

/** The content did not have the SHA-256 it was asked for: whoever sent it is not to be trusted with it. */
export class WrongContentError extends Error {
  override name = 'WrongContentError';
}

/**
 * Saves a response's body to `target` through a temp file renamed only once the content
 * proved to have that SHA-256: a half or wrong download is never used (nor served to peers,
 * which serve only files under their final name). `onBytes` sees each chunk's size on the
 * way (a peer's speed check). Resolves with the bytes saved.
 */
export async function saveVerified(response: IncomingMessage, sha256: string, target: string, what: string, onBytes?: (bytes: number) => void): Promise<number> {
  const temp = `${target}.${randomBytes(4).toString('hex')}.part`;
  const hash = createHash('sha256');
  let bytes = 0;
  const hashing = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  try {
    await pipeline(response, hashing, createWriteStream(temp, { highWaterMark: 1024 * 1024 }));
    const actual = hash.digest('hex');
    if (actual !== sha256) throw new WrongContentError(`${what} ${sha256.slice(0, 12)} arrived with SHA-256 ${actual.slice(0, 12)}…: wrong content`);
    await rename(temp, target);
    return bytes;
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Downloads a file whose SHA-256 is known from the server into `target` (see saveVerified). */
export async function downloadVerified(transport: TlsClient, url: URL, token: string, sha256: string, target: string, what: string): Promise<number> {
  const response = await transport.send(url, { headers: { authorization: `Bearer ${token}` } });
  if (response.statusCode !== 200) {
    throw new Error(`could not download ${what} ${sha256.slice(0, 12)}: HTTP ${response.statusCode} ${await text(response)}`);
  }
  return saveVerified(response, sha256, target, what);
}
