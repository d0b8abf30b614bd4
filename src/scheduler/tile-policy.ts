import type { JobTilingPlan } from '../jobs/index.ts';
import { gridForCount, type TileGrid } from '../protocol/index.ts';

/**
 * A tile shorter than this is not worth splitting for: each tile pays the scene sync,
 * the save, the upload and a share of the stitch, about what a whole small frame costs.
 */
export const MIN_TILE_MS = 2000;

export interface SplitContext {
  /** Workers waiting for work right now, this one included. */
  idleWorkers: number;
  /** Frames of the job not yet handed out, the one being decided included. */
  framesLeft: number;
  /** The job's measured time for one whole frame, when any has finished. */
  frameMs: number | undefined;
}

/**
 * Whether to cut the next frame into tiles, and how. A grid plan always splits. `auto`
 * splits only when at least two idle workers wait per frame left (a still, or an
 * animation's tail), into as many tiles as there are idle workers per frame, but never
 * into tiles expected to take under MIN_TILE_MS (when the job's speed is known) or to be
 * smaller than MIN_TILE_PX on a side.
 */
export function chooseSplit(plan: JobTilingPlan, context: SplitContext): TileGrid | null {
  if (plan.mode === 'off') return null;
  if (plan.mode === 'grid') return plan.grid;
  let wanted = Math.floor(context.idleWorkers / Math.max(1, context.framesLeft));
  if (context.frameMs !== undefined) wanted = Math.min(wanted, Math.floor(context.frameMs / MIN_TILE_MS));
  if (wanted < 2) return null;
  return gridForCount(wanted, plan.frameWidth, plan.frameHeight);
}
