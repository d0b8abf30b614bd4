import { parseFarmEvent, PROTOCOL_VERSION, type FarmChange } from '../../src/protocol/index.ts';
import { api } from './api.ts';

export type LiveStatus = 'connecting' | 'open' | 'down';

export interface LiveHandlers {
  /** The server greeted us: (re)load the full state, then apply batches on top. */
  welcome(): void;
  batch(changes: FarmChange[]): void;
  status(status: LiveStatus, retryAt: number | null, reason: string | null): void;
  /** The server refused us for lack of a login. */
  unauthorized(): void;
}

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

/**
 * The observer connection: `ws://<this host>:<wsPort>`, `observe`, then batches of farm
 * changes. Every message is validated with the shared protocol schema. When the
 * connection drops it comes back by itself, with growing pauses between tries.
 */
export class LiveConnection {
  private socket: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private stopped = false;
  private refused: string | null = null;

  constructor(private readonly handlers: LiveHandlers) {}

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.socket?.close();
    this.socket = null;
  }

  /** Skips the wait before the next attempt. */
  retryNow(): void {
    if (this.stopped || this.socket) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.connect();
  }

  private async connect(): Promise<void> {
    this.handlers.status('connecting', null, null);
    this.refused = null;
    let wsPort: number;
    try {
      const info = await api.info();
      if (info.protocol !== PROTOCOL_VERSION) {
        this.handlers.status('down', null, `the server speaks protocol ${info.protocol}, this page ${PROTOCOL_VERSION}: reload the page`);
        return;
      }
      wsPort = info.wsPort;
    } catch {
      this.scheduleRetry('the farm server cannot be reached');
      return;
    }
    if (this.stopped) return;
    const url = new URL(window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.port = String(wsPort);
    url.pathname = '/';
    url.search = '';
    url.hash = '';
    const socket = new WebSocket(url.href);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: 'observe', protocol: PROTOCOL_VERSION }));
    socket.onmessage = (event) => this.receive(String(event.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (this.refused && /token|login/i.test(this.refused)) {
        this.handlers.status('down', null, this.refused);
        this.handlers.unauthorized();
        return;
      }
      this.scheduleRetry(this.refused ?? 'the live connection to the farm was lost');
    };
  }

  private receive(raw: string): void {
    const parsed = parseFarmEvent(raw);
    if (!parsed.ok) {
      console.warn(`archenland: ignored an invalid message: ${parsed.error}`);
      return;
    }
    // A change this page cannot read (a newer server's kind, say) is left out, not the whole batch.
    if (parsed.skipped > 0) console.warn(`archenland: ignored ${parsed.skipped} change(s) this page cannot read`);
    const event = parsed.event;
    if (event.type === 'welcome') {
      this.failures = 0;
      this.handlers.status('open', null, null);
      this.handlers.welcome();
    } else if (event.type === 'batch') {
      this.handlers.batch(event.changes);
    } else {
      this.refused = event.message;
    }
  }

  private scheduleRetry(reason: string): void {
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)]!;
    this.failures++;
    this.handlers.status('down', Date.now() + delay, reason);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, delay);
  }
}
