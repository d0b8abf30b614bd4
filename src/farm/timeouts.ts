import type { TileRegion } from '../protocol/index.ts';
import { isWorkOn } from './connected-worker.ts';
import type { FarmState } from './state.ts';

/** Called when a frame ran past frame_timeout_s; the frame has been stopped on its worker. */
export type OnFrameTimeout = (workerId: string, jobId: string, frame: number, error: string, tile?: number) => void;

/** One timer per worker that stops its frame (or tile) when it renders too long (frame_timeout_s). */
export class FrameTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly state: FarmState,
    private readonly onTimeout: OnFrameTimeout,
  ) {}

  start(workerId: string, jobId: string, frame: number, region?: TileRegion): void {
    this.clear(workerId);
    const { frameTimeoutMs } = this.state.options;
    if (frameTimeoutMs <= 0) return;
    const tile = region?.index;
    const timer = setTimeout(() => {
      const worker = this.state.workers.get(workerId);
      if (!isWorkOn(worker?.current, jobId, frame, tile)) return;
      const seconds = Math.round(frameTimeoutMs / 1000);
      this.state.log.warn({ workerId, jobId, frame, tile, seconds }, 'frame timed out; stopping it');
      worker!.link.send({ type: 'cancel', jobId, frame, tile });
      this.onTimeout(workerId, jobId, frame, `frame took longer than the limit of ${seconds} s (frame_timeout_s) and was stopped`, tile);
    }, frameTimeoutMs);
    timer.unref();
    this.timers.set(workerId, timer);
  }

  clear(workerId: string): void {
    clearTimeout(this.timers.get(workerId));
    this.timers.delete(workerId);
  }

  clearAll(): void {
    for (const workerId of [...this.timers.keys()]) this.clear(workerId);
  }
}
