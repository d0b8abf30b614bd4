import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { tileRects, type TileGrid } from '../src/protocol/tiles.ts';
import { readExrFile } from '../src/stitch/exr-header.ts';
import { StitchError, stitchTiles, type StitchRequest, type TileFile } from '../src/stitch/index.ts';
import { W, H, grids, type Depth, workDir, sourcePixels, bytesOf, writeTile, cutRaster, rawFormats, ffmpegDecode, ffmpeg, request, leftovers } from './helpers/stitch-fixtures.ts';

/**
 * Stitching without Blender: a generated image is cut into tiles along tileRects, the
 * tiles are stitched, and the result must decode to the source exactly. Results are
 * decoded with ffmpeg, not sharp, so the check does not share the stitcher's decoder.
 */

const channelNames = { 1: 'grey', 2: 'grey+alpha', 3: 'RGB', 4: 'RGBA' } as const;

for (const kind of ['png', 'tif'] as const) {
  test(`${kind.toUpperCase()} tiles stitch back to the exact source: 8 and 16 bits, grey to RGBA, two grids`, async (t) => {
    const dir = workDir(t);
    const cases = [];
    for (const depth of [8, 16] as const) {
      for (const channels of [4, 3, 2, 1] as const) {
        const pixels = sourcePixels(channels, depth, channels * depth);
        for (const grid of grids) {
          const name = `${depth}-bit ${channelNames[channels]}, ${grid.cols}x${grid.rows}`;
          const caseDir = path.join(dir, `${depth}-${channels}-${grid.cols}x${grid.rows}`);
          mkdirSync(caseDir);
          const req = request(caseDir, await cutRaster(caseDir, pixels, channels, depth, kind, grid), kind);
          await stitchTiles(req);
          cases.push({ name, req, pixels, channels, depth, meta: await sharp(req.output).metadata(), leftovers: leftovers(req) });
        }
      }
    }
    const decoded = await ffmpegDecode(
      dir,
      cases.map((c) => ({ file: c.req.output, pixelFormat: rawFormats[c.depth][c.channels] })),
    );
    for (const [i, c] of cases.entries()) {
      await t.test(c.name, () => {
        assert.equal(c.meta.format, kind === 'png' ? 'png' : 'tiff');
        assert.equal(c.meta.width, W);
        assert.equal(c.meta.height, H);
        assert.equal(c.meta.channels, c.channels);
        assert.equal(c.meta.depth, c.depth === 16 ? 'ushort' : 'uchar');
        assert.equal(c.meta.icc, undefined, 'no ICC profile added');
        assert.equal(Math.round(c.meta.density ?? 0), 150, 'resolution kept');
        assert.ok(decoded[i]!.equals(bytesOf(c.pixels)), 'stitched samples differ from the source');
        assert.deepEqual(c.leftovers, []);
      });
    }
  });
}

test('TIFF stays lossless and keeps the tiles’ compression', async (t) => {
  const dir = workDir(t);
  const req = request(dir, await cutRaster(dir, sourcePixels(4, 16), 4, 16, 'tif', grids[1]!), 'tif');
  await stitchTiles(req);
  assert.equal(tiffTag(readFileSync(req.output), 259), 5, 'LZW, as the tiles');
});

/** The first value of a SHORT tag in IFD0 of a little-endian classic TIFF, and where it is stored. */
function tiffTagAt(buf: Buffer, tag: number): number {
  assert.equal(buf.toString('latin1', 0, 4), 'II*\0');
  const ifd = buf.readUInt32LE(4);
  for (let i = 0; i < buf.readUInt16LE(ifd); i++) {
    const at = ifd + 2 + 12 * i;
    if (buf.readUInt16LE(at) === tag) return at + 8;
  }
  assert.fail(`no tag ${tag}`);
}
const tiffTag = (buf: Buffer, tag: number) => buf.readUInt16LE(tiffTagAt(buf, tag));

test('16-bit RGBA TIFF with premultiplied (associated) alpha, as Blender writes it, keeps its stored values', async (t) => {
  const dir = workDir(t);
  const pixels = sourcePixels(4, 16, 99);
  const tiles = await cutRaster(dir, pixels, 4, 16, 'tif', grids[0]!);
  for (const tile of tiles) {
    const buf = readFileSync(tile.file);
    buf.writeUInt16LE(1, tiffTagAt(buf, 338)); // ExtraSamples: associated alpha
    writeFileSync(tile.file, buf);
  }
  const req = request(dir, tiles, 'tif');
  await stitchTiles(req);

  const out = readFileSync(req.output);
  assert.equal(tiffTag(out, 338), 1, 'alpha still marked associated');
  // Declared straight, every decoder returns the stored samples; they must be the source's.
  out.writeUInt16LE(2, tiffTagAt(out, 338));
  const straight = path.join(dir, 'straight.tif');
  writeFileSync(straight, out);
  const [decoded] = await ffmpegDecode(dir, [{ file: straight, pixelFormat: 'rgba64le' }]);
  assert.ok(decoded!.equals(bytesOf(pixels)));
});

test('a frame of one tile is copied as is', async (t) => {
  const dir = workDir(t);
  const [tile] = await cutRaster(dir, sourcePixels(3, 8), 3, 8, 'png', { cols: 1, rows: 1 });
  const req = request(dir, [tile!], 'png');
  await stitchTiles(req);
  assert.ok(readFileSync(req.output).equals(readFileSync(tile!.file)));
});

// ---- OpenEXR -------------------------------------------------------------------------

type ExrType = 'half' | 'float';
const gridKey = (g: TileGrid) => `${g.cols}x${g.rows}`;

/** Cuts `source` into the tiles of each grid with ffmpeg's crop filter, in one ffmpeg run. */
async function cutExr(dir: string, source: string, width: number, height: number, type: ExrType, pixelFormat: string, gridList: TileGrid[]): Promise<Map<string, TileFile[]>> {
  const tiles = new Map<string, TileFile[]>();
  const crops: string[] = [];
  const outputs: string[] = [];
  for (const grid of gridList) {
    const list = tileRects(width, height, grid).map((rect, i) => {
      const file = path.join(dir, `tile_${gridKey(grid)}_${i}.exr`);
      const n = crops.length;
      crops.push(`[c${n}]crop=${rect.width}:${rect.height}:${rect.x}:${rect.y}[t${n}]`);
      outputs.push('-map', `[t${n}]`, '-frames:v', '1', '-pix_fmt', pixelFormat, '-c:v', 'exr', '-format', type, '-compression', 'zip16', file);
      return { file, rect };
    });
    tiles.set(gridKey(grid), list);
  }
  const split = `[0:v]split=${crops.length}${crops.map((_, i) => `[c${i}]`).join('')}`;
  await ffmpeg('-i', source, '-filter_complex', [split, ...crops].join(';'), ...outputs);
  return tiles;
}

interface ExrFixture {
  source: string;
  tiles: Map<string, TileFile[]>;
}

/**
 * EXR sources made by ffmpeg from a generated 16-bit PNG, cut into the tiles of both
 * grids; made once per kind and shared (read-only) by the tests.
 */
const fixtureRoot = mkdtempSync(path.join(tmpdir(), 'archenland-stitch-exr-'));
after(() => rmSync(fixtureRoot, { recursive: true, force: true }));
const fixtures = new Map<string, Promise<ExrFixture>>();

function exrFixture(type: ExrType, pixelFormat: string): Promise<ExrFixture> {
  const key = `${type}-${pixelFormat}`;
  let fixture = fixtures.get(key);
  if (!fixture) {
    fixture = (async () => {
      const dir = path.join(fixtureRoot, key);
      mkdirSync(dir);
      const png = path.join(dir, 'source.png');
      await sharp(sourcePixels(4, 16, 7), { raw: { width: W, height: H, channels: 4 } }).toColourspace('rgb16').png().toFile(png);
      const source = path.join(dir, 'source.exr');
      await ffmpeg('-i', png, '-pix_fmt', pixelFormat, '-c:v', 'exr', '-format', type, '-compression', 'zip16', source);
      return { source, tiles: await cutExr(dir, source, W, H, type, pixelFormat, grids) };
    })();
    fixtures.set(key, fixture);
  }
  return fixture;
}

/** A 2x2 set of half RGBA tiles copied into `dir`, free to be damaged. */
async function exrTilesCopy(dir: string, type: ExrType = 'half'): Promise<TileFile[]> {
  const { tiles } = await exrFixture(type, 'gbrapf32le');
  return tiles.get(gridKey(grids[0]!))!.map((tile, i) => {
    const file = path.join(dir, `${type}_${i}.exr`);
    copyFileSync(tile.file, file);
    return { file, rect: tile.rect };
  });
}

async function assertExr(file: string, type: ExrType, channels: string, width = W, height = H): Promise<void> {
  const header = await readExrFile(file);
  assert.equal(header.channels.map((c) => c.name).join(','), channels);
  assert.deepEqual([...new Set(header.channels.map((c) => c.pixelType))], [type]);
  assert.deepEqual(header.dataWindow, { xMin: 0, yMin: 0, xMax: width - 1, yMax: height - 1 });
  assert.equal(header.compression, 'zip');
}

for (const [type, pixelFormat, channels] of [
  ['half', 'gbrapf32le', 'A,B,G,R'],
  ['float', 'gbrapf32le', 'A,B,G,R'],
  ['float', 'gbrpf32le', 'B,G,R'],
] as const) {
  test(`EXR ${type} ${channels.length > 5 ? 'RGBA' : 'RGB'} tiles stitch back to the exact source`, async (t) => {
    const dir = workDir(t);
    const { source, tiles } = await exrFixture(type, pixelFormat);
    const requests = grids.map((grid) => request(path.join(dir, gridKey(grid)), [...tiles.get(gridKey(grid))!].reverse(), 'exr'));
    for (const req of requests) {
      await stitchTiles(req);
      await assertExr(req.output, type, channels);
      assert.deepEqual(leftovers(req), []);
    }
    const [expected, ...actual] = await ffmpegDecode(dir, [source, ...requests.map((r) => r.output)].map((file) => ({ file, pixelFormat })));
    assert.equal(expected!.length, W * H * 4 * (pixelFormat === 'gbrapf32le' ? 4 : 3));
    actual.forEach((floats, i) => assert.ok(floats.equals(expected!), `${gridKey(grids[i]!)}: stitched floats differ from the source`));
  });
}

/**
 * A minimal uncompressed scanline EXR, written here so the test controls every bit:
 * `values[c]` holds channel c's samples (half bit patterns, or floats), names sorted.
 */
function writeExr(file: string, width: number, height: number, channels: { name: string; type: 1 | 2 }[], values: number[][]): void {
  const z = (s: string) => Buffer.from(`${s}\0`, 'latin1');
  const i32 = (...v: number[]) => Buffer.concat(v.map((n) => { const b = Buffer.alloc(4); b.writeInt32LE(n); return b; }));
  const attr = (name: string, type: string, value: Buffer) => Buffer.concat([z(name), z(type), i32(value.length), value]);
  const one = Buffer.alloc(4);
  one.writeFloatLE(1);
  const header = Buffer.concat([
    Buffer.from([0x76, 0x2f, 0x31, 0x01, 2, 0, 0, 0]),
    attr('channels', 'chlist', Buffer.concat([...channels.map((c) => Buffer.concat([z(c.name), i32(c.type, 0, 1, 1)])), Buffer.from([0])])),
    attr('compression', 'compression', Buffer.from([0])),
    attr('dataWindow', 'box2i', i32(0, 0, width - 1, height - 1)),
    attr('displayWindow', 'box2i', i32(0, 0, width - 1, height - 1)),
    attr('lineOrder', 'lineOrder', Buffer.from([0])),
    attr('pixelAspectRatio', 'float', one),
    attr('screenWindowCenter', 'v2f', Buffer.alloc(8)),
    attr('screenWindowWidth', 'float', one),
    Buffer.from([0]),
  ]);
  const lineData = channels.reduce((n, c) => n + width * (c.type === 1 ? 2 : 4), 0);
  const table = Buffer.alloc(8 * height);
  const lines: Buffer[] = [];
  for (let y = 0; y < height; y++) {
    table.writeBigUInt64LE(BigInt(header.length + table.length + y * (8 + lineData)), 8 * y);
    const line = Buffer.alloc(8 + lineData);
    line.writeInt32LE(y, 0);
    line.writeInt32LE(lineData, 4);
    let at = 8;
    channels.forEach((c, ci) => {
      for (let x = 0; x < width; x++, at += c.type === 1 ? 2 : 4) {
        if (c.type === 1) line.writeUInt16LE(values[ci]![y * width + x]!, at);
        else line.writeFloatLE(values[ci]![y * width + x]!, at);
      }
    });
    lines.push(line);
  }
  writeFileSync(file, Buffer.concat([header, table, ...lines]));
}

test('EXR half keeps every half value: negatives, above 1, denormals, infinities, NaN', async (t) => {
  const dir = workDir(t);
  const source = path.join(dir, 'every-half.exr');
  // 256x256 luminance samples holding each of the 65536 half bit patterns once.
  writeExr(source, 256, 256, [{ name: 'Y', type: 1 }], [Array.from({ length: 65536 }, (_, i) => i)]);
  const tiles = (await cutExr(dir, source, 256, 256, 'half', 'grayf32le', [grids[1]!])).get(gridKey(grids[1]!))!;
  const req = { ...request(dir, tiles, 'exr'), frameWidth: 256, frameHeight: 256 };
  await stitchTiles(req);
  await assertExr(req.output, 'half', 'Y', 256, 256);
  const [expected, actual] = await ffmpegDecode(dir, [source, req.output].map((file) => ({ file, pixelFormat: 'grayf32le' })));
  assert.ok(actual!.equals(expected!));
  // And ffmpeg decodes the half patterns as themselves: spot-check a few.
  const at = (bits: number) => actual!.readFloatLE(4 * bits);
  assert.equal(at(0x3c00), 1);
  assert.equal(at(0xc000), -2);
  assert.equal(at(0x0001), 2 ** -24);
  assert.equal(at(0x7c00), Infinity);
  assert.ok(Number.isNaN(at(0x7e00)));
});

// ---- Failures ------------------------------------------------------------------------

async function rejects(req: StitchRequest, pattern: RegExp, tile?: number): Promise<void> {
  await assert.rejects(stitchTiles(req), (error: unknown) => {
    assert.ok(error instanceof StitchError, `expected a StitchError, got ${String(error)}`);
    assert.match(error.message, pattern);
    if (tile !== undefined) assert.equal(error.tile, tile);
    return true;
  });
  assert.equal(existsSync(req.output), false, 'no output after a failed stitch');
  assert.deepEqual(leftovers(req), [], 'no temp file left behind');
}

async function pngTiles(dir: string, grid: TileGrid = grids[0]!, depth: Depth = 8): Promise<TileFile[]> {
  return (await cutRaster(dir, sourcePixels(4, depth), 4, depth, 'png', grid)).reverse();
}

test('a tile of the wrong size is refused, naming it and both sizes', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  const rect = tiles[1]!.rect;
  await writeTile(sourcePixels(4, 8), 4, 8, 'png', { ...rect, width: rect.width - 1 }, tiles[1]!.file);
  await rejects(request(dir, tiles, 'png'), new RegExp(`tile 1 .*is ${rect.width - 1}x${rect.height}, expected ${rect.width}x${rect.height}`), 1);
});

test('an EXR tile of the wrong size is refused', async (t) => {
  const dir = workDir(t);
  const tiles = await exrTilesCopy(dir);
  const swapped = [tiles[0]!, { ...tiles[1]!, file: tiles[2]!.file }, tiles[2]!, tiles[3]!];
  await rejects(request(dir, swapped, 'exr'), /tile 1 .*is 49x30, expected 48x31/, 1);
});

test('a missing tile file is refused, naming it', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  rmSync(tiles[2]!.file);
  await rejects(request(dir, tiles, 'png'), /tile 2 .*tile_2\.png\) does not exist/, 2);
});

test('overlapping rects are refused', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  tiles[1] = { ...tiles[1]!, rect: { ...tiles[1]!.rect, x: tiles[1]!.rect.x - 1 } };
  await rejects(request(dir, tiles, 'png'), /tile 0 .* and tile 1 .* overlap in 1x31 pixels at 48,0/);
});

test('rects that leave a gap are refused, saying where', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  await rejects(request(dir, tiles.slice(0, 3), 'png'), /cover 4477 of the frame's 5917 pixels; pixel 49,31 is in no tile/);
});

test('a mistaken grid is caught before any tile is read', async (t) => {
  const dir = workDir(t);
  // Rects cut for a wider frame than the request's: the last column falls outside.
  const tiles = tileRects(W + 10, H, grids[1]!).map((rect, i) => ({ file: path.join(dir, `never_${i}.png`), rect }));
  await rejects(request(dir, tiles, 'png'), /reaches outside the 97x61 frame/);
  // Rects for a narrower frame: a strip on the right is covered by nothing.
  const narrow = tileRects(W - 10, H, grids[1]!).map((rect, i) => ({ file: path.join(dir, `never_${i}.png`), rect }));
  await rejects(request(dir, narrow, 'png'), /pixel 87,0 is in no tile/);
});

test('tiles of mixed bit depth are refused', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  await writeTile(sourcePixels(4, 16), 4, 16, 'png', tiles[3]!.rect, tiles[3]!.file);
  await rejects(request(dir, tiles, 'png'), /tile 3 .* is 16-bit RGBA but tile 0 .* is 8-bit RGBA/, 3);
});

test('tiles of mixed channel count are refused', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  await writeTile(sourcePixels(3, 8), 3, 8, 'png', tiles[2]!.rect, tiles[2]!.file);
  await rejects(request(dir, tiles, 'png'), /tile 2 .* is 8-bit RGB but tile 0 .* is 8-bit RGBA/, 2);
});

test('EXR tiles mixing half and float are refused', async (t) => {
  const dir = workDir(t);
  const tiles = await exrTilesCopy(dir);
  tiles[1] = (await exrTilesCopy(dir, 'float'))[1]!;
  await rejects(request(dir, tiles, 'exr'), /tile 1 .* has float channels A,B,G,R but tile 0 .* has half channels A,B,G,R/, 1);
});

test('an unsupported extension is refused', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  await rejects({ ...request(dir, tiles, 'png'), extension: 'jpg' as StitchRequest['extension'] }, /cannot stitch \.jpg frames/);
});

test('a tile in another format than the job’s is refused', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  await writeTile(sourcePixels(4, 8), 4, 8, 'tif', tiles[0]!.rect, tiles[0]!.file);
  await rejects(request(dir, tiles, 'png'), /tile 0 .* is tiff, expected png/, 0);
});

test('truncated tiles are refused, PNG and EXR', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  const png = readFileSync(tiles[1]!.file);
  writeFileSync(tiles[1]!.file, png.subarray(0, png.length >> 1));
  await rejects(request(dir, tiles, 'png'), /tile 1 .* cannot be (read|decoded)/, 1);

  const exrDir = workDir(t);
  const exrTiles = await exrTilesCopy(exrDir);
  const exr = readFileSync(exrTiles[2]!.file);
  writeFileSync(exrTiles[2]!.file, exr.subarray(0, exr.length - 100));
  await rejects(request(exrDir, exrTiles, 'exr'), /tile 2 .* incomplete/, 2);
});

test('a multilayer EXR tile is refused rather than losing its layers', async (t) => {
  const dir = workDir(t);
  const rects = tileRects(W, H, grids[0]!);
  const names = ['ViewLayer.Combined.A', 'ViewLayer.Combined.B', 'ViewLayer.Combined.G', 'ViewLayer.Combined.R'];
  const tiles = rects.map((rect, i) => {
    const file = path.join(dir, `layer_${i}.exr`);
    const values = names.map(() => new Array<number>(rect.width * rect.height).fill(0.5));
    writeExr(file, rect.width, rect.height, names.map((name) => ({ name, type: 2 })), values);
    return { file, rect };
  });
  await rejects(request(dir, tiles, 'exr'), /tile 0 .* multilayer EXR cannot be stitched/, 0);
});

test('a tile with an embedded ICC profile is refused rather than changing colours', async (t) => {
  const dir = workDir(t);
  const tiles = await pngTiles(dir);
  const rect = tiles[0]!.rect;
  await sharp(sourcePixels(4, 8), { raw: { width: W, height: H, channels: 4 } })
    .extract({ left: rect.x, top: rect.y, width: rect.width, height: rect.height })
    .withIccProfile('p3')
    .png()
    .toFile(tiles[0]!.file);
  await rejects(request(dir, tiles, 'png'), /tile 0 .* embedded ICC profile/, 0);
});
