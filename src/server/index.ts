import type { ServerSettings } from '../config/index.ts';
import { Store } from '../store/index.ts';
import type { Logger } from '../util/log.ts';
import { DataDir } from './data-dir.ts';
import { Farm } from './farm.ts';
import { buildHttpApp } from './http.ts';
import { startWorkerSocket } from './worker-socket.ts';
import { startWebhookNotifier } from './webhook.ts';

export interface RunningServer {
  farm: Farm;
  dataDir: DataDir;
  token: string;
  /** Where the token is kept, when the server generated it (null: it came from the settings). */
  tokenFile: string | null;
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:8080 */
  httpUrl: string;
  httpPort: number;
  wsPort: number;
  close(): Promise<void>;
}

/** Opens the store, restores the queue and starts both listeners. Port 0 picks a free port. */
export async function startServer(settings: ServerSettings, log: Logger): Promise<RunningServer> {
  const dataDir = new DataDir(settings.data_dir);
  dataDir.create();
  const { token, created } = dataDir.loadOrCreateToken(settings.token);
  if (created) log.info({ tokenFile: dataDir.tokenFile }, `generated a farm token: ${token}`);

  const store = await Store.open(dataDir.database, (error) => log.error({ err: error }, 'could not save changes to the database'));
  const farm = new Farm(store, dataDir, {
      ffmpegPath: settings.ffmpeg_path,
      frameRetries: settings.frame_retries,
      frameTimeoutMs: settings.frame_timeout_s * 1000,
      duplicateTail: settings.tail_duplicates,
    }, log.child({ part: 'farm' }));
  await farm.restore();
  startWebhookNotifier(farm, settings.webhook_url, log.child({ part: 'webhook' }));

  const sockets = await startWorkerSocket(
    farm,
    {
      host: settings.bind,
      port: settings.port,
      token,
      trustLoopback: settings.trust_loopback,
      heartbeatTimeoutMs: settings.heartbeat_timeout_s * 1000,
    },
    log.child({ part: 'ws' }),
  );
  const app = buildHttpApp(
    farm,
    dataDir,
    { token, trustLoopback: settings.trust_loopback, maxUploadBytes: settings.max_upload_mb * 1024 * 1024, wsPort: sockets.port },
    log.child({ part: 'http' }),
  );
  // The store commits writes in groups (store/group-commit.ts): a request that changed
  // something is answered once its changes are on disk, so a worker drops its copy of a
  // frame only when the farm can no longer lose it.
  app.addHook('onSend', async (request, _reply, payload) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') await store.committed();
    return payload;
  });
  await app.listen({ host: settings.bind, port: settings.web_port });
  const httpPort = (app.server.address() as { port: number }).port;
  const shownHost = settings.bind === '0.0.0.0' || settings.bind === '::' ? '127.0.0.1' : settings.bind;
  log.info({ http: httpPort, ws: sockets.port, dataDir: dataDir.root }, 'server listening');

  return {
    farm,
    dataDir,
    token,
    tokenFile: settings.token ? null : dataDir.tokenFile,
    httpUrl: `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${httpPort}`,
    httpPort,
    wsPort: sockets.port,
    async close() {
      await farm.stop();
      await sockets.close();
      await app.close();
      await farm.stop(); // requests that were under way may have started more work
      await store.close();
    },
  };
}

export { Farm, FarmError } from './farm.ts';
export { DataDir } from './data-dir.ts';
