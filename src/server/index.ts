import type { ServerSettings } from '../config/index.ts';
import { Store } from '../store/index.ts';
import type { Logger } from '../util/log.ts';
import { HostPolicy, type RegisteredRoute } from '../edge/access.ts';
import { Credentials, type BootstrapTokens } from '../edge/credentials.ts';
import { DataDir } from '../store/index.ts';
import { Farm } from '../farm/index.ts';
import { buildHttpApp } from '../edge/http.ts';
import { closeServer, createHttpsServer, loadServerTls } from '../edge/tls.ts';
import { startWorkerSocket } from '../edge/worker-socket.ts';
import { startWebhookNotifier } from '../edge/webhook.ts';

export interface RunningServer {
  farm: Farm;
  dataDir: DataDir;
  /** Every HTTP route with the access it requires. */
  routes: readonly RegisteredRoute[];
  /** The first user and worker tokens, from their files in the data folder (null once those are gone). */
  tokens: BootstrapTokens;
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:8080, or https://… with tls_cert and tls_key */
  httpUrl: string;
  /** SHA-256 fingerprint of the server's certificate when it serves HTTPS and WSS, else null. */
  tlsFingerprint: string | null;
  httpPort: number;
  wsPort: number;
  close(): Promise<void>;
}

/** Opens the store, restores the queue and starts both listeners. Port 0 picks a free port. */
export async function startServer(settings: ServerSettings, log: Logger): Promise<RunningServer> {
  // Checked first: a certificate problem must not leave a half-started server behind.
  const serverTls = loadServerTls(settings);
  const dataDir = new DataDir(settings.data_dir);
  dataDir.create();
  const store = await Store.open(dataDir.database, (error) => log.error({ err: error }, 'could not save changes to the database'));
  const credentials = await Credentials.open(store.credentials);
  const tokens = await credentials.bootstrap(dataDir, settings.token);
  // Secrets stay in their files: a log line can end up anywhere.
  if (tokens.created.includes('user')) log.info({ file: dataDir.userTokenFile }, 'made a user token for the API, CLI and web UI');
  if (tokens.created.includes('worker')) log.info({ file: dataDir.workerTokenFile }, 'made a worker token for render workers');
  if (tokens.farm) {
    log.warn('a single farm token opens both the API and the worker protocol: give workers a worker token (archenland token create --role worker), then revoke the farm token');
  }
  const hosts = new HostPolicy(settings.public_hosts);
  const farm = new Farm(store, dataDir, {
      ffmpegPath: settings.ffmpeg_path,
      frameRetries: settings.frame_retries,
      frameTimeoutMs: settings.frame_timeout_s * 1000,
      duplicateTail: settings.tail_duplicates,
      queuePolicy: settings.queue_policy,
      videoStreams: settings.video_streams,
      progressReportsPerSecond: settings.progress_reports_per_second,
    }, log.child({ part: 'farm' }));
  await farm.restore();
  startWebhookNotifier(farm, settings.webhook_url, log.child({ part: 'webhook' }));

  // WSS: the WebSocket server takes an HTTPS server of its own, which must start listening
  // only after startWorkerSocket has attached to it (it waits for 'listening').
  const wsHttps = serverTls ? createHttpsServer(serverTls) : undefined;
  const socketsStarted = startWorkerSocket(
    farm,
    {
      server: wsHttps,
      host: settings.bind,
      port: settings.port,
      credentials,
      hosts,
      trustLoopback: settings.trust_loopback,
      heartbeatTimeoutMs: settings.heartbeat_timeout_s * 1000,
    },
    log.child({ part: 'ws' }),
  );
  wsHttps?.listen(settings.port, settings.bind);
  const sockets = await socketsStarted;
  const app = buildHttpApp(
    farm,
    dataDir,
    {
      credentials,
      hosts,
      trustLoopback: settings.trust_loopback,
      tls: serverTls,
      legacyTokenFromSettings: settings.token !== undefined,
      maxUploadBytes: settings.max_upload_mb * 1024 * 1024,
      wsPort: sockets.port,
      serveLimitMbps: settings.serve_limit_mbps,
    },
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
  const tlsFingerprint = serverTls?.fingerprint ?? null;
  log.info({ http: httpPort, ws: sockets.port, dataDir: dataDir.root, tls: serverTls !== null }, 'server listening');
  if (tlsFingerprint) log.info({ fingerprint: tlsFingerprint }, `serving HTTPS and WSS; certificate SHA-256 fingerprint ${tlsFingerprint}`);

  return {
    farm,
    dataDir,
    tokens,
    httpUrl: `${serverTls ? 'https' : 'http'}://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${httpPort}`,
    httpPort,
    wsPort: sockets.port,
    tlsFingerprint,
    routes: app.registeredRoutes,
    async close() {
      await farm.stop();
      await sockets.close();
      if (wsHttps) await closeServer(wsHttps); // ws leaves a server it was given open
      await app.close();
      await farm.stop(); // requests that were under way may have started more work
      await store.close();
    },
  };
}

export { Farm, FarmError } from '../farm/index.ts';
export { DataDir } from '../store/index.ts';
