/**
 * A real farm in this process: the test helpers' server (startTestFarm) plus one real
 * worker running real Blender with a chosen thread count, and a log of the farm's own
 * events with their times, to read phases (probe, first frame, last upload) from.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { workerSchema } from '../../src/config/index.ts';
import type { FarmChange, Worker } from '../../src/protocol/index.ts';
import { apiPath } from '../../src/protocol/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { RenderWorker } from '../../src/worker/index.ts';
import { startTestFarm, type TestFarm } from '../../testkit/farm.ts';
import { BLENDER } from '../../testkit/scenes.ts';
import { getJson } from '../../testkit/api.ts';
import { waitFor } from './harness.ts';

export interface JobTimeline {
  /** performance.now() when the job was first reported in each state. */
  states: Map<string, number>;
  /** First frame handed out (frame event, state rendering), and each frame's `done`. */
  firstAssigned?: number;
  framesDone: Map<number, number>;
  error?: string | null;
}

export class RealFarm {
  readonly timelines = new Map<string, JobTimeline>();
  private listeners: Array<() => void> = [];

  private constructor(
    readonly farm: TestFarm,
    readonly worker: RenderWorker,
  ) {
    farm.server.farm.on('event', (event) => this.record(event));
  }

  /** Starts the server and one worker with `threads` render threads; resolves when the worker is idle. */
  static async start(threads: number): Promise<RealFarm> {
    const farm = await startTestFarm();
    const name = 'bench-worker';
    const worker = new RenderWorker(
      {
        ...workerSchema.parse({}),
        blender_path: BLENDER,
        threads,
        address: '127.0.0.1',
        port: farm.server.wsPort,
        web_port: farm.server.httpPort,
        name,
        cache_dir: path.join(farm.root, name),
        token: farm.server.tokens.worker!,
      },
      silentLogger,
    );
    void worker.run();
    farm.workers.push(worker);
    const real = new RealFarm(farm, worker);
    await real.waitForIdleWorker();
    return real;
  }

  get httpUrl(): string {
    return this.farm.server.httpUrl;
  }

  get token(): string {
    return this.farm.server.tokens.user!;
  }

  timeline(jobId: string): JobTimeline {
    let t = this.timelines.get(jobId);
    if (!t) this.timelines.set(jobId, (t = { states: new Map(), framesDone: new Map() }));
    return t;
  }

  /** Resolves once `check` holds, re-checked after every farm event. */
  until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== listener);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const listener = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== listener);
        resolve();
      };
      this.listeners.push(listener);
    });
  }

  /**
   * Until the worker is idle and its pre-warmed Blender waits for the next job: what a
   * worker looks like between jobs, and no start-up left running into the next timing.
   */
  async waitForIdleWorker(timeoutMs = 60_000): Promise<void> {
    await waitFor(
      'an idle worker with a pre-warmed Blender',
      async () => this.worker.prewarmed && (await getJson<Worker[]>(this.httpUrl, this.token, apiPath('listWorkers'))).some((w) => w.state === 'idle'),
      timeoutMs,
      100,
    );
  }

  async close(): Promise<void> {
    await this.farm.close();
  }

  private record(event: FarmChange): void {
    const at = performance.now();
    if (event.type === 'job') {
      const { job } = event;
      const t = this.timeline(job.id);
      if (!t.states.has(job.state)) t.states.set(job.state, at);
      t.error = job.error;
    } else if (event.type === 'frame') {
      const { frame } = event;
      const t = this.timeline(frame.jobId);
      if (frame.state === 'rendering' && t.firstAssigned === undefined) t.firstAssigned = at;
      if (frame.state === 'done' && !t.framesDone.has(frame.number)) t.framesDone.set(frame.number, at);
    }
    for (const listener of [...this.listeners]) listener();
  }
}
