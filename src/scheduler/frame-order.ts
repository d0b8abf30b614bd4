/**
 * The order a job's frames are handed out in. `interleaved` (the default, Flamenco's
 * idea) renders the first frame, the last, the middle, then the middles of the halves,
 * of the quarters, and so on, so a problem anywhere in the shot shows within the first
 * few frames instead of at the end. `sequential` renders them in frame order, for scenes
 * whose unbaked simulations need the frames before them.
 */
import type { FrameOrder } from '../protocol/index.ts';

/**
 * Reorders `frames` (already in frame order) for hand-out. Linear in the number of
 * frames: the gaps to bisect are visited breadth-first from a queue, so coarse samples of
 * the whole range come before finer ones.
 */
export function orderFrames(frames: readonly number[], order: FrameOrder): number[] {
  if (order === 'sequential' || frames.length <= 2) return [...frames];
  const last = frames.length - 1;
  const result = [frames[0]!, frames[last]!];
  // Gaps as pairs of indices whose inner frames are not out yet; a flat array used as a queue.
  const gaps = [0, last];
  for (let head = 0; head < gaps.length; head += 2) {
    const from = gaps[head]!;
    const to = gaps[head + 1]!;
    if (to - from < 2) continue;
    const middle = (from + to) >> 1;
    result.push(frames[middle]!);
    gaps.push(from, middle, middle, to);
  }
  return result;
}
