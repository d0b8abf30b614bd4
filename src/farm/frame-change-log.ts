import { randomBytes } from 'node:crypto';
import type { FarmChange } from '../protocol/index.ts';

/** Frame changes remembered: at a busy farm's thousand a second, about a minute of them. */
const FRAME_CHANGES_KEPT = 65_536;

/**
 * Which frames changed lately, so that a page holding a job's frames from a moment ago
 * can fetch only the frames changed since (`GET /api/jobs/:id/frames?since=`) instead of
 * all of them again. A cursor counts the frame changes announced in this server run.
 */
export class FrameChangeLog {
  /** Cursors from another server run, or another log, mean nothing here. */
  private readonly run = randomBytes(6).toString('hex');
  private count = 0;
  // Full size from the start, so the log does not grow (and show as memory per frame) as it fills.
  private readonly jobIds = new Array<string | null>(FRAME_CHANGES_KEPT).fill(null);
  private readonly numbers = new Float64Array(FRAME_CHANGES_KEPT);

  /** Takes every farm change; keeps which frame changed. */
  record(change: FarmChange): void {
    if (change.type !== 'frame') return;
    const slot = this.count % FRAME_CHANGES_KEPT;
    this.jobIds[slot] = change.frame.jobId;
    this.numbers[slot] = change.frame.number;
    this.count++;
  }

  /** Where the log stands: every frame change announced so far is before it. */
  cursor(): string {
    return `${this.run}.${this.count}`;
  }

  /** A job's frames that changed after `cursor`, ascending; null when the log cannot tell (another run, or too long ago). */
  changedSince(jobId: string, cursor: string): number[] | null {
    const [run, counted] = cursor.split('.');
    const from = Number(counted);
    if (run !== this.run || !Number.isInteger(from) || from < 0 || from > this.count || this.count - from > FRAME_CHANGES_KEPT) return null;
    const changed = new Set<number>();
    for (let k = from; k < this.count; k++) {
      const slot = k % FRAME_CHANGES_KEPT;
      if (this.jobIds[slot] === jobId) changed.add(this.numbers[slot]!);
    }
    return [...changed].sort((a, b) => a - b);
  }
}
