import { createHash, timingSafeEqual } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import http from 'node:http';
import { pipeline } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { PEER_BUSY_STATUS, PEER_UPLOAD_SLOTS, peerRoute, sha256Schema, type ErrorAnswer } from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import { cachedBlendPath, cachedFilePath } from './cache-paths.ts';

/** The peer route's path, matched as a whole: /peer/files/<anything but a slash>. */
const PEER_PATH = new RegExp(`^${peerRoute.path.replace(':sha256', '([^/]+)')}$`);

/**
 * A worker's peer server (peer_port): serves the complete, verified files of its cache to
 * other workers of the farm, by SHA-256 only. It answers one route (src/protocol/peers.ts),
 * to requests that carry the farm's peer key, with at most `slots` uploads at once (503
 * beyond, so the asker tries another source). A file is looked up in the cache on every
 * request, so one evicted is no longer served; names are built from a checked hash, never
 * from the request's text, and only regular files are sent (no link is followed).
 */
export class PeerServer {
  private readonly server: http.Server;
  private active = 0;
  /** Files sent in full, for the logs and tests. */
  uploads = 0;

  constructor(
    private readonly cacheDir: string,
    /** The farm's current peer key; unset until the first welcome: then nothing is served. */
    private readonly peerKey: () => string | undefined,
    private readonly log: Logger,
    private readonly slots = PEER_UPLOAD_SLOTS,
  ) {
    this.server = http.createServer((request, response) => {
      this.handle(request, response).catch((error: Error) => {
        this.log.warn({ error: error.message }, 'peer request failed');
        if (!response.headersSent) answer(response, 500, { code: 'INTERNAL', error: 'internal error' });
        else response.destroy(error);
      });
    });
    // Slow or idle clients cannot hold sockets open for ever.
    this.server.requestTimeout = 30_000;
    this.server.headersTimeout = 10_000;
  }

  /** Listens; resolves with the port (a free one for port 0). */
  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const match = PEER_PATH.exec(new URL(request.url ?? '/', 'http://peer').pathname);
    if (request.method !== 'GET' || !match) return answer(response, 404, { code: 'NOT_FOUND', error: 'no such route' });
    if (!this.authorised(request.headers.authorization)) {
      this.log.warn({ remote: request.socket.remoteAddress }, 'peer request refused: missing or wrong peer key');
      return answer(response, 401, { code: 'UNAUTHENTICATED', error: 'missing or wrong peer key' });
    }
    const sha = sha256Schema.safeParse(decodeURIComponent(match[1]!));
    if (!sha.success) return answer(response, 400, { code: 'INVALID_REQUEST', error: 'sha256: not a SHA-256 hex digest' });
    if (this.active >= this.slots) return answer(response, PEER_BUSY_STATUS, { code: 'PEER_BUSY', error: `busy: ${this.active} uploads under way` });
    const handle = await openCached(this.cacheDir, sha.data);
    if (!handle) return answer(response, 404, { code: 'FILE_NOT_FOUND', error: `this worker does not hold ${sha.data}` });
    this.active++;
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      this.active--;
    };
    response.on('close', done);
    const { size } = await handle.stat();
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    response.on('finish', () => this.uploads++);
    // pipeline: a peer that hangs up mid-file closes the file too.
    pipeline(createReadStream('', { fd: handle, highWaterMark: 1024 * 1024 }), response, () => {});
  }

  /** Compares digests, so the comparison takes the same time however much of the key matches. */
  private authorised(header: string | undefined): boolean {
    const key = this.peerKey();
    const given = /^Bearer\s+(\S+)$/i.exec(header ?? '')?.[1];
    if (!key || !given) return false;
    return timingSafeEqual(digest(key), digest(given));
  }
}

/** The cached file with this hash, opened, if it is a regular file under its final name. */
async function openCached(cacheDir: string, sha256: string) {
  for (const file of [cachedFilePath(cacheDir, sha256), cachedBlendPath(cacheDir, sha256)]) {
    // O_NOFOLLOW: a link in the cache (none is ever made there) is not followed out of it.
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null);
    if (!handle) continue;
    if ((await handle.stat()).isFile()) return handle;
    await handle.close();
  }
  return null;
}

const digest = (text: string) => createHash('sha256').update(text).digest();

function answer(response: http.ServerResponse, status: number, body: ErrorAnswer): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
