import { z } from 'zod';

/**
 * Tiles: one frame split into a grid of regions rendered on different workers (Blender's
 * border render, cropped) and stitched on the server. Shared by the scheduler, the worker,
 * the stitcher and the UI, so everyone cuts a frame along the same pixel lines.
 */

/** Explicit grids up to 8x8; more tiles than that cost more in overhead than they save. */
export const MAX_TILE_SIDE = 8;
export const MAX_TILES = MAX_TILE_SIDE * MAX_TILE_SIDE;
/** A tile's place in its frame's grid, row by row from the top-left, from 0. */
export const tileIndexSchema = z.number().int().min(0).max(MAX_TILES - 1);
/** No tile is narrower or shorter than this many pixels (smaller ones are all overhead). */
export const MIN_TILE_PX = 32;

export const tileGridSchema = z.object({
  cols: z.number().int().min(1).max(MAX_TILE_SIDE),
  rows: z.number().int().min(1).max(MAX_TILE_SIDE),
});
export type TileGrid = z.infer<typeof tileGridSchema>;

/**
 * What a job asks for: `auto` splits frames only when idle workers outnumber the frames
 * left; `off` never splits; a grid splits every frame so.
 */
export const tilingSchema = z.union([z.enum(['auto', 'off']), tileGridSchema]);
export type Tiling = z.infer<typeof tilingSchema>;

/** What a submit may say: a policy, a grid, or a tile count whose grid is chosen to fit the frame. */
export const tileRequestSchema = z.union([tilingSchema, z.object({ count: z.number().int().min(2).max(MAX_TILES) })]);
export type TileRequest = z.infer<typeof tileRequestSchema>;

/** How a job's frames are split, as the job view reports it. */
export const jobTilingSchema = z.object({
  requested: tileRequestSchema,
  /** Split even though the scene has effects that cross tile edges. */
  forced: z.boolean(),
  /** Why frames are rendered whole despite the request; empty when tiles may be used. */
  blockers: z.array(z.string()),
});
export type JobTiling = z.infer<typeof jobTilingSchema>;

/** A region in pixels, origin at the image's top-left corner (as image files store them). */
export interface PixelRect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Which part of which frame a worker renders; sent with a `render` assignment. */
export const tileRegionSchema = z.object({
  index: tileIndexSchema,
  cols: z.number().int().min(1).max(MAX_TILE_SIDE),
  rows: z.number().int().min(1).max(MAX_TILE_SIDE),
  /** The tile, top-left origin, in pixels of the full frame. */
  x: z.number().int().min(0),
  y: z.number().int().min(0),
  width: z.number().int().min(1),
  height: z.number().int().min(1),
  /** The full frame's size as the server expects it; Blender checks it against the scene. */
  frameWidth: z.number().int().min(1),
  frameHeight: z.number().int().min(1),
});
export type TileRegion = z.infer<typeof tileRegionSchema>;

/** Parses "auto", "off", "4" (four tiles, grid chosen to fit the frame) or "2x3" (columns x rows). */
export function parseTiling(text: string): TileRequest {
  const value = text.trim().toLowerCase();
  if (value === 'auto' || value === 'off') return value;
  const grid = /^(\d+)\s*x\s*(\d+)$/.exec(value);
  if (grid) {
    const parsed = tileGridSchema.safeParse({ cols: Number(grid[1]), rows: Number(grid[2]) });
    if (!parsed.success) throw new Error(`invalid tile grid "${text}": at most ${MAX_TILE_SIDE}x${MAX_TILE_SIDE}`);
    return parsed.data;
  }
  if (/^\d+$/.test(value)) {
    const count = Number(value);
    if (count < 1 || count > MAX_TILES) {
      throw new Error(`invalid tile count "${text}": 1 to ${MAX_TILES}`);
    }
    return { count };
  }
  throw new Error(`invalid tiles "${text}": expected auto, off, a count such as 4, or a grid such as 2x2`);
}

/** The text form `parseTiling` reads: "auto", "off", "4" or "2x2". */
export function formatTiling(request: TileRequest): string {
  if (typeof request === 'string') return request;
  return 'count' in request ? String(request.count) : `${request.cols}x${request.rows}`;
}

export const tileCount = (grid: TileGrid) => grid.cols * grid.rows;

/**
 * Cuts a frame into `grid` tiles, row by row from the top-left. Edges fall on whole
 * pixels; tiles differ by at most one pixel when the size does not divide evenly.
 */
export function tileRects(frameWidth: number, frameHeight: number, grid: TileGrid): PixelRect[] {
  const xs = cuts(frameWidth, grid.cols);
  const ys = cuts(frameHeight, grid.rows);
  const rects: PixelRect[] = [];
  for (let row = 0; row < grid.rows; row++) {
    for (let col = 0; col < grid.cols; col++) {
      rects.push({ x: xs[col]!, y: ys[row]!, width: xs[col + 1]! - xs[col]!, height: ys[row + 1]! - ys[row]! });
    }
  }
  return rects;
}

function cuts(size: number, parts: number): number[] {
  return Array.from({ length: parts + 1 }, (_, i) => Math.round((i * size) / parts));
}

/**
 * The grid of at most `count` tiles that keeps every tile at least `minPx` on each side,
 * preferring more tiles, then tiles closest to square. Null when the frame is too small
 * to split at all.
 */
export function gridForCount(count: number, frameWidth: number, frameHeight: number, minPx = MIN_TILE_PX): TileGrid | null {
  const maxCols = Math.min(MAX_TILE_SIDE, Math.floor(frameWidth / minPx));
  const maxRows = Math.min(MAX_TILE_SIDE, Math.floor(frameHeight / minPx));
  let best: { grid: TileGrid; tiles: number; skew: number } | null = null;
  for (let cols = 1; cols <= maxCols; cols++) {
    for (let rows = 1; rows <= maxRows; rows++) {
      const tiles = cols * rows;
      if (tiles > count || tiles < 2) continue;
      const skew = Math.abs(Math.log(frameWidth / cols / (frameHeight / rows)));
      if (!best || tiles > best.tiles || (tiles === best.tiles && skew < best.skew)) best = { grid: { cols, rows }, tiles, skew };
    }
  }
  return best?.grid ?? null;
}

/** Whether every tile of `grid` keeps at least `minPx` on each side. */
export function gridFits(grid: TileGrid, frameWidth: number, frameHeight: number, minPx = MIN_TILE_PX): boolean {
  return Math.floor(frameWidth / grid.cols) >= minPx && Math.floor(frameHeight / grid.rows) >= minPx;
}

/** The tile regions of a frame, ready to send with render assignments. */
export function tileRegions(frameWidth: number, frameHeight: number, grid: TileGrid): TileRegion[] {
  return tileRects(frameWidth, frameHeight, grid).map((rect, index) => ({ index, ...grid, ...rect, frameWidth, frameHeight }));
}

/** Blender's output size: resolution scaled by the percentage, rounded down as Blender does. */
export function frameSize(resolutionX: number, resolutionY: number, percentage: number): { width: number; height: number } {
  return { width: Math.floor((resolutionX * percentage) / 100), height: Math.floor((resolutionY * percentage) / 100) };
}
