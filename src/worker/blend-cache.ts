import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { text } from 'node:stream/consumers';
import { apiPath, type BlendRef } from '../protocol/index.ts';
import type { TlsClient } from '../util/tls-client.ts';
import { touch } from './cache-budget.ts';

/**
 * .blend files by SHA-256: each is downloaded once per worker, verified, and kept, so
 * a job's hundredth frame costs no transfer. Concurrent requests share one download.
 */
export class BlendCache {
  private readonly downloads = new Map<string, Promise<string>>();

  constructor(
    private readonly dir: string,
    private readonly serverUrl: string,
    private readonly token: string,
    /** http or https (with the worker's TLS trust) by serverUrl's scheme. */
    private readonly transport: TlsClient,
  ) {}

  pathOf(sha256: string): string {
    return path.join(this.dir, `${sha256}.blend`);
  }

  async get(blend: BlendRef): Promise<string> {
    const target = this.pathOf(blend.sha256);
    if (existsSync(target)) {
      await touch(target); // used now: the last to be trimmed (cache-budget.ts)
      return target;
    }
    let download = this.downloads.get(blend.sha256);
    if (!download) {
      download = this.download(blend, target).finally(() => this.downloads.delete(blend.sha256));
      this.downloads.set(blend.sha256, download);
    }
    return download;
  }

  private async download(blend: BlendRef, target: string): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const url = new URL(apiPath('downloadBlend', { sha256: blend.sha256 }), this.serverUrl);
    await downloadVerified(this.transport, url, this.token, blend.sha256, target, 'the .blend');
    return target;
  }
}

/**
 * Downloads a file whose SHA-256 is known into `target`, through a temp file renamed only
 * once the content proved to have that hash: a half or wrong download is never used.
 */
export async function downloadVerified(transport: TlsClient, url: URL, token: string, sha256: string, target: string, what: string): Promise<void> {
  const response = await transport.send(url, { headers: { authorization: `Bearer ${token}` } });
  if (response.statusCode !== 200) {
    throw new Error(`could not download ${what} ${sha256.slice(0, 12)}: HTTP ${response.statusCode} ${await text(response)}`);
  }
  const temp = `${target}.${randomBytes(4).toString('hex')}.part`;
  const hash = createHash('sha256');
  const hashing = new Transform({
    transform(chunk, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(response, hashing, createWriteStream(temp));
    const actual = hash.digest('hex');
    if (actual !== sha256) throw new Error(`downloaded ${what} has SHA-256 ${actual}, expected ${sha256}`);
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
