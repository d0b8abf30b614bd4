import { createHash, randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { text } from 'node:stream/consumers';
import type { TlsClient } from '../util/tls-client.ts';
import { HashingFileSink } from './hashing-file-sink.ts';

/** The content did not have the SHA-256 it was asked for: whoever sent it is not to be trusted with it. */
export class WrongContentError extends Error {
  override name = 'WrongContentError';
}

/**
 * Saves a response's body to `target` through a temp file renamed only once the content
 * proved to have that SHA-256: a half or wrong download is never used (nor served to peers,
 * which serve only files under their final name). Each byte is hashed as it arrives, once:
 * the file is not read again. `onBytes` sees each chunk's size on the way (a peer's speed
 * check). Resolves with the bytes saved.
 */
export async function saveVerified(body: Readable, sha256: string, target: string, what: string, onBytes?: (bytes: number) => void): Promise<number> {
  const temp = `${target}.${randomBytes(4).toString('hex')}.part`;
  const hash = createHash('sha256');
  const sink = new HashingFileSink(temp, hash, onBytes);
  try {
    // The file is closed before it is renamed or removed: no write of this download comes after.
    await pipeline(body, sink).finally(() => closed(sink));
    const actual = hash.digest('hex');
    if (actual !== sha256) throw new WrongContentError(`${what} ${sha256.slice(0, 12)} arrived with SHA-256 ${actual.slice(0, 12)}…: wrong content`);
    await rename(temp, target);
    return sink.bytes;
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Resolves once the stream has closed (whether it finished or failed). */
function closed(stream: Writable): Promise<void> {
  return new Promise((resolve) => (stream.closed ? resolve() : stream.once('close', () => resolve())));
}

/** Downloads a file whose SHA-256 is known from the server into `target` (see saveVerified). */
export async function downloadVerified(transport: TlsClient, url: URL, token: string, sha256: string, target: string, what: string): Promise<number> {
  const response = await transport.send(url, { headers: { authorization: `Bearer ${token}` } });
  if (response.statusCode !== 200) {
    throw new Error(`could not download ${what} ${sha256.slice(0, 12)}: HTTP ${response.statusCode} ${await text(response)}`);
  }
  return saveVerified(response, sha256, target, what);
}
