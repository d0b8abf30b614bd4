import { spawn } from 'node:child_process';
import path from 'node:path';
import { StitchError } from './errors.ts';
import { boxHeight, boxWidth, readExrFile, type ExrBox, type ExrHeader } from './exr-header.ts';
import type { CheckedTile, StitchRequest } from './request.ts';

/**
 * OpenEXR through ffmpeg (sharp cannot write EXR): every tile is an input, `xstack` lays
 * them out at their rects, and the `exr` encoder writes the frame with the tiles' pixel
 * type (half or float) and a lossless compression. ffmpeg decodes EXR to 32-bit float
 * planes and xstack only copies them, so half values survive exactly (half → float →
 * half is lossless) and float values bit for bit.
 *
 * Memory is ffmpeg's: every decoded tile and the stacked frame as 32-bit float, plus the
 * encoder's buffers — about 600 MB for a 4K half RGBA frame, some 2.5 GB at 8K.
 *
 * ffmpeg's EXR codec knows only the channels R, G, B, A and Y, so anything else (a
 * multilayer file, extra passes such as Z) is refused rather than silently dropped.
 */

/** The channel sets ffmpeg can encode, by their names in file order, and its pixel format for each. */
const pixelFormats: Record<string, string> = {
  'A,B,G,R': 'gbrapf32le',
  'B,G,R': 'gbrpf32le',
  Y: 'grayf32le',
};

/** The tiles' compression when ffmpeg's encoder has it, else ZIP (16 lines), the usual lossless choice. */
const outputCompression: Record<string, string> = { none: 'none', rle: 'rle', zips: 'zip1', zip: 'zip16' };

export interface ExrPlan {
  channels: string;
  pixelType: 'half' | 'float';
  compression: string;
  pixelFormat: string;
}

export async function checkExrTiles(tiles: CheckedTile[]): Promise<ExrPlan> {
  let first: { plan: ExrPlan; tile: CheckedTile } | undefined;
  for (const tile of tiles) {
    const plan = planFor(tile, await header(tile));
    if (!first) first = { plan, tile };
    else if (plan.channels !== first.plan.channels || plan.pixelType !== first.plan.pixelType) {
      throw new StitchError(
        `${tile.label} has ${plan.pixelType} channels ${plan.channels} but ${first.tile.label} has ${first.plan.pixelType} channels ${first.plan.channels}; all tiles must match`,
        tile.index,
      );
    }
  }
  return first!.plan;
}

async function header(tile: CheckedTile): Promise<ExrHeader> {
  try {
    return await readExrFile(tile.file);
  } catch (error) {
    throw new StitchError(`${tile.label} is not a usable OpenEXR file: ${(error as Error).message}`, tile.index, { cause: error });
  }
}

function planFor(tile: CheckedTile, h: ExrHeader): ExrPlan {
  const fail = (why: string) => new StitchError(`${tile.label} ${why}`, tile.index);
  if (h.multipart) throw fail('is a multi-part EXR; only single-part files can be stitched');
  if (h.deep) throw fail('holds deep data; only flat images can be stitched');
  if (h.tiled && h.tiles?.levelMode !== 0) throw fail('is a mip-mapped tiled EXR; only single-level files can be stitched');
  if (h.compression.startsWith('unknown')) throw fail(`uses an unknown compression (${h.compression})`);

  const width = boxWidth(h.displayWindow);
  const height = boxHeight(h.displayWindow);
  if (width !== tile.rect.width || height !== tile.rect.height) {
    throw fail(`is ${width}x${height}, expected ${tile.rect.width}x${tile.rect.height}`);
  }
  if (!sameBox(h.dataWindow, h.displayWindow)) {
    throw fail(`has a data window ${boxText(h.dataWindow)} unlike its display window ${boxText(h.displayWindow)}`);
  }

  const names = h.channels.map((c) => c.name).join(',');
  const pixelFormat = pixelFormats[names];
  if (!pixelFormat) {
    const layered = h.channels.some((c) => c.name.includes('.'));
    throw fail(
      `has channels ${names || '(none)'}; ` +
        (layered ? 'multilayer EXR cannot be stitched, ' : '') +
        "ffmpeg's EXR codec keeps only R,G,B, R,G,B,A or Y",
    );
  }
  const types = new Set(h.channels.map((c) => c.pixelType));
  const [pixelType] = types;
  if (types.size !== 1 || (pixelType !== 'half' && pixelType !== 'float')) {
    throw fail(`has ${[...types].join(' and ')} channels; all channels must be half or all float`);
  }
  if (h.channels.some((c) => c.xSampling !== 1 || c.ySampling !== 1)) throw fail('has subsampled channels');

  return { channels: names, pixelType, compression: outputCompression[h.compression] ?? 'zip16', pixelFormat };
}

const sameBox = (a: ExrBox, b: ExrBox) => a.xMin === b.xMin && a.yMin === b.yMin && a.xMax === b.xMax && a.yMax === b.yMax;
const boxText = (b: ExrBox) => `(${b.xMin},${b.yMin})-(${b.xMax},${b.yMax})`;

export async function writeExr(req: StitchRequest, tiles: CheckedTile[], plan: ExrPlan, temp: string): Promise<void> {
  // `file:` keeps ffmpeg from reading a colon as a protocol; the exr_pipe demuxer, from
  // reading % in a name as a frame-number pattern as image2 would.
  // Slice threads only: frame threads cannot help with one frame and each costs memory.
  const inputs = tiles.flatMap((tile) => ['-f', 'exr_pipe', '-thread_type', 'slice', '-i', `file:${path.resolve(tile.file)}`]);
  const pads = tiles.map((_, i) => `[${i}:v]`).join('');
  const layout = tiles.map((tile) => `${tile.rect.x}_${tile.rect.y}`).join('|');
  const args = [
    '-hide_banner',
    '-nostdin',
    '-loglevel', 'error',
    '-xerror',
    '-y',
    ...inputs,
    '-filter_complex', `${pads}xstack=inputs=${tiles.length}:layout=${layout}[frame]`,
    '-map', '[frame]',
    '-frames:v', '1',
    '-c:v', 'exr',
    '-threads', '1',
    '-pix_fmt', plan.pixelFormat,
    '-format', plan.pixelType,
    '-compression', plan.compression,
    '-f', 'image2pipe',
    `file:${path.resolve(temp)}`,
  ];
  await run(req.ffmpegPath, args);

  // Check the result's header: size, channels and pixel type as the tiles had them.
  const written = await readExrFile(temp);
  const names = written.channels.map((c) => c.name).join(',');
  const types = [...new Set(written.channels.map((c) => c.pixelType))].join(',');
  const width = boxWidth(written.dataWindow);
  const height = boxHeight(written.dataWindow);
  if (width !== req.frameWidth || height !== req.frameHeight || names !== plan.channels || types !== plan.pixelType) {
    throw new Error(
      `ffmpeg wrote a ${width}x${height} EXR with ${types} channels ${names}; expected ${req.frameWidth}x${req.frameHeight} ${plan.pixelType} ${plan.channels}`,
    );
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.on('error', (error) => reject(new Error(`could not run ffmpeg (${command}): ${error.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`ffmpeg exited with code ${code} while stitching: ${stderr.trim().split('\n').slice(-5).join('\n')}`));
    });
  });
}
