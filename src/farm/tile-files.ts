import { rm } from 'node:fs/promises';
import type { JobTilingPlan } from '../jobs/index.ts';
import { tileRects, type TileGrid } from '../protocol/index.ts';
import { stitchTiles } from '../stitch/index.ts';
import type { DataDir } from '../store/index.ts';

export interface StitchJob {
  jobId: string;
  frame: number;
  grid: TileGrid;
  plan: Exclude<JobTilingPlan, { mode: 'off' }>;
  extension: string;
  output: string;
  ffmpegPath: string;
}

/**
 * One stitch at a time: a 4K half-float EXR stitch holds about 600 MB in ffmpeg, and a
 * server stitching many such frames at once would run out of memory.
 */
let queue: Promise<unknown> = Promise.resolve();

/** Stitches a split frame's tiles from the data directory into its frame file, then drops the tiles. */
export function stitchFrame(dataDir: DataDir, job: StitchJob): Promise<void> {
  const turn = queue.then(() => stitchNow(dataDir, job));
  queue = turn.catch(() => undefined);
  return turn;
}

async function stitchNow(dataDir: DataDir, job: StitchJob): Promise<void> {
  const rects = tileRects(job.plan.frameWidth, job.plan.frameHeight, job.grid);
  const tiles = rects.map((rect, index) => ({ file: dataDir.tileFile(job.jobId, job.frame, index, job.extension), rect }));
  await stitchTiles({
    tiles,
    frameWidth: job.plan.frameWidth,
    frameHeight: job.plan.frameHeight,
    extension: job.extension as 'png' | 'tif' | 'exr',
    output: job.output,
    ffmpegPath: job.ffmpegPath,
  });
  await dropTiles(dataDir, job.jobId, job.frame);
}

/** Removes a frame's tiles (and their previews): stitched, or to be rendered again. */
export async function dropTiles(dataDir: DataDir, jobId: string, frame: number): Promise<void> {
  await rm(dataDir.frameTilesDir(jobId, frame), { recursive: true, force: true });
}
