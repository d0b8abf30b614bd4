/** Images cut into tiles, decoded with ffmpeg, for the stitcher's tests (test/stitch.test.ts). */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { tileRects, type PixelRect, type TileGrid } from '../../src/protocol/tiles.ts';
import { type StitchRequest, type TileFile } from '../../src/stitch/index.ts';

const run = promisify(execFile);
const FFMPEG = 'ffmpeg';
// Odd sizes, so both grids below cut uneven tiles.
export const W = 97;
export const H = 61;
export const grids: TileGrid[] = [
  { cols: 2, rows: 2 },
  { cols: 3, rows: 2 },
];

export type Kind = 'png' | 'tif';
export type Channels = 1 | 2 | 3 | 4;
export type Depth = 8 | 16;

export function workDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'archenland-stitch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A deterministic pseudo-random sequence. */
function noise(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 8;
  };
}

/**
 * Samples where channel 0 grows with x and channel 1 with y (each plus noise, so no two
 * pixels are alike where there are two channels), other channels noise. Alpha includes 0
 * next to non-zero colour, which premultiplication would destroy.
 */
export function sourcePixels(channels: Channels, depth: Depth, seed = 1): Uint8Array | Uint16Array {
  const next = noise(seed);
  const out = depth === 16 ? new Uint16Array(W * H * channels) : new Uint8Array(W * H * channels);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < channels; c++) {
        const r = next();
        let v: number;
        if (depth === 8) v = c === 0 ? x * 2 + (r & 1) : c === 1 ? y * 4 + (r & 3) : r & 0xff;
        else v = c === 0 ? x * 600 + (r % 600) : c === 1 ? y * 1000 + (r % 1000) : r & 0xffff;
        out[(y * W + x) * channels + c] = v;
      }
    }
  }
  return out;
}

export const bytesOf = (a: Uint8Array | Uint16Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function space(channels: Channels, depth: Depth): string {
  if (depth === 16) return channels <= 2 ? 'grey16' : 'rgb16';
  return channels <= 2 ? 'b-w' : 'srgb';
}

/** Writes the rect of `pixels` (a W x H image) as a PNG or TIFF, cut with sharp's extract. */
export async function writeTile(pixels: Uint8Array | Uint16Array, channels: Channels, depth: Depth, kind: Kind, rect: PixelRect, file: string): Promise<void> {
  let image = sharp(pixels, { raw: { width: W, height: H, channels, premultiplied: false } })
    .extract({ left: rect.x, top: rect.y, width: rect.width, height: rect.height })
    .toColourspace(space(channels, depth))
    .withDensity(150);
  image = kind === 'png' ? image.png() : image.tiff({ compression: 'lzw' });
  await image.toFile(file);
}

export async function cutRaster(dir: string, pixels: Uint8Array | Uint16Array, channels: Channels, depth: Depth, kind: Kind, grid: TileGrid): Promise<TileFile[]> {
  const tiles: TileFile[] = [];
  for (const [i, rect] of tileRects(W, H, grid).entries()) {
    const file = path.join(dir, `tile_${i}.${kind}`);
    await writeTile(pixels, channels, depth, kind, rect, file);
    tiles.push({ file, rect });
  }
  // Any order must do.
  return tiles.reverse();
}

export const rawFormats: Record<Depth, Record<Channels, string>> = {
  8: { 1: 'gray', 2: 'ya8', 3: 'rgb24', 4: 'rgba' },
  16: { 1: 'gray16le', 2: 'ya16le', 3: 'rgb48le', 4: 'rgba64le' },
};

/**
 * Decodes files to raw samples in one ffmpeg run (each run costs a noticeable fraction of
 * a second just to start, so the tests batch them).
 */
export async function ffmpegDecode(dir: string, items: { file: string; pixelFormat: string }[]): Promise<Buffer[]> {
  const outputs = items.map((_, i) => path.join(dir, `decoded_${i}.raw`));
  await ffmpeg(
    ...items.flatMap((item) => ['-i', item.file]),
    ...items.flatMap((item, i) => ['-map', `${i}:v`, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', item.pixelFormat, outputs[i]!]),
  );
  return outputs.map((file) => readFileSync(file));
}

export async function ffmpeg(...args: string[]): Promise<void> {
  await run(FFMPEG, ['-hide_banner', '-nostdin', '-v', 'error', '-y', ...args]);
}

export function request(dir: string, tiles: TileFile[], extension: StitchRequest['extension'], name = 'frame_0001'): StitchRequest {
  return { tiles, frameWidth: W, frameHeight: H, extension, output: path.join(dir, 'out', `${name}.${extension}`), ffmpegPath: FFMPEG };
}

/** Files the stitcher left beside the output other than the output itself. */
export function leftovers(req: StitchRequest): string[] {
  const dir = path.dirname(req.output);
  return existsSync(dir) ? readdirSync(dir).filter((name) => name !== path.basename(req.output)) : [];
}

