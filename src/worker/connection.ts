import { WebSocket, type ClientOptions } from 'ws';
import { parseMessage, serverToWorkerSchema, type ServerToWorker, type WorkerMessage } from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import { CertificateError, explainTlsError } from '../util/tls-client.ts';

export interface ConnectionHandlers {
  /** Called on every (re)connect; returns the hello to send. */
  hello(): WorkerMessage;
  onMessage(message: ServerToWorker): void;
  onOpen(): void;
  onClose(): void;
  /** The server refused us for good (wrong token, old protocol): stop retrying. */
  onFatal(reason: string): void;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 15_000;

/** Messages the server sends before closing when retrying cannot help. */
const FATAL_REASONS = [/wrong worker token/, /cannot run a worker/, /token was revoked/, /protocol version/];

/**
 * Keeps one WebSocket to the server open: reconnects with exponential backoff and full
 * jitter, so a hundred workers do not stampede a restarted server at the same instant.
 */
export class ServerConnection {
  private socket: WebSocket | null = null;
  private attempts = 0;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly url: string,
    private readonly handlers: ConnectionHandlers,
    private readonly log: Logger,
    /** TLS trust for a wss:// url (TlsClient.webSocketOptions). */
    private readonly options: ClientOptions = {},
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  get connected(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  send(message: WorkerMessage): boolean {
    if (!this.connected) return false;
    this.socket!.send(JSON.stringify(message));
    return true;
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.socket?.close(1000, 'worker stopping');
    this.socket = null;
  }

  private connect(): void {
    const socket = new WebSocket(this.url, { ...this.options, handshakeTimeout: 10_000 });
    this.socket = socket;
    let fatal: string | null = null;
    socket.on('open', () => {
      this.attempts = 0;
      socket.send(JSON.stringify(this.handlers.hello()));
      this.handlers.onOpen();
    });
    socket.on('message', (data) => {
      const parsed = parseMessage(serverToWorkerSchema, data.toString());
      if (!parsed.ok) return this.log.warn({ error: parsed.error }, 'ignored an invalid message from the server');
      const message = parsed.message;
      if (message.type === 'error' && FATAL_REASONS.some((re) => re.test(message.message))) fatal = message.message;
      this.handlers.onMessage(message);
    });
    socket.on('error', (error) => {
      const explained = explainTlsError(error);
      // A refused certificate stays refused: stop, as for a wrong token, instead of retrying forever.
      if (explained instanceof CertificateError) fatal = explained.message;
      else this.log.debug({ err: explained }, 'connection error');
    });
    socket.on('close', () => {
      if (this.socket === socket) this.socket = null;
      this.handlers.onClose();
      if (fatal) return this.handlers.onFatal(fatal);
      if (!this.stopped) this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    const ceiling = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.attempts++);
    const delay = Math.round(Math.random() * ceiling);
    this.log.info({ inMs: delay, url: this.url }, 'reconnecting to the server');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
