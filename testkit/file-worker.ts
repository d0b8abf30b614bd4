import os from 'node:os';
import { PROTOCOL_VERSION, type BlendRef, type ProjectRef } from '../src/protocol/index.ts';
import type { Logger } from '../src/util/log.ts';
import { silentLogger } from '../src/util/log.ts';
import { TlsClient } from '../src/util/tls-client.ts';
import { ServerConnection } from '../src/worker/connection.ts';
import type { PeerPatience } from '../src/worker/file-fetcher.ts';
import { WorkerFiles } from '../src/worker/worker-files.ts';

export interface FileWorkerOptions {
  httpUrl: string;
  wsUrl: string;
  token: string;
  cacheDir: string;
  name: string;
  /** Serve the cache to peers on this port (0: any free one); undefined: do not serve. */
  peerPort?: number;
  patience?: PeerPatience;
  log?: Logger;
}

/**
 * A worker without Blender: the real connection (hello, welcome, peer key) and the real
 * WorkerFiles (caches, fetcher, peer server, reports) of src/worker, and nothing that
 * renders. It fetches a job's project when told to, as a render worker does before its
 * first frame, so tests and benchmarks measure the real transfer path alone.
 */
export class FileWorker {
  readonly files: WorkerFiles;
  workerId = '';
  private readonly connection: ServerConnection;
  private welcomed!: Promise<void>;

  private constructor(options: FileWorkerOptions) {
    const log = options.log ?? silentLogger;
    this.files = new WorkerFiles({
      cacheDir: options.cacheDir,
      serverUrl: options.httpUrl,
      token: options.token,
      transport: new TlsClient({}),
      peerPort: options.peerPort,
      peerHost: '127.0.0.1',
      peersAllowed: true,
      send: (message) => this.connection.send(message),
      log,
      patience: options.patience,
    });
    let welcome!: () => void;
    this.welcomed = new Promise((resolve) => (welcome = resolve));
    this.connection = new ServerConnection(
      options.wsUrl,
      {
        hello: () => ({
          type: 'hello',
          role: 'worker',
          protocol: PROTOCOL_VERSION,
          token: options.token,
          name: options.name,
          host: os.hostname(),
          threads: 0,
          blenderVersion: null,
          blenders: [],
          allowScripts: false,
          tags: [],
          holding: [],
          peerPort: this.files.peerPort,
        }),
        onOpen: () => undefined,
        onClose: () => this.files.disconnected(),
        onMessage: (message) => {
          if (message.type === 'welcome') {
            this.workerId = message.workerId;
            void this.files.connected(message.uploadKey, message.peerKey).then(welcome);
          } else if (message.type === 'peer_key') {
            this.files.peerKeyChanged(message.peerKey);
          }
          // Probes and frames are not for this worker: it only fetches.
        },
        onFatal: () => undefined,
      },
      log,
    );
  }

  /** Starts the peer server (when serving), connects, and resolves once welcomed and its cache reported. */
  static async start(options: FileWorkerOptions): Promise<FileWorker> {
    const worker = new FileWorker(options);
    await worker.files.start();
    worker.connection.start();
    await worker.welcomed;
    return worker;
  }

  /** Fetches a job's .blend and project into the cache and lays the project out, as before a first frame. */
  async prepare(project: ProjectRef, blend: BlendRef): Promise<string> {
    await this.files.blends.get(blend);
    return (await this.files.projects.prepare(project, blend)).tree;
  }

  async stop(): Promise<void> {
    this.connection.stop();
    await this.files.stop();
  }
}
