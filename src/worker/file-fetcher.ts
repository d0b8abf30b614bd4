import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import {
  apiPath,
  fileSourcesSchema,
  PEER_BUSY_STATUS,
  peerFilePath,
  UPLOAD_KEY_HEADER,
  type FileSources,
  type PeerSource,
} from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import type { TlsClient } from '../util/tls-client.ts';
import { downloadVerified, saveVerified, WrongContentError } from './verified-download.ts';

/** How a peer must keep up, and how long a worker waits for peers before it takes a file from the server. */
export interface PeerPatience {
  /** A peer that sends fewer than minBytesPerSecond over this long (or nothing: no answer) is dropped. */
  windowMs: number;
  minBytesPerSecond: number;
  /** Told to wait this long for one file (with nothing else arriving meanwhile), the worker fetches it from the server instead. */
  waitLimitMs: number;
}

/**
 * Busy answers from one peer for one file before it is dropped for that file: the server
 * offers a peer only while it has a free slot by its count, so a peer busy again and again
 * is lying (or overloaded), and must not make workers wait.
 */
const MAX_BUSY_ANSWERS = 3;

export const DEFAULT_PATIENCE: PeerPatience = { windowMs: 5_000, minBytesPerSecond: 1024 * 1024, waitLimitMs: 30_000 };

/** Which server route serves a kind of file. */
export type FileKind = 'downloadBlend' | 'downloadProjectFile';

export type FetchResult = { fetched: true } | { fetched: false; waitMs: number };

/** Bytes fetched by source, for the logs and the benchmark. */
export interface FetchStats {
  fromServer: number;
  fromPeers: number;
  filesFromServer: number;
  filesFromPeers: number;
  /** Peers dropped for failing, being slow or sending wrong bytes. */
  peerFailures: number;
}

export interface FileFetcherOptions {
  serverUrl: string;
  token: string;
  transport: TlsClient;
  /** The current connection's upload key (names this worker when it asks for sources); unset while disconnected. */
  uploadKey: () => string | undefined;
  /** The farm's peer key (the welcome's); unset: fetch from the server only. */
  peerKey: () => string | undefined;
  /** A file is now held, verified, under its final name. */
  onHeld: (sha256: string) => void;
  log: Logger;
  patience?: PeerPatience;
}

/**
 * Fetches content-addressed files into the cache: from peers that hold them when the
 * server says so, else from the server, always verified by SHA-256. A peer that fails,
 * is slow or sends wrong bytes is dropped for that file (and the server told, so it is
 * not offered again); the next peer, then the server, is tried.
 */
export class FileFetcher {
  readonly stats: FetchStats = { fromServer: 0, fromPeers: 0, filesFromServer: 0, filesFromPeers: 0, peerFailures: 0 };
  private readonly patience: PeerPatience;
  /** One fetch per file at a time: two jobs (or two paths of one project) needing it share it. */
  private readonly underWay = new Map<string, Promise<FetchResult>>();
  /** Peers that failed this worker, by file, until it has the file: never tried again for it. */
  private readonly failedPeers = new Map<string, Set<string>>();
  /** Busy answers by file and peer: a peer busy again and again is dropped too (it may only say so). */
  private readonly busyAnswers = new Map<string, number>();
  private readonly agent = new http.Agent({ keepAlive: true });

  constructor(private readonly options: FileFetcherOptions) {
    this.patience = options.patience ?? DEFAULT_PATIENCE;
  }

  /** Fetches a file, waiting for peers as the server says (single files: a .blend). */
  async fetch(sha256: string, target: string, kind: FileKind, what: string): Promise<void> {
    const since = Date.now();
    for (;;) {
      const result = await this.fetchOnce(sha256, target, kind, what, Date.now() - since);
      if (result.fetched) return;
      await sleep(result.waitMs);
    }
  }

  /**
   * One go at a file: fetched, or "not now, ask again after waitMs" (a peer will soon have
   * it or a free slot), so a caller with many files fetches others meanwhile. `waitedMs`:
   * how long this file has waited so far; past the patience's limit it comes from the server.
   */
  fetchOnce(sha256: string, target: string, kind: FileKind, what: string, waitedMs = 0): Promise<FetchResult> {
    let fetching = this.underWay.get(sha256);
    if (!fetching) {
      fetching = this.attempt(sha256, target, kind, what, waitedMs).finally(() => this.underWay.delete(sha256));
      this.underWay.set(sha256, fetching);
    }
    return fetching;
  }

  close(): void {
    this.agent.destroy();
  }

  private async attempt(sha256: string, target: string, kind: FileKind, what: string, waitedMs: number): Promise<FetchResult> {
    await mkdir(path.dirname(target), { recursive: true });
    let excluded = this.failedPeers.get(sha256);
    if (!excluded) this.failedPeers.set(sha256, (excluded = new Set()));
    for (;;) {
      const sources = await this.askSources(sha256, excluded);
      if (sources?.waitMs) {
        if (waitedMs < this.patience.waitLimitMs) return { fetched: false, waitMs: sources.waitMs };
        this.options.log.info({ sha256, waitedMs }, 'waited long enough for peers: fetching from the server');
        break;
      }
      if (!sources || sources.peers.length === 0) break;
      let busy = 0;
      for (const peer of sources.peers) {
        const outcome = await this.fromPeer(peer, sha256, target, what);
        if (outcome === 'fetched') {
          this.failedPeers.delete(sha256);
          return { fetched: true };
        }
        if (outcome === 'failed' || this.busyAgain(sha256, peer.workerId)) excluded.add(peer.workerId);
        else busy++;
      }
      // Every peer offered was busy: their slots free up soon, so wait rather than load the server.
      if (busy === sources.peers.length && waitedMs < this.patience.waitLimitMs) return { fetched: false, waitMs: 50 };
      if (busy > 0) break;
      // Every peer offered failed: ask again, without them (others, or the server).
    }
    const url = new URL(apiPath(kind, { sha256 }), this.options.serverUrl);
    const bytes = await downloadVerified(this.options.transport, url, this.options.token, sha256, target, what);
    this.stats.fromServer += bytes;
    this.stats.filesFromServer++;
    this.failedPeers.delete(sha256);
    this.options.onHeld(sha256);
    return { fetched: true };
  }

  /** Counts a busy answer; true once the peer has been busy too often for this file. */
  private busyAgain(sha256: string, workerId: string): boolean {
    const key = `${sha256}:${workerId}`;
    const answers = (this.busyAnswers.get(key) ?? 0) + 1;
    this.busyAnswers.set(key, answers);
    if (this.busyAnswers.size > 10_000) this.busyAnswers.delete(this.busyAnswers.keys().next().value!);
    return answers >= MAX_BUSY_ANSWERS;
  }

  /** The server's advice, or null (no peer key, disconnected, or the question failed): the server itself. */
  private async askSources(sha256: string, excluded: ReadonlySet<string>): Promise<FileSources | null> {
    const uploadKey = this.options.uploadKey();
    if (!this.options.peerKey() || !uploadKey) return null;
    const url = new URL(apiPath('fileSources', { sha256 }), this.options.serverUrl);
    if (excluded.size > 0) url.searchParams.set('exclude', [...excluded].join(','));
    try {
      const response = await this.options.transport.send(url, { headers: { authorization: `Bearer ${this.options.token}`, [UPLOAD_KEY_HEADER]: uploadKey } });
      const body = await text(response);
      if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode} ${body.slice(0, 200)}`);
      return fileSourcesSchema.parse(JSON.parse(body));
    } catch (error) {
      this.options.log.warn({ sha256, error: (error as Error).message }, 'could not ask the server for peers: fetching from the server');
      return null;
    }
  }

  /** One peer's copy, verified; 'busy' when its slots are taken, 'failed' for anything else wrong. */
  private async fromPeer(peer: PeerSource, sha256: string, target: string, what: string): Promise<'fetched' | 'busy' | 'failed'> {
    const key = this.options.peerKey();
    if (!key) return 'failed';
    const log = this.options.log.child({ peer: peer.workerId, sha256 });
    try {
      const response = await this.request(new URL(peerFilePath(sha256), peer.url), key);
      if (response.statusCode === PEER_BUSY_STATUS) {
        response.resume();
        return 'busy';
      }
      if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode} ${(await text(response)).slice(0, 200)}`);
      const speed = this.speedCheck(response);
      const bytes = await saveVerified(response, sha256, target, what, speed.saw).finally(speed.stop);
      this.stats.fromPeers += bytes;
      this.stats.filesFromPeers++;
      this.options.onHeld(sha256);
      return 'fetched';
    } catch (error) {
      this.stats.peerFailures++;
      const level = error instanceof WrongContentError ? 'error' : 'warn';
      log[level]({ error: (error as Error).message, url: peer.url }, 'peer failed: trying another source');
      return 'failed';
    }
  }

  /** GET from a peer; a peer that does not answer within the window counts as failed. */
  private request(url: URL, key: string): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const request = http.get(url, { agent: this.agent, headers: { authorization: `Bearer ${key}` } }, resolve);
      request.setTimeout(this.patience.windowMs, () => request.destroy(new Error(`no answer within ${this.patience.windowMs} ms`)));
      request.on('error', reject);
    });
  }

  /**
   * Fails the transfer when a window passes with fewer bytes than the minimum rate allows:
   * a peer that stalls or trickles costs at most one window before the next source is tried.
   */
  private speedCheck(response: http.IncomingMessage): { saw: (bytes: number) => void; stop: () => void } {
    const { windowMs, minBytesPerSecond } = this.patience;
    const needed = (minBytesPerSecond * windowMs) / 1000;
    let inWindow = 0;
    const timer = setInterval(() => {
      if (inWindow < needed) response.destroy(new Error(`peer too slow: ${inWindow} bytes in ${windowMs} ms (at least ${Math.round(needed)} expected)`));
      inWindow = 0;
    }, windowMs);
    return { saw: (bytes) => (inWindow += bytes), stop: () => clearInterval(timer) };
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
