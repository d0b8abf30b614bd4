import { WebSocketServer, type WebSocket } from 'ws';
import {
  changeKey,
  firstMessageSchema,
  MAX_MESSAGE_BYTES,
  parseMessage,
  PROTOCOL_VERSION,
  workerMessageSchema,
  type FarmChange,
  type FarmEvent,
  type ServerToWorker,
  type WorkerMessage,
} from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import { identify, usesApi, type HostPolicy } from './access.ts';
import { mayWork, type Credentials } from './credentials.ts';
import type { Farm, WorkerLink } from '../farm/index.ts';

export interface SocketOptions {
  /** WSS: an HTTPS server, not yet listening, to serve on instead of listening on host and port. */
  server?: import('node:https').Server;
  host: string;
  port: number;
  credentials: Credentials;
  hosts: HostPolicy;
  trustLoopback: boolean;
  /** A connection that answers no ping for this long is dropped and its frames reassigned. */
  heartbeatTimeoutMs: number;
}

/** A connection must say who it is this soon, or it is closed. */
const HELLO_TIMEOUT_MS = 10_000;
/**
 * Connections that have not yet said who they are, at most: a stranger cannot hold
 * thousands of sockets open. Workers reconnecting after a server restart stay far below.
 */
export const MAX_UNIDENTIFIED_CONNECTIONS = 64;

/**
 * The WebSocket edge on `port`: workers say `hello` and then take work; observers (the
 * web UI, `submit --wait`) say `observe` and then receive farm events. Every message is
 * validated against the shared protocol before the farm sees it.
 */
export async function startWorkerSocket(farm: Farm, options: SocketOptions, log: Logger) {
  const wss = new WebSocketServer({ ...(options.server ? { server: options.server } : { host: options.host, port: options.port }), maxPayload: MAX_MESSAGE_BYTES });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const alive = new WeakMap<WebSocket, number>();
  /** The token each identified connection presented, so revoking it closes them. */
  const tokenOf = new WeakMap<WebSocket, string>();
  /** Connections of workers (not observers). */
  const workerSockets = new WeakSet<WebSocket>();
  let unidentified = 0;
  options.credentials.on('revoked', (tokenId) => {
    let workerRevoked = false;
    for (const socket of wss.clients) {
      if (tokenOf.get(socket) !== tokenId) continue;
      workerRevoked ||= workerSockets.has(socket);
      closeWith(socket, 'the access token was revoked');
    }
    // That worker knew the peer key: the others get a new one, so it cannot fetch from them.
    if (workerRevoked) farm.rotatePeerKey();
  });

  wss.on('connection', (socket, request) => {
    alive.set(socket, Date.now());
    socket.on('pong', () => alive.set(socket, Date.now()));
    socket.on('error', (error) => log.debug({ err: error }, 'socket error'));
    if (unidentified >= MAX_UNIDENTIFIED_CONNECTIONS) {
      log.warn({ remote: request.socket.remoteAddress }, 'connection refused: too many connections waiting to identify');
      return closeWith(socket, 'too many connections waiting to identify; try again shortly', 1013);
    }
    unidentified++;
    let identified = false;
    const settleIdentity = () => {
      if (!identified) unidentified--;
      identified = true;
    };
    socket.once('close', settleIdentity);
    const helloTimer = setTimeout(() => closeWith(socket, 'no hello received in time'), HELLO_TIMEOUT_MS);
    socket.once('message', (data) => {
      clearTimeout(helloTimer);
      settleIdentity();
      const parsed = parseMessage(firstMessageSchema, data.toString());
      if (!parsed.ok) return closeWith(socket, parsed.error);
      const first = parsed.message;
      if (first.protocol !== PROTOCOL_VERSION) {
        return closeWith(socket, `protocol version ${first.protocol} is not supported; this server speaks ${PROTOCOL_VERSION}: upgrade the client`);
      }
      const remote = request.socket.remoteAddress;
      if (first.type === 'hello') {
        const token = options.credentials.verify(first.token);
        if (!token || !mayWork(token.role)) {
          log.warn({ remote, name: first.name, role: token?.role }, 'worker refused: not a worker token');
          return closeWith(socket, token ? 'a user token cannot run a worker: use a worker token' : 'wrong worker token');
        }
        tokenOf.set(socket, token.id);
        workerSockets.add(socket);
        farm.background(serveWorker(farm, socket, first, remote, log));
        return;
      }
      // Observers are browsers or the CLI: the same rules as the HTTP API's.
      const origin = request.headers.origin;
      if (!options.hosts.allowsHost(request.headers.host) || (origin !== undefined && !options.hosts.allowsOrigin(origin))) {
        log.warn({ origin, host: request.headers.host }, 'observer refused: page from another site');
        return closeWith(socket, 'connections from other sites are not allowed');
      }
      const principal = identify(request.headers, remote, first.token, options);
      if (!usesApi(principal)) {
        log.warn({ remote }, 'observer refused: wrong token');
        return closeWith(socket, 'wrong or missing access token');
      }
      if (principal.via !== 'loopback') tokenOf.set(socket, principal.token.id);
      serveObserver(farm, socket);
    });
  });

  const heartbeat = setInterval(() => {
    const deadline = Date.now() - options.heartbeatTimeoutMs;
    for (const socket of wss.clients) {
      if ((alive.get(socket) ?? 0) < deadline) socket.terminate();
      else socket.ping();
    }
  }, Math.max(250, Math.floor(options.heartbeatTimeoutMs / 3)));

  return {
    port: (wss.address() as { port: number }).port,
    async close() {
      clearInterval(heartbeat);
      for (const socket of wss.clients) socket.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

async function serveWorker(
  farm: Farm,
  socket: WebSocket,
  hello: Extract<WorkerMessage, { type: 'hello' }>,
  remoteAddress: string | undefined,
  log: Logger,
) {
  const link: WorkerLink = {
    send: (message: ServerToWorker) => sendJson(socket, message),
    close: (reason) => closeWith(socket, reason),
    remoteAddress,
  };
  // Messages that arrive while the hello is being stored wait their turn.
  const early: string[] = [];
  const collect = (data: unknown) => early.push(String(data));
  socket.on('message', collect);
  let workerId: string;
  try {
    workerId = await farm.workerConnected(hello, link);
  } catch (error) {
    log.error({ err: error }, 'could not register worker');
    return closeWith(socket, 'server error while registering the worker');
  }
  socket.off('message', collect);
  const handle = (raw: string) => {
    const parsed = parseMessage(workerMessageSchema, raw);
    if (!parsed.ok) {
      log.warn({ workerId, error: parsed.error }, 'invalid message from worker');
      return link.send({ type: 'error', message: parsed.error });
    }
    farm.background(dispatchWorkerMessage(farm, workerId, parsed.message));
  };
  socket.on('message', (data) => handle(data.toString()));
  socket.on('close', () => farm.background(farm.workerDisconnected(workerId, link)));
  for (const raw of early) handle(raw);
}

async function dispatchWorkerMessage(farm: Farm, workerId: string, message: WorkerMessage) {
  switch (message.type) {
    case 'hello':
      return; // already introduced; a repeated hello changes nothing
    case 'ready':
      return farm.workerReady(workerId);
    case 'schedule':
      return farm.workerScheduleChanged(workerId, message.asleep);
    case 'progress':
      return farm.workerProgress(workerId, message.jobId, message.frame, message.percent, message.tile);
    case 'frame_failed':
      if (message.reason !== 'render') return farm.frameHandedBack(workerId, message.jobId, message.frame, message.error, message.tile);
      return farm.frameFailed(workerId, message.jobId, message.frame, message.error, message.log, message.tile);
    case 'probe_result':
      return farm.probeSucceeded(workerId, message.jobId, message.scene);
    case 'probe_failed':
      if (message.reason === 'disk_full') return farm.probeHandedBack(workerId, message.jobId, message.error);
      return farm.probeFailed(workerId, message.jobId, message.error);
    case 'files':
      return farm.workerFiles(workerId, message);
  }
}

/** How often an observer receives the state changes gathered since the last batch. */
const OBSERVER_BATCH_MS = 200;
/**
 * How often it receives progress. Progress is most of what a busy farm says (2,000 workers
 * reporting every 250 ms), and a percent a second old is still right to the eye, while a
 * frame that started or finished should show at once: progress waits for every fifth batch.
 */
const OBSERVER_PROGRESS_MS = 1000;

function serveObserver(farm: Farm, socket: WebSocket) {
  const gathered = new ObserverBatches(Date.now());
  const flush = setInterval(() => {
    const changes = gathered.take(Date.now());
    if (changes.length > 0) sendJson(socket, { type: 'batch', changes } satisfies FarmEvent);
  }, OBSERVER_BATCH_MS);
  sendJson(socket, { type: 'welcome', protocol: PROTOCOL_VERSION } satisfies FarmEvent);
  const gather = (change: FarmChange) => gathered.add(change);
  farm.on('event', gather);
  socket.on('close', () => {
    clearInterval(flush);
    farm.off('event', gather);
  });
  // Observers only listen; anything they send is answered with an error, never acted on.
  socket.on('message', () => sendJson(socket, { type: 'error', message: 'observers cannot send messages' }));
}

/**
 * The changes one observer has yet to receive, latest per job, frame and worker (changeKey),
 * in the order of their latest change. Progress is kept apart and given out at most once
 * per OBSERVER_PROGRESS_MS; state changes every time they are taken.
 */
export class ObserverBatches {
  private readonly state = new Map<string, FarmChange>();
  private readonly progress = new Map<string, FarmChange>();

  constructor(private progressSentAt: number) {}

  add(change: FarmChange): void {
    const key = changeKey(change);
    const into = change.type === 'progress' ? this.progress : this.state;
    into.delete(key); // re-inserted last: a slim change must come after the views it updates
    into.set(key, change);
    // A worker's whole view carries its percent: older progress of that worker would only take it back.
    if (change.type === 'worker') this.progress.delete(`progress:${change.worker.id}`);
  }

  /** The changes to send now (maybe none); progress only when its interval is over. */
  take(now: number): FarmChange[] {
    const changes = [...this.state.values()];
    this.state.clear();
    if (now - this.progressSentAt >= OBSERVER_PROGRESS_MS) {
      this.progressSentAt = now;
      changes.push(...this.progress.values());
      this.progress.clear();
    }
    return changes;
  }
}

function sendJson(socket: WebSocket, message: unknown) {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
}

/** 1008: policy violation; 1013: try again later. The reason is also sent as a message since close reasons are capped at 123 bytes. */
function closeWith(socket: WebSocket, reason: string, code = 1008) {
  sendJson(socket, { type: 'error', message: reason });
  socket.close(code, reason.slice(0, 120));
}

