import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import sharp from 'sharp';
import { tileRegions, type PixelRect, type TileRegion } from '../src/protocol/tiles.ts';
import { BlenderRenderError, BlenderSession, probeScene } from '../src/worker/blender/index.ts';
import { BLENDER, makeTestScene } from '../testkit/scenes.ts';

// Tiles are border renders of one frame; stitched, they must look like the whole frame.
// 8-bit PNGs differ by up to 2/255: Blender dithers when it converts to 8 bits, and the
// dither noise follows the pixel's position in the saved image (tile or frame). 16-bit
// PNG and float EXR are not dithered.
const TOLERANCE = 2 / 255;

function startSession(blendFile: string) {
  return BlenderSession.start({ blenderPath: BLENDER, blendFile, threads: 0, allowScripts: false, overrides: {} });
}

type Comparison = { max: number; psnr: number };

/** Raw pixels of a PNG (or of one rectangle of it), 8 or 16 bits per channel. */
function decode(file: string, bits: 8 | 16, rect?: PixelRect): Promise<Buffer> {
  let image = sharp(file);
  if (rect) image = image.extract({ left: rect.x, top: rect.y, width: rect.width, height: rect.height });
  return bits === 16 ? image.toColourspace('rgb16').raw({ depth: 'ushort' }).toBuffer() : image.raw().toBuffer();
}

/** Compare a tile file with the same rectangle cut from the whole frame, channels scaled to 0..1. */
async function compareWithFrame(tileFile: string, frameFile: string, rect: TileRegion, bits: 8 | 16): Promise<Comparison> {
  const [tile, cut] = await Promise.all([decode(tileFile, bits), decode(frameFile, bits, rect)]);
  assert.equal(tile.length, cut.length, `tile ${rect.index}: decoded sizes differ`);
  const samples = (buffer: Buffer) =>
    bits === 16 ? new Uint16Array(buffer.buffer, buffer.byteOffset, buffer.length / 2) : buffer;
  const [a, b] = [samples(tile), samples(cut)];
  const scale = bits === 16 ? 65535 : 255;
  let max = 0;
  let squares = 0;
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i]! - b[i]!) / scale;
    if (diff > max) max = diff;
    squares += diff * diff;
  }
  return { max, psnr: squares === 0 ? Infinity : 10 * Math.log10(a.length / squares) };
}

/** Render each tile, then the whole frame, in one session; compare every tile with its region. */
async function renderAndCompare(
  t: TestContext,
  session: BlenderSession,
  dir: string,
  tiles: TileRegion[],
  bits: 8 | 16,
): Promise<void> {
  const tileFiles: string[] = [];
  const times: number[] = [];
  for (const tile of tiles) {
    const result = await session.render(1, join(dir, `tile${tile.index}_####`), undefined, tile);
    const { width, height } = await sharp(result.path).metadata();
    assert.deepEqual({ width, height }, { width: tile.width, height: tile.height }, `tile ${tile.index} size`);
    tileFiles.push(result.path);
    times.push(result.renderMs);
  }
  // After the tiles, so a border left behind would show as a cropped frame here.
  const whole = await session.render(1, join(dir, 'whole_####'));
  const { width, height } = await sharp(whole.path).metadata();
  assert.deepEqual({ width, height }, { width: tiles[0]!.frameWidth, height: tiles[0]!.frameHeight }, 'whole frame size');

  for (const [i, tile] of tiles.entries()) {
    const { max, psnr } = await compareWithFrame(tileFiles[i]!, whole.path, tile, bits);
    t.diagnostic(
      `${bits}-bit tile ${tile.index} (${tile.width}x${tile.height} at ${tile.x},${tile.y}): ` +
        `max difference ${(max * 255).toFixed(2)}/255, PSNR ${psnr.toFixed(1)} dB`,
    );
    assert.ok(max <= TOLERANCE + 1e-9, `tile ${tile.index}: max difference ${(max * 255).toFixed(2)}/255`);
  }
  t.diagnostic(`tile renders ${times.join('/')} ms, whole frame ${whole.renderMs} ms`);
}

/** The dataWindow and displayWindow of an OpenEXR file (sharp cannot read EXR). */
function exrWindows(path: string): Record<string, number[]> {
  const bytes = readFileSync(path);
  assert.equal(bytes.readUInt32LE(0), 20000630, `${path} is not an OpenEXR file`);
  const windows: Record<string, number[]> = {};
  let pos = 8; // magic and version
  const text = () => {
    const end = bytes.indexOf(0, pos);
    const value = bytes.toString('latin1', pos, end);
    pos = end + 1;
    return value;
  };
  // Header attributes: name\0 type\0 int32 size, value; an empty name ends the header.
  for (let name = text(); name !== ''; name = text()) {
    const type = text();
    const size = bytes.readInt32LE(pos);
    pos += 4;
    if (type === 'box2i') windows[name] = [0, 1, 2, 3].map((k) => bytes.readInt32LE(pos + 4 * k));
    pos += size;
  }
  return windows;
}

describe('Blender tile (border) renders (real Blender)', () => {
  let workDir: string;
  let detailScene: string;
  let deepScene: string;
  let exrScene: string;
  let denoiseScene: string;
  let glareScene: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'archenland-tiles-test-'));
    [detailScene, deepScene, exrScene, denoiseScene, glareScene] = await Promise.all([
      makeTestScene({ frames: '1', width: 192, height: 128, samples: 32, detail: true }),
      // Odd size and a 3x2 grid: tiles of unequal size, edges not on even pixels.
      makeTestScene({ frames: '1', width: 151, height: 101, samples: 8, detail: true, colorDepth: 16 }),
      makeTestScene({ frames: '1', width: 96, height: 64, samples: 4, detail: true, format: 'OPEN_EXR', colorDepth: 16 }),
      // The same options as blender-session.test.ts, so the cached file is shared.
      makeTestScene({ frames: '1-3', width: 64, height: 48, samples: 4, denoise: true }),
      makeTestScene({ frames: '1', width: 64, height: 48, samples: 4, glare: true }),
    ]);
  });

  after(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  describe('one session on a 192x128 Cycles scene (32 samples, no denoising)', () => {
    let session: BlenderSession;
    before(async () => {
      session = await startSession(detailScene);
    });
    after(async () => {
      await session?.close();
    });

    it('renders the 4 tiles of a 2x2 grid, each exactly its size and matching the whole frame', async (t) => {
      await renderAndCompare(t, session, join(workDir, 'png8'), tileRegions(192, 128, { cols: 2, rows: 2 }), 8);
    });

    it('rejects a tile cut for another frame size, or outside the frame, and keeps serving', async () => {
      const [first] = tileRegions(192, 128, { cols: 2, rows: 2 });
      await assert.rejects(
        session.render(1, join(workDir, 'wrong_####'), undefined, { ...first!, frameWidth: 200 }),
        (error: Error) => {
          assert.ok(error instanceof BlenderRenderError, String(error));
          assert.match(error.message, /tile is for a 200x128 frame but the scene renders 192x128/);
          assert.equal(error.frame, 1);
          return true;
        },
      );
      await assert.rejects(
        session.render(1, join(workDir, 'outside_####'), undefined, { ...first!, x: 150, width: 64 }),
        /invalid tile: tile 64x64 at \(150, 0\) does not fit in the 192x128 frame/,
      );
      assert.equal(session.alive, true);

      // A small tile from a 4x4 grid still renders at its exact size afterwards.
      const tile = tileRegions(192, 128, { cols: 4, rows: 4 })[5]!;
      const result = await session.render(1, join(workDir, 'after_####'), undefined, tile);
      const { width, height } = await sharp(result.path).metadata();
      assert.deepEqual({ width, height }, { width: tile.width, height: tile.height });
    });
  });

  it('renders 16-bit PNG tiles of an odd-sized frame (3x2 grid) matching the whole frame', async (t) => {
    const session = await startSession(deepScene);
    try {
      await renderAndCompare(t, session, join(workDir, 'png16'), tileRegions(151, 101, { cols: 3, rows: 2 }), 16);
    } finally {
      await session.close();
    }
  });

  it('renders an OpenEXR tile whose image is exactly the tile', async () => {
    const session = await startSession(exrScene);
    try {
      const tile = tileRegions(96, 64, { cols: 3, rows: 2 })[4]!; // bottom middle
      const result = await session.render(1, join(workDir, 'exr', 'tile_####'), undefined, tile);
      assert.match(result.path, /tile_0001\.exr$/);
      // No offset in the file: where the tile belongs comes from the TileRegion alone.
      const last = [tile.width - 1, tile.height - 1];
      assert.deepEqual(exrWindows(result.path), { dataWindow: [0, 0, ...last], displayWindow: [0, 0, ...last] });
    } finally {
      await session.close();
    }
  });

  it('probeScene reports why a scene must not be split into tiles', async () => {
    const probe = (blendFile: string) => probeScene({ blenderPath: BLENDER, blendFile, allowScripts: false });
    const [plain, denoise, glare] = await Promise.all([probe(detailScene), probe(denoiseScene), probe(glareScene)]);
    assert.deepEqual(plain.tileBlockers, []);
    assert.equal(denoise.tileBlockers.length, 1, JSON.stringify(denoise.tileBlockers));
    assert.match(denoise.tileBlockers[0]!, /denoising/);
    assert.deepEqual(glare.tileBlockers, ['the compositor uses Glare, which spreads across tile edges']);
  });
});
