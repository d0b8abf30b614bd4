import {
  frameSize,
  gridFits,
  gridForCount,
  MIN_TILE_PX,
  type SceneInfo,
  type TileGrid,
  type TileRequest,
} from '../protocol/index.ts';
import { CompileError } from './errors.ts';

/** How a job's frames are cut, as the scheduler needs it. */
export type JobTilingPlan =
  | { mode: 'off' }
  /** Split a frame only when idle workers outnumber the frames left. */
  | { mode: 'auto'; frameWidth: number; frameHeight: number }
  /** Split every frame into this grid. */
  | { mode: 'grid'; grid: TileGrid; frameWidth: number; frameHeight: number };

/** Formats the server can stitch losslessly (PNG and TIFF with sharp, EXR with ffmpeg). */
const STITCHABLE = new Set(['PNG', 'TIFF', 'OPEN_EXR']);

/**
 * Why frames must be rendered whole, in words for the user. Output formats that cannot be
 * stitched always count; scene effects that cross tile edges count unless the job forces
 * tiles (the user accepts visible seams).
 */
export function tileBlockers(scene: SceneInfo, fileFormat: string, forced: boolean): string[] {
  const blockers: string[] = [];
  if (fileFormat === 'JPEG') blockers.push('JPEG frames are rendered whole: each tile would be compressed twice');
  else if (fileFormat === 'OPEN_EXR_MULTILAYER') blockers.push('multilayer EXR frames are rendered whole: their layers cannot be stitched');
  else if (!STITCHABLE.has(fileFormat)) blockers.push(`${fileFormat} frames are rendered whole: only PNG, TIFF and OpenEXR tiles can be stitched`);
  if (forced) return blockers;
  // Measured on Blender 3.4: an EEVEE border render draws the whole view and crops it.
  if (scene.engine === 'BLENDER_EEVEE') blockers.push('EEVEE renders the whole view for every tile and then crops it, so tiles save no time');
  blockers.push(...(scene.tileBlockers ?? []));
  return blockers;
}

/**
 * Turns a job's tile request into a plan. Frames too small to cut into tiles of at least
 * MIN_TILE_PX, or with blockers, are rendered whole; an explicit grid that cannot fit is
 * an error the user sees at submit.
 */
export function planTiling(
  scene: SceneInfo,
  request: { tiles: TileRequest; forceTiles: boolean; fileFormat: string; resolutionPercentage: number },
): JobTilingPlan {
  const { width, height } = frameSize(scene.resolutionX, scene.resolutionY, request.resolutionPercentage);
  const { tiles } = request;
  if (tiles === 'off' || tileBlockers(scene, request.fileFormat, request.forceTiles).length > 0) return { mode: 'off' };
  if (tiles === 'auto') return gridForCount(2, width, height) ? { mode: 'auto', frameWidth: width, frameHeight: height } : { mode: 'off' };
  let grid: TileGrid | null;
  if ('count' in tiles) {
    grid = gridForCount(tiles.count, width, height);
    if (!grid) throw new CompileError(`a ${width}x${height} frame is too small for ${tiles.count} tiles of at least ${MIN_TILE_PX} px`);
  } else {
    grid = tiles;
    if (!gridFits(grid, width, height)) {
      throw new CompileError(`a ${grid.cols}x${grid.rows} grid makes tiles smaller than ${MIN_TILE_PX} px on this ${width}x${height} frame`);
    }
  }
  return grid.cols * grid.rows < 2 ? { mode: 'off' } : { mode: 'grid', grid, frameWidth: width, frameHeight: height };
}
