import { readFile } from 'node:fs/promises';
import type { TiffOptions } from 'sharp';
import { StitchError } from './errors.ts';
import type { CheckedTile, StitchRequest } from './request.ts';
import { EXTRA_SAMPLE, TIFF_COMPRESSION, readTiffTags, setExtraSample, setExtraSampleInFile, type TiffTags } from './tiff-header.ts';

/**
 * PNG and TIFF through sharp (libvips). Each tile is decoded to raw samples exactly as
 * stored — no colour conversion, ICC transform or premultiplication — and its rows copied
 * into one raw buffer of the whole frame, which is then encoded with the tiles' channel
 * count and depth. Holds the frame plus one decoded tile.
 */

type SharpModule = typeof import('sharp');
type Sharp = SharpModule['default'];

/** What the tiles share, checked on every tile before any pixel is decoded. */
export interface RasterLayout {
  kind: 'png' | 'tif';
  channels: 1 | 2 | 3 | 4;
  depth: 8 | 16;
  /** TIFF only. */
  compression?: number;
  alpha: 'associated' | 'straight' | null;
  /** Dots per inch, when the first tile records it. */
  density?: number;
}

interface TileDetail {
  layout: RasterLayout;
  tags: TiffTags | null;
}

const formatName = { png: 'png', tif: 'tiff' } as const;
const bits = { uchar: 8, ushort: 16 } as const;

/** The libvips interpretation that keeps the stored samples as they are. */
function space(layout: Pick<RasterLayout, 'channels' | 'depth'>): string {
  const grey = layout.channels <= 2;
  if (layout.depth === 16) return grey ? 'grey16' : 'rgb16';
  return grey ? 'b-w' : 'srgb';
}

const describe = (l: RasterLayout) =>
  `${l.depth}-bit ${['grey', 'grey+alpha', 'RGB', 'RGBA'][l.channels - 1]}` + (l.alpha === 'associated' ? ' (premultiplied alpha)' : '');

/** Everything the writer needs: sharp, the tiles' shared layout, and each tile's TIFF tags. */
export interface RasterPlan {
  sharp: Sharp;
  layout: RasterLayout;
  details: TileDetail[];
}

export async function checkRasterTiles(kind: 'png' | 'tif', tiles: CheckedTile[]): Promise<RasterPlan> {
  // Loaded on first use, as for previews: sharp costs ~27 MB that a server not stitching never needs.
  const { default: sharp } = await import('sharp');
  const details: TileDetail[] = [];
  for (const tile of tiles) details.push(await probe(sharp, kind, tile));
  const layout = details[0]!.layout;
  tiles.forEach((tile, i) => {
    const other = details[i]!.layout;
    if (describe(other) !== describe(layout)) {
      throw new StitchError(`${tile.label} is ${describe(other)} but ${tiles[0]!.label} is ${describe(layout)}; all tiles must match`, tile.index);
    }
  });
  return { sharp, layout, details };
}

export async function writeRaster(req: StitchRequest, tiles: CheckedTile[], plan: RasterPlan, temp: string): Promise<void> {
  const { sharp, layout } = plan;
  const bytesPerPixel = layout.channels * (layout.depth / 8);
  const frame = Buffer.alloc(req.frameWidth * req.frameHeight * bytesPerPixel);
  for (const [i, tile] of tiles.entries()) {
    const pixels = await decode(sharp, tile, plan.details[i]!);
    place(frame, req.frameWidth, bytesPerPixel, tile, pixels, layout);
  }
  await encode(sharp, frame, req, layout, temp);
}

async function probe(sharp: Sharp, kind: 'png' | 'tif', tile: CheckedTile): Promise<TileDetail> {
  let meta;
  try {
    meta = await sharp(tile.file).metadata();
  } catch (error) {
    throw new StitchError(`${tile.label} cannot be read as an image: ${(error as Error).message}`, tile.index, { cause: error });
  }
  const expected = formatName[kind];
  if (meta.format !== expected) throw new StitchError(`${tile.label} is ${meta.format}, expected ${expected}`, tile.index);
  const { rect } = tile;
  if (meta.width !== rect.width || meta.height !== rect.height) {
    throw new StitchError(`${tile.label} is ${meta.width}x${meta.height}, expected ${rect.width}x${rect.height}`, tile.index);
  }
  const depth = bits[meta.depth as keyof typeof bits];
  if (!depth) throw new StitchError(`${tile.label} has ${meta.depth} samples; only 8 and 16 bits per channel are supported`, tile.index);
  const channels = meta.channels as RasterLayout['channels'];
  if (!(channels >= 1 && channels <= 4) || meta.space !== space({ channels, depth })) {
    throw new StitchError(`${tile.label} has ${meta.channels} channels in ${meta.space}; expected grey, grey+alpha, RGB or RGBA`, tile.index);
  }
  if (meta.icc) {
    // sharp can only attach a profile by converting the pixels to it, and dropping it would change the colours' meaning.
    throw new StitchError(`${tile.label} has an embedded ICC profile, which the stitcher cannot carry over unchanged`, tile.index);
  }

  let tags: TiffTags | null = null;
  let alpha: RasterLayout['alpha'] = channels % 2 === 0 ? 'straight' : null;
  if (kind === 'tif') {
    try {
      tags = await readTiffTags(tile.file);
    } catch (error) {
      throw new StitchError(`${tile.label}: ${(error as Error).message}`, tile.index, { cause: error });
    }
    if (alpha && tags.extraSamples[0] === EXTRA_SAMPLE.associatedAlpha) {
      if (tags.extraSamplesAt === null) throw new StitchError(`${tile.label} has an unusual ExtraSamples tag`, tile.index);
      alpha = 'associated';
    }
  }
  const layout: RasterLayout = { kind, channels, depth, alpha, ...(tags && { compression: tags.compression }) };
  if (meta.density) layout.density = meta.density;
  return { layout, tags };
}

/** The tile's samples, row by row, as stored in the file. */
async function decode(sharp: Sharp, tile: CheckedTile, { layout, tags }: TileDetail): Promise<Buffer> {
  // 8-bit grey+alpha has no interpretation that keeps both bands in raw output, so it is
  // widened to RGBA (grey copied, exactly) and narrowed again in place().
  const decodeSpace = layout.channels === 2 && layout.depth === 8 ? 'srgb' : space(layout);
  try {
    let input: string | Buffer = tile.file;
    if (layout.alpha === 'associated' && tags) {
      // libvips would un-premultiply associated alpha; declared straight, the samples pass through as stored.
      // Inside the try: a tile replaced since it was probed can be too short for the tag's offset.
      input = await readFile(tile.file);
      setExtraSample(input, tags, EXTRA_SAMPLE.unassociatedAlpha);
    }
    const { data, info } = await sharp(input, { ignoreIcc: true, failOn: 'error', limitInputPixels: false })
      .toColourspace(decodeSpace)
      .raw({ depth: layout.depth === 16 ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const wanted = decodeSpace === 'srgb' && layout.channels === 2 ? 4 : layout.channels;
    if (info.width !== tile.rect.width || info.height !== tile.rect.height || info.channels !== wanted) {
      throw new Error(`decoded as ${info.width}x${info.height} with ${info.channels} channels`);
    }
    return data;
  } catch (error) {
    throw new StitchError(`${tile.label} cannot be decoded: ${(error as Error).message}`, tile.index, { cause: error });
  }
}

function place(frame: Buffer, frameWidth: number, bytesPerPixel: number, tile: CheckedTile, pixels: Buffer, layout: RasterLayout): void {
  const { x, y, width, height } = tile.rect;
  const rowBytes = width * bytesPerPixel;
  if (pixels.length === rowBytes * height) {
    for (let row = 0; row < height; row++) {
      pixels.copy(frame, ((y + row) * frameWidth + x) * bytesPerPixel, row * rowBytes, (row + 1) * rowBytes);
    }
    return;
  }
  // 8-bit grey+alpha decoded as RGBA: keep grey (band 0) and alpha (band 3).
  if (layout.channels !== 2 || layout.depth !== 8 || pixels.length !== width * height * 4) {
    throw new Error(`internal: ${tile.label} decoded to ${pixels.length} bytes`);
  }
  for (let row = 0; row < height; row++) {
    let out = ((y + row) * frameWidth + x) * 2;
    let from = row * width * 4;
    for (let col = 0; col < width; col++, out += 2, from += 4) {
      frame[out] = pixels[from]!;
      frame[out + 1] = pixels[from + 3]!;
    }
  }
}

async function encode(sharp: Sharp, frame: Buffer, req: StitchRequest, layout: RasterLayout, temp: string): Promise<void> {
  const { frameWidth: width, frameHeight: height } = req;
  // sharp takes the sample depth from the array type: Uint16Array means 16 bits per channel.
  const samples = layout.depth === 16 ? new Uint16Array(frame.buffer, frame.byteOffset, frame.length / 2) : frame;
  let image = sharp(samples, { raw: { width, height, channels: layout.channels, premultiplied: false }, limitInputPixels: false })
    .toColourspace(space(layout));
  if (layout.kind === 'png') {
    if (layout.density) image = image.withDensity(layout.density);
    image = image.png({ compressionLevel: 6 });
  } else {
    image = image.tiff(tiffOptions(layout));
  }
  await image.toFile(temp);

  // Check the file says what the tiles said, so a change in sharp's defaults cannot go unnoticed.
  const written = await sharp(temp).metadata();
  const depth = bits[written.depth as keyof typeof bits];
  if (written.width !== width || written.height !== height || written.channels !== layout.channels || depth !== layout.depth) {
    throw new Error(
      `sharp wrote a ${written.width}x${written.height} ${depth ?? written.depth}-bit image with ${written.channels} channels; expected ${width}x${height} ${describe(layout)}`,
    );
  }
  if (layout.alpha === 'associated') await setExtraSampleInFile(temp, EXTRA_SAMPLE.associatedAlpha);
}

/** The tiles' own compression when sharp can write it losslessly, else deflate. */
function tiffOptions(layout: RasterLayout): TiffOptions {
  const compression =
    layout.compression === TIFF_COMPRESSION.none ? 'none'
    : layout.compression === TIFF_COMPRESSION.lzw ? 'lzw'
    : layout.compression === TIFF_COMPRESSION.packbits ? 'packbits'
    : 'deflate';
  const options: TiffOptions = { compression, predictor: compression === 'lzw' || compression === 'deflate' ? 'horizontal' : 'none' };
  if (layout.density) {
    options.xres = layout.density / 25.4;
    options.yres = layout.density / 25.4;
    options.resolutionUnit = 'inch';
  }
  return options;
}
