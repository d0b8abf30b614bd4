/**
 * Stitching: assembles a frame on the server from the tiles workers rendered, in the
 * job's own format and bit depth.
 *
 * First everything is checked, before a pixel is decoded: the rects must cover the frame
 * exactly (no overlap, no gap — a wrong grid is caught here), and every tile must exist,
 * be complete, have its rect's exact size, and match the others in channels and depth.
 * Any failure is a StitchError naming the tile. Then:
 *
 * - PNG and TIFF (8 or 16 bits; grey, grey+alpha, RGB, RGBA) go through sharp, loaded on
 *   first use: each tile is decoded to its raw stored samples and copied row by row into
 *   one buffer of the whole frame, which is encoded again with the same channels and
 *   depth. No colour management, ICC conversion or premultiplication touches the values;
 *   TIFF stays lossless (the tiles' compression, or deflate) and keeps associated alpha
 *   as associated (see tiff-header.ts).
 * - OpenEXR goes through ffmpeg's `xstack` filter and `exr` encoder, keeping half or
 *   float and the alpha channel (see exr.ts).
 *
 * The result is written to a hidden temp file beside `output` and renamed over it, so a
 * reader never sees half a file and a failed stitch leaves nothing behind. A frame of one
 * tile is copied as is. Only pixels are carried over: per-file metadata such as Blender's
 * stamp text or EXR attributes beyond the basics is not.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { StitchError } from './errors.ts';
import { checkExrTiles, writeExr } from './exr.ts';
import { checkRasterTiles, writeRaster } from './raster.ts';
import { checkCoverage, rectText } from './rects.ts';
import type { CheckedTile, StitchRequest } from './request.ts';

export { StitchError } from './errors.ts';

export type { CheckedTile, StitchRequest, TileFile } from './request.ts';

const extensions = ['png', 'tif', 'exr'] as const;

export async function stitchTiles(req: StitchRequest): Promise<void> {
  const extension = req.extension as string;
  if (!(extensions as readonly string[]).includes(extension)) {
    throw new StitchError(`cannot stitch .${extension} frames; supported: ${extensions.join(', ')}`);
  }
  const tiles: CheckedTile[] = req.tiles.map((tile, index) => ({
    ...tile,
    index,
    label: `tile ${index} (${rectText(tile.rect)}, ${tile.file})`,
  }));
  checkCoverage(
    tiles.map((t) => t.rect),
    req.frameWidth,
    req.frameHeight,
    (i) => tiles[i]!.label,
  );
  for (const tile of tiles) await checkFile(tile);

  let write: (temp: string) => Promise<void>;
  if (req.extension === 'exr') {
    const plan = await checkExrTiles(tiles);
    write = (temp) => writeExr(req, tiles, plan, temp);
  } else {
    const plan = await checkRasterTiles(req.extension, tiles);
    write = (temp) => writeRaster(req, tiles, plan, temp);
  }

  const dir = path.dirname(req.output);
  await mkdir(dir, { recursive: true });
  // Hidden and not ending in the frame's extension, so globs such as frame_*.png skip it.
  const temp = path.join(dir, `.${path.basename(req.output)}.${randomBytes(4).toString('hex')}.stitching`);
  try {
    if (tiles.length === 1) await copyFile(tiles[0]!.file, temp);
    else await write(temp);
    await rename(temp, req.output);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

async function checkFile(tile: CheckedTile): Promise<void> {
  try {
    const info = await stat(tile.file);
    if (!info.isFile()) throw new StitchError(`${tile.label} is not a file`, tile.index);
  } catch (error) {
    if (error instanceof StitchError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${(error as Error).message})`;
    throw new StitchError(`${tile.label} ${why}`, tile.index, { cause: error });
  }
}
