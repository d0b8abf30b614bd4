import type { WorkerMessage } from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import type { TlsClient } from '../util/tls-client.ts';
import { BlendCache } from './blend-cache.ts';
import { shaOfCachedPath } from './cache-paths.ts';
import { FileFetcher, type PeerPatience } from './file-fetcher.ts';
import { FileReports } from './file-reports.ts';
import { PeerServer } from './peer-server.ts';
import { ProjectCache } from './project-cache.ts';

export interface WorkerFilesOptions {
  cacheDir: string;
  serverUrl: string;
  token: string;
  transport: TlsClient;
  /** peer_port: serve the cache to peers on this port (0: any free one); undefined: do not serve. */
  peerPort?: number;
  /** Where the peer server listens: loopback when the server is on this machine, else every interface. */
  peerHost: string;
  /** false (a farm on TLS): peers speak plain HTTP, so none are asked and none served. */
  peersAllowed: boolean;
  /** Sends a message to the server over the worker's connection; false when not connected. */
  send: (message: WorkerMessage) => boolean;
  log: Logger;
  patience?: PeerPatience;
  peerUploads?: number;
}

/**
 * A worker's files: the .blend and project caches, filled by a FileFetcher (peers when the
 * server points to them, else the server), the peer server that serves the cache to other
 * workers (peer_port), and the reports that tell the server what this worker holds.
 */
export class WorkerFiles {
  readonly blends: BlendCache;
  readonly projects: ProjectCache;
  readonly fetcher: FileFetcher;
  private readonly reports: FileReports;
  private readonly peerServer: PeerServer | null;
  private uploadKey: string | undefined;
  private peerKey: string | undefined;
  /** The port the peer server listens on, once started; undefined when it does not serve. */
  peerPort: number | undefined;

  constructor(private readonly options: WorkerFilesOptions) {
    this.reports = new FileReports(options.cacheDir, options.send);
    this.fetcher = new FileFetcher({
      serverUrl: options.serverUrl,
      token: options.token,
      transport: options.transport,
      uploadKey: () => this.uploadKey,
      peerKey: () => (options.peersAllowed ? this.peerKey : undefined),
      onHeld: (sha256) => this.reports.added(sha256),
      log: options.log,
      patience: options.patience,
    });
    this.blends = new BlendCache(options.cacheDir, this.fetcher);
    this.projects = new ProjectCache(options.cacheDir, options.serverUrl, options.token, options.transport, this.blends, this.fetcher);
    const serves = options.peersAllowed && options.peerPort !== undefined;
    this.peerServer = serves ? new PeerServer(options.cacheDir, () => this.peerKey, options.log.child({ part: 'peer-server' }), options.peerUploads) : null;
  }

  /** Starts the peer server (when this worker serves); before the first connect, so the hello can name its port. */
  async start(): Promise<void> {
    if (!this.peerServer) return;
    this.peerPort = await this.peerServer.listen(this.options.peerPort!, this.options.peerHost);
    this.options.log.info({ port: this.peerPort, host: this.options.peerHost }, 'serving cached files to peers');
  }

  /** The server welcomed this worker: its keys, and the whole cache reported again. */
  connected(uploadKey: string, peerKey: string): Promise<void> {
    this.uploadKey = uploadKey;
    this.peerKey = peerKey;
    return this.reports.connected();
  }

  disconnected(): void {
    this.uploadKey = undefined; // it belonged to that connection
  }

  peerKeyChanged(peerKey: string): void {
    this.peerKey = peerKey;
  }

  /** Files the cache budget removed: the server stops pointing peers here for them. */
  evicted(files: readonly string[]): void {
    const sha256s = files.map((file) => shaOfCachedPath(this.options.cacheDir, file)).filter((sha): sha is string => sha !== null);
    if (sha256s.length > 0) this.reports.removed(sha256s);
  }

  /** Files the peer server sent in full. */
  get uploadsServed(): number {
    return this.peerServer?.uploads ?? 0;
  }

  async stop(): Promise<void> {
    this.fetcher.close();
    await this.peerServer?.close();
  }
}
