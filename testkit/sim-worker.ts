/**
 * testkit (see README.md): simulated render workers. Real WebSocket clients speak the real
 * worker protocol (src/protocol/messages.ts) and upload over the real HTTP endpoint with
 * the real worker's headers, but "render" with a timer instead of Blender (fakes.ts holds
 * the scene they report and the frames they upload).
 *
 * Each worker: `hello` → `welcome` → `ready`; on `probe`, a made-up SceneInfo; on `render`,
 * waits the simulated time (with `progress`), PUTs the frame with its log, then
 * `ready` again; on `cancel`, stops a render (not an upload) and says `ready`. Render times
 * come from `renderMs(job, frame, worker index)`, so workers can differ in speed. Uploading
 * before `ready` is the conservative order: upload latency counts against the farm.
 * Server messages are parsed with plain JSON.parse, not zod, to spare the CPU the server
 * under test shares on a 2-core machine.
 */
import http from 'node:http';
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import {
  apiPath,
  PROTOCOL_VERSION,
  RESULT_IMAGE_FIELD,
  RESULT_MANIFEST_FIELD,
  UPLOAD_KEY_HEADER,
  type SceneInfo,
  type ServerToWorker,
  type WorkerMessage,
} from '../src/protocol/index.ts';
import { MultipartBody } from '../src/util/multipart-body.ts';
import type { FrameBody } from './fakes.ts';


export interface SimWorkerOptions {
  /** ws://127.0.0.1:PORT, the server's WebSocket port. */
  wsUrl: string;
  /** http://127.0.0.1:PORT, the server's HTTP port. */
  httpUrl: string;
  token: string;
  count: number;
  /** Simulated render time of one frame, in ms (draw jitter here). */
  renderMs: (jobId: string, frame: number, workerIndex: number) => number;
  /** What probing a job's .blend "finds". */
  scene: (jobId: string) => SceneInfo;
  /** Simulated probe time, ms (a real probe takes ~2 s). Default 0. */
  probeMs?: number;
  /** What is uploaded as every frame, or as each frame of each job (distinct frames, for video tests and benchmarks). */
  frame: FrameBody | ((jobId: string, frame: number) => FrameBody);
  /** Download each .blend once per worker before its first probe or render, as real workers do. Default true. */
  downloadBlends?: boolean;
  /**
   * Send `progress` messages this often while "rendering", or as often as the server's pace
   * allows if that is less often (as the real worker does). 0 or absent: none.
   */
  progressMs?: number;
  /** Blender's output, sent with each frame's upload as the real worker does. null or absent: an empty log. */
  frameLog?: string | null;
  /** Workers connect this many at a time. Default 50. */
  connectBatch?: number;
  namePrefix?: string;
  /**
   * Called on each assignment, cancel and upload answer as it happens, with the worker's
   * index and performance.now(): a timeline for benchmarks that look at when things happen.
   */
  trace?: (event: SimEvent) => void;
}

/**
 * What a worker saw or did, for `trace`. `render`: an assignment arrived. `cancel`: a cancel
 * arrived (`stopped`: it stopped a render in progress). `accepted` / `refused`: the answer to
 * a frame upload.
 */
export interface SimEvent {
  type: 'render' | 'cancel' | 'accepted' | 'refused';
  worker: number;
  jobId: string;
  /** Absent for a cancel of the whole job. */
  frame: number | undefined;
  at: number;
  stopped?: boolean;
}

export interface SimStats {
  /** ms from sending `ready` (after a finished frame) to receiving the next `render`. */
  readyToRender: number[];
  /** The same for each worker's very first `ready` (includes waiting for a job to exist). */
  firstReadyToRender: number[];
  /** ms of each frame upload (request start to response end). */
  uploadMs: number[];
  renders: number;
  uploadsAccepted: number;
  uploadsRefused: number;
  uploadRetries: number;
  uploadErrors: number;
  /** Every `cancel` message received, whether or not it stopped anything. */
  cancelsReceived: number;
  /** Every `pace` message any worker received (the server's progress interval, ms). */
  paces: number[];
  /** Cancels that stopped a render in progress (not one already uploading). */
  cancelsDuringRender: number;
  probes: number;
  blendDownloads: number;
  blendBytes: number;
  blendDownloadMs: number[];
  /** Sum of the simulated render times of frames whose upload was accepted. */
  simulatedMs: number;
  /** performance.now() of the first `render` received, and of the last accepted upload's answer. */
  firstRenderAt: number;
  lastUploadAt: number;
  /** jobId -> frame -> how many times that frame was assigned / accepted. */
  assigned: Map<string, Map<number, number>>;
  accepted: Map<string, Map<number, number>>;
  errors: string[];
}

const MAX_ERRORS = 50;

export class SimulatedWorkers {
  readonly stats: SimStats = {
    readyToRender: [],
    firstReadyToRender: [],
    uploadMs: [],
    renders: 0,
    uploadsAccepted: 0,
    uploadsRefused: 0,
    uploadRetries: 0,
    uploadErrors: 0,
    cancelsReceived: 0,
    paces: [],
    cancelsDuringRender: 0,
    probes: 0,
    blendDownloads: 0,
    blendBytes: 0,
    blendDownloadMs: [],
    simulatedMs: 0,
    firstRenderAt: Number.NaN,
    lastUploadAt: Number.NaN,
    assigned: new Map(),
    accepted: new Map(),
    errors: [],
  };
  readonly workers: SimWorker[] = [];
  /** The client process's own event-loop delay while the workers run: high values mean the client, not the server, was slow. */
  readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  private frameListeners: Array<() => void> = [];

  private constructor(readonly options: SimWorkerOptions) {}

  /** Connects `count` workers and resolves when every one has been welcomed and said `ready`. */
  static async start(options: SimWorkerOptions): Promise<SimulatedWorkers> {
    const farm = new SimulatedWorkers(options);
    farm.loopDelay.enable();
    const batch = options.connectBatch ?? 50;
    for (let i = 0; i < options.count; i += batch) {
      const group: Promise<void>[] = [];
      for (let j = i; j < Math.min(options.count, i + batch); j++) {
        const worker = new SimWorker(farm, j);
        farm.workers.push(worker);
        group.push(worker.connect());
      }
      await Promise.all(group);
    }
    return farm;
  }

  /** Server-side ids of the workers, as the welcome messages gave them. */
  get workerIds(): string[] {
    return this.workers.map((w) => w.id!).filter(Boolean);
  }

  /** Called after every accepted upload (for progress reporting and waiting). */
  onFrameAccepted(listener: () => void): void {
    this.frameListeners.push(listener);
  }

  /** @internal */
  frameAccepted(): void {
    for (const listener of this.frameListeners) listener();
  }

  /** @internal */
  error(message: string): void {
    if (this.stats.errors.length < MAX_ERRORS) this.stats.errors.push(message);
  }

  async close(): Promise<void> {
    this.loopDelay.disable();
    await Promise.all(this.workers.map((w) => w.close()));
    this.agent.destroy();
  }
}

/** One simulated render: a timer, optional progress ticks, and a way to stop both. */
class Rendering {
  cancelled = false;
  uploading = false;
  progress: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private settle: ((finished: boolean) => void) | null = null;

  constructor(
    readonly jobId: string,
    readonly frame: number,
  ) {}

  /** Resolves true after `ms`, or false as soon as the render is cancelled. */
  wait(ms: number): Promise<boolean> {
    if (this.cancelled) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.settle = resolve;
      this.timer = setTimeout(() => this.stop(true), ms);
    });
  }

  cancel(): void {
    this.cancelled = true;
    this.stop(false);
  }

  private stop(finished: boolean): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.progress) clearInterval(this.progress);
    this.timer = this.progress = null;
    this.settle?.(finished);
    this.settle = null;
  }
}

function bump(map: Map<string, Map<number, number>>, jobId: string, frame: number): void {
  let frames = map.get(jobId);
  if (!frames) map.set(jobId, (frames = new Map()));
  frames.set(frame, (frames.get(frame) ?? 0) + 1);
}

class SimWorker {
  id: string | undefined;
  /** From the welcome: binds this worker's uploads to its connection. */
  uploadKey: string | undefined;
  /** The server's pace for progress reports (welcome, `pace`); a render started after a change follows it. */
  private paceMs = 0;
  private socket: WebSocket | null = null;
  private readySentAt = Number.NaN;
  private firstReady = true;
  private current: Rendering | null = null;
  private readonly blends = new Map<string, Promise<void>>();
  private closing = false;

  constructor(
    private readonly farm: SimulatedWorkers,
    readonly index: number,
  ) {}

  private get opts() {
    return this.farm.options;
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.opts.wsUrl, { handshakeTimeout: 30_000, perMessageDeflate: false });
      this.socket = socket;
      let welcomed = false;
      socket.on('open', () => {
        this.send({
          type: 'hello',
          role: 'worker',
          protocol: PROTOCOL_VERSION,
          token: this.opts.token,
          name: `${this.opts.namePrefix ?? 'sim'}-${String(this.index).padStart(4, '0')}`,
          host: 'simulated',
          threads: 1,
          blenderVersion: '3.4.1',
          blenders: ['3.4.1'],
          allowScripts: false,
          tags: [],
          holding: [],
        } as WorkerMessage);
      });
      socket.on('message', (data) => {
        let message: ServerToWorker;
        try {
          message = JSON.parse(String(data)) as ServerToWorker;
        } catch {
          this.farm.error(`worker ${this.index}: invalid JSON from the server`);
          return;
        }
        if (message.type === 'welcome') {
          this.id = message.workerId;
          this.uploadKey = message.uploadKey;
          this.paceMs = message.progressMs;
          welcomed = true;
          this.ready();
          resolve();
          return;
        }
        this.handle(message);
      });
      socket.on('error', (error) => {
        if (!welcomed) reject(error);
        else if (!this.closing) this.farm.error(`worker ${this.index}: socket error ${error.message}`);
      });
      socket.on('close', (code, reason) => {
        if (!welcomed) reject(new Error(`worker ${this.index}: closed before welcome (${code} ${String(reason)})`));
        else if (!this.closing) this.farm.error(`worker ${this.index}: connection closed by the server (${code} ${String(reason)})`);
      });
    });
  }

  close(): Promise<void> {
    this.closing = true;
    this.current?.cancel();
    const socket = this.socket;
    if (!socket || socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once('close', () => resolve());
      socket.terminate();
    });
  }

  private send(message: WorkerMessage): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private ready(): void {
    this.readySentAt = performance.now();
    this.send({ type: 'ready' });
  }

  private handle(message: ServerToWorker): void {
    const stats = this.farm.stats;
    switch (message.type) {
      case 'render': {
        const at = performance.now();
        if (!Number.isNaN(this.readySentAt)) {
          (this.firstReady ? stats.firstReadyToRender : stats.readyToRender).push(at - this.readySentAt);
        }
        this.firstReady = false;
        this.readySentAt = Number.NaN;
        if (Number.isNaN(stats.firstRenderAt)) stats.firstRenderAt = at;
        stats.renders++;
        bump(stats.assigned, message.jobId, message.frame);
        this.opts.trace?.({ type: 'render', worker: this.index, jobId: message.jobId, frame: message.frame, at });
        void this.render(message.jobId, message.frame, message.blend.sha256);
        return;
      }
      case 'pace':
        stats.paces.push(message.progressMs);
        this.paceMs = message.progressMs;
        return;
      case 'probe':
        stats.probes++;
        void this.probe(message.jobId, message.blend.sha256);
        return;
      case 'cancel': {
        // Like the real worker, only a render in progress is stopped; an upload under way goes on.
        stats.cancelsReceived++;
        const current = this.current;
        const stops = current !== null && !current.uploading && current.jobId === message.jobId && (message.frame === undefined || message.frame === current.frame);
        this.opts.trace?.({ type: 'cancel', worker: this.index, jobId: message.jobId, frame: message.frame, at: performance.now(), stopped: stops });
        if (stops) {
          current.cancel();
          stats.cancelsDuringRender++;
          this.current = null;
          this.ready();
        }
        return;
      }
      case 'tag_schedules':
        return; // simulated workers keep no hours: always awake
      case 'error':
        this.farm.error(`worker ${this.index}: server error: ${message.message}`);
        return;
    }
  }

  private async probe(jobId: string, sha256: string): Promise<void> {
    try {
      await this.blend(sha256);
      if (this.opts.probeMs) await new Promise((r) => setTimeout(r, this.opts.probeMs));
      this.send({ type: 'probe_result', jobId, scene: this.opts.scene(jobId) });
    } catch (error) {
      this.send({ type: 'probe_failed', jobId, error: (error as Error).message, reason: 'scene' });
    }
  }

  private async render(jobId: string, frame: number, sha256: string): Promise<void> {
    const current = new Rendering(jobId, frame);
    this.current = current;
    try {
      await this.blend(sha256);
    } catch (error) {
      this.farm.error(`worker ${this.index}: blend download failed: ${(error as Error).message}`);
    }
    if (current.cancelled) return;
    const renderMs = Math.max(0, this.opts.renderMs(jobId, frame, this.index));
    // Like the real worker: "Blender" prints progress every progressMs, the server's pace caps what is sent.
    const every = this.opts.progressMs ? Math.max(this.opts.progressMs, this.paceMs) : 0;
    const started = performance.now();
    if (every > 0) {
      current.progress = setInterval(() => {
        const percent = Math.min(99, Math.round(((performance.now() - started) / renderMs) * 100));
        this.send({ type: 'progress', jobId, frame, percent });
      }, every);
    }
    const finished = await current.wait(renderMs);
    if (!finished || this.closing) return;
    current.uploading = true;
    const answer = await this.upload(jobId, frame, renderMs);
    if (this.closing) return;
    const stats = this.farm.stats;
    if (answer?.accepted) {
      stats.uploadsAccepted++;
      stats.simulatedMs += renderMs;
      stats.lastUploadAt = performance.now();
      bump(stats.accepted, jobId, frame);
      this.opts.trace?.({ type: 'accepted', worker: this.index, jobId, frame, at: stats.lastUploadAt });
      this.farm.frameAccepted();
    } else if (answer) {
      stats.uploadsRefused++;
      this.opts.trace?.({ type: 'refused', worker: this.index, jobId, frame, at: performance.now() });
    }
    this.current = null;
    this.ready();
  }

  /** Each .blend is fetched once per worker, like src/worker/blend-cache.ts (bytes counted, not stored). */
  private blend(sha256: string): Promise<void> {
    if (this.opts.downloadBlends === false) return Promise.resolve();
    let download = this.blends.get(sha256);
    if (!download) {
      download = this.download(sha256);
      this.blends.set(sha256, download);
    }
    return download;
  }

  private download(sha256: string): Promise<void> {
    const started = performance.now();
    const stats = this.farm.stats;
    return new Promise((resolve, reject) => {
      const request = http.get(`${this.opts.httpUrl}${apiPath('downloadBlend', { sha256 })}`, {
        agent: this.farm.agent,
        headers: { authorization: `Bearer ${this.opts.token}` },
      });
      request.on('response', (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(new Error(`HTTP ${response.statusCode}`));
          return;
        }
        response.on('data', (chunk: Buffer) => (stats.blendBytes += chunk.length));
        response.on('end', () => {
          stats.blendDownloads++;
          stats.blendDownloadMs.push(performance.now() - started);
          resolve();
        });
        response.on('error', reject);
      });
      request.on('error', reject);
    });
  }

  private async upload(jobId: string, frame: number, renderMs: number): Promise<{ accepted: boolean } | null> {
    const stats = this.farm.stats;
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      try {
        const answer = await this.put(jobId, frame, renderMs);
        stats.uploadMs.push(performance.now() - started);
        return answer;
      } catch (error) {
        const status = (error as { statusCode?: number }).statusCode;
        if ((status !== undefined && status < 500) || attempt >= 3 || this.closing) {
          stats.uploadErrors++;
          this.farm.error(`worker ${this.index}: upload of ${jobId}#${frame} failed: ${(error as Error).message}`);
          return null;
        }
        stats.uploadRetries++;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  /** The same request as src/worker/frame-uploader.ts: a manifest with the log, then the image. */
  private put(jobId: string, frame: number, renderMs: number): Promise<{ accepted: boolean }> {
    const frameBody = typeof this.opts.frame === 'function' ? this.opts.frame(jobId, frame) : this.opts.frame;
    const manifest = { sha256: frameBody.sha256, renderMs: Math.round(renderMs), log: this.opts.frameLog ?? '', passes: [] };
    const body = new MultipartBody({ [RESULT_MANIFEST_FIELD]: JSON.stringify(manifest) }, [
      { field: RESULT_IMAGE_FIELD, fileName: 'image', source: frameBody.kind === 'buffer' ? { buffer: frameBody.body } : { file: frameBody.file, size: frameBody.size } },
    ]);
    return new Promise((resolve, reject) => {
      const request = http.request(`${this.opts.httpUrl}${apiPath('uploadFrame', { id: jobId, frame })}`, {
        method: 'PUT',
        agent: this.farm.agent,
        headers: {
          authorization: `Bearer ${this.opts.token}`,
          'content-type': body.contentType,
          'content-length': body.length,
          [UPLOAD_KEY_HEADER]: this.uploadKey!,
        },
      });
      request.on('response', (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk) => (text += chunk));
        response.on('end', () => {
          if (response.statusCode === 200) {
            try {
              resolve(JSON.parse(text) as { accepted: boolean });
            } catch {
              reject(new Error(`invalid answer: ${text.slice(0, 200)}`));
            }
          } else {
            reject(Object.assign(new Error(`HTTP ${response.statusCode}: ${text.slice(0, 300)}`), { statusCode: response.statusCode }));
          }
        });
      });
      request.on('error', reject);
      body.writeTo(request).catch(reject);
    });
  }
}
