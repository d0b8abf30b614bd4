import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { parseExrHeader, readExrFile } from '../src/stitch/exr-header.ts';
import { StitchError, stitchTiles } from '../src/stitch/index.ts';
import { readTiffTags, setExtraSample } from '../src/stitch/tiff-header.ts';

/**
 * Tiles are uploaded by workers, so a worker (or a hostile .blend) controls every count,
 * offset and size in their headers. Each file below lies about one of them; the header
 * parsers the stitcher uses must refuse it with an error saying what is wrong, quickly,
 * and without allocating what the lie asks for.
 */

const root = mkdtempSync(path.join(tmpdir(), 'archenland-hostile-headers-'));
after(() => rmSync(root, { recursive: true, force: true }));
let fileNumber = 0;

function fixture(bytes: Buffer, extension: string): string {
  const file = path.join(root, `hostile_${fileNumber++}.${extension}`);
  writeFileSync(file, bytes);
  return file;
}

/** No single buffer the parsers allocate may exceed this, nor live ArrayBuffer memory grow by more. */
const SMALL = 4 * 1024 * 1024;
/** Generous for a shared machine; an attempt to fill gigabytes would take far longer. */
const QUICK_MS = 2000;

type AllocName = 'alloc' | 'allocUnsafe' | 'allocUnsafeSlow';

/**
 * Runs `fn` with Buffer's allocators wrapped to record the largest size asked for, so a
 * parser that merely tries a huge allocation (which may fail, or succeed lazily) is caught.
 */
async function largestAllocation(fn: () => Promise<unknown>): Promise<{ largest: number; error: unknown }> {
  const names: AllocName[] = ['alloc', 'allocUnsafe', 'allocUnsafeSlow'];
  const originals = names.map((name) => Buffer[name]);
  let largest = 0;
  names.forEach((name, i) => {
    const original = originals[i]! as (size: number, ...rest: unknown[]) => Buffer;
    (Buffer as unknown as Record<AllocName, unknown>)[name] = (size: number, ...rest: unknown[]) => {
      largest = Math.max(largest, size);
      return original.call(Buffer, size, ...rest);
    };
  });
  try {
    await fn();
    return { largest, error: undefined };
  } catch (error) {
    return { largest, error };
  } finally {
    names.forEach((name, i) => ((Buffer as unknown as Record<AllocName, unknown>)[name] = originals[i]));
  }
}

async function refused(fn: () => Promise<unknown>, pattern: RegExp): Promise<Error> {
  const before = process.memoryUsage().arrayBuffers;
  const started = performance.now();
  const { largest, error } = await largestAllocation(fn);
  const elapsed = performance.now() - started;
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(error instanceof Error, `expected the file to be refused, got ${String(error)}`);
  assert.match(error.message, pattern);
  assert.ok(largest < SMALL, `allocated a ${largest}-byte buffer before refusing`);
  assert.ok(grown < SMALL, `ArrayBuffer memory grew by ${grown} bytes`);
  assert.ok(elapsed < QUICK_MS, `took ${Math.round(elapsed)} ms to refuse`);
  return error;
}

// ---- TIFF ----------------------------------------------------------------------------

const TYPE_SHORT = 3;
const TAG_EXTRA_SAMPLES = 338;

interface Entry {
  tag: number;
  type: number;
  count: number | bigint;
  /** The value field: inline values, or an offset. */
  value: number | bigint;
}

/** A little-endian classic TIFF holding only IFD0, at offset 8, with `entries` and nothing else. */
function classicTiff(entries: Entry[], { ifd = 8, count = entries.length } = {}): Buffer {
  const out = Buffer.alloc(8 + 2 + entries.length * 12 + 4);
  out.write('II', 0, 'latin1');
  out.writeUInt16LE(42, 2);
  out.writeUInt32LE(ifd, 4);
  out.writeUInt16LE(count, 8);
  entries.forEach((e, i) => {
    const at = 10 + i * 12;
    out.writeUInt16LE(e.tag, at);
    out.writeUInt16LE(e.type, at + 2);
    out.writeUInt32LE(Number(e.count), at + 4);
    out.writeUInt32LE(Number(e.value), at + 8);
  });
  return out;
}

/** The same as a BigTIFF: 64-bit IFD offset, entry count, value counts and offsets. */
function bigTiff(entries: Entry[], { ifd = 16n, count = BigInt(entries.length) } = {}): Buffer {
  const out = Buffer.alloc(16 + 8 + entries.length * 20 + 8);
  out.write('II', 0, 'latin1');
  out.writeUInt16LE(43, 2);
  out.writeUInt16LE(8, 4);
  out.writeBigUInt64LE(ifd, 8);
  out.writeBigUInt64LE(count, 16);
  entries.forEach((e, i) => {
    const at = 24 + i * 20;
    out.writeUInt16LE(e.tag, at);
    out.writeUInt16LE(e.type, at + 2);
    out.writeBigUInt64LE(BigInt(e.count), at + 4);
    out.writeBigUInt64LE(BigInt(e.value), at + 12);
  });
  return out;
}

const compression = (code: number): Entry => ({ tag: 259, type: TYPE_SHORT, count: 1, value: code });
const tif = (bytes: Buffer) => fixture(bytes, 'tif');

/** A real tile as the stitch tests make them: sharp, 16-bit RGBA, LZW. */
async function sharpTiff(): Promise<Buffer> {
  const pixels = new Uint16Array(13 * 7 * 4).map((_, i) => i * 97);
  return sharp(pixels, { raw: { width: 13, height: 7, channels: 4 } }).toColourspace('rgb16').tiff({ compression: 'lzw' }).toBuffer();
}

test('valid TIFFs still read as before', async () => {
  const real = await readTiffTags(tif(await sharpTiff()));
  assert.equal(real.compression, 5);
  assert.equal(real.extraSamples.length, 1);
  assert.notEqual(real.extraSamplesAt, null);

  const extra: Entry = { tag: TAG_EXTRA_SAMPLES, type: TYPE_SHORT, count: 1, value: 1 };
  assert.deepEqual(await readTiffTags(tif(classicTiff([compression(8), extra]))), {
    compression: 8,
    extraSamples: [1],
    extraSamplesAt: 10 + 12 + 8,
    littleEndian: true,
  });
  const big = await readTiffTags(tif(bigTiff([compression(1), extra])));
  assert.deepEqual(big.extraSamples, [1]);
  assert.equal(big.extraSamplesAt, 24 + 20 + 12);
});

test('a TIFF IFD claiming more entries than the file holds is refused before they are read', async () => {
  await refused(
    async () => readTiffTags(tif(classicTiff([compression(1)], { count: 65535 }))),
    /^TIFF IFD at offset 8 claims 65535 entries, more than the 26-byte file holds$/,
  );
  // The same lie in a real tile.
  const real = await sharpTiff();
  real.writeUInt16LE(65535, real.readUInt32LE(4));
  await refused(async () => readTiffTags(tif(real)), /TIFF IFD at offset \d+ claims 65535 entries, more than the \d+-byte file holds/);
});

test('a BigTIFF IFD claiming 2^40 or 2^27 entries is refused without allocating for them', async () => {
  await refused(
    async () => readTiffTags(tif(bigTiff([compression(1)], { count: 2n ** 40n }))),
    /^TIFF IFD at offset 16 claims 1099511627776 entries, more than the 65535 a directory may have$/,
  );
  // 2^27 entries of 20 bytes would be a 2.5 GB buffer.
  await refused(async () => readTiffTags(tif(bigTiff([], { count: 2n ** 27n }))), /claims 134217728 entries, more than the 65535/);
});

test('a TIFF IFD offset past the end of the file is refused', async () => {
  await refused(
    async () => readTiffTags(tif(classicTiff([compression(1)], { ifd: 0xfffffff0 }))),
    /^TIFF IFD offset 4294967280 lies past the end of the 26-byte file$/,
  );
  // Just past the end: the two-byte entry count would straddle it.
  await refused(async () => readTiffTags(tif(classicTiff([], { ifd: 13 }))), /^TIFF IFD offset 13 lies past the end of the 14-byte file$/);
  await refused(async () => readTiffTags(tif(bigTiff([compression(1)], { ifd: 2n ** 63n }))), /^TIFF IFD offset \d+ lies past the end of the 52-byte file$/);
});

test('a TIFF ExtraSamples tag claiming 4 billion values, or values past the end, is refused', async () => {
  await refused(
    async () => readTiffTags(tif(classicTiff([{ tag: TAG_EXTRA_SAMPLES, type: TYPE_SHORT, count: 0xffffffff, value: 8 }]))),
    /^TIFF ExtraSamples tag claims 4294967295 values, more than the 65535 samples a pixel may have$/,
  );
  await refused(
    async () => readTiffTags(tif(bigTiff([{ tag: TAG_EXTRA_SAMPLES, type: TYPE_SHORT, count: 2n ** 62n, value: 24 }]))),
    /^TIFF ExtraSamples tag claims \d+ values, more than the 65535/,
  );
  await refused(
    async () => readTiffTags(tif(classicTiff([{ tag: TAG_EXTRA_SAMPLES, type: TYPE_SHORT, count: 1000, value: 0x7ffffff0 }]))),
    /^TIFF ExtraSamples tag claims 1000 values at offset 2147483632, past the end of the 26-byte file$/,
  );
  // Within the count limit but not the file: 2000 bytes from offset 8 of a 26-byte file.
  await refused(
    async () => readTiffTags(tif(classicTiff([{ tag: TAG_EXTRA_SAMPLES, type: TYPE_SHORT, count: 1000, value: 8 }]))),
    /^TIFF ExtraSamples tag claims 1000 values at offset 8, past the end of the 26-byte file$/,
  );
});

test('TIFF files too short for their header are refused', async () => {
  await refused(async () => readTiffTags(tif(Buffer.from('II*\0\x08'))), /^not a TIFF file \(5 bytes\)$/);
  await refused(async () => readTiffTags(tif(bigTiff([]).subarray(0, 12))), /^the 12-byte file ends inside its BigTIFF header$/);
});

test('the ExtraSamples offset is checked against the buffer it is written into', async () => {
  const bytes = classicTiff([{ tag: TAG_EXTRA_SAMPLES, type: TYPE_SHORT, count: 1, value: 1 }]);
  const tags = await readTiffTags(tif(bytes));
  // The tile replaced by a shorter one between reading its tags and decoding it.
  assert.throws(() => setExtraSample(bytes.subarray(0, 19), tags, 2), { message: 'TIFF ExtraSamples value at offset 18 lies past the end of the 19-byte file' });
});

// ---- OpenEXR -------------------------------------------------------------------------

const z = (s: string) => Buffer.from(`${s}\0`, 'latin1');
const i32 = (...v: number[]) => Buffer.concat(v.map((n) => { const b = Buffer.alloc(4); b.writeInt32LE(n); return b; }));
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
const attr = (name: string, type: string, value: Buffer, size = value.length) => Buffer.concat([z(name), z(type), u32(size), value]);
const MAGIC_AND_VERSION = (flags = 0) => Buffer.concat([Buffer.from([0x76, 0x2f, 0x31, 0x01]), u32(2 | flags)]);
const TILED = 0x200;

/** The attributes of a `width` x `height` half luminance image, compression `none` unless told. */
function attributes(width: number, height: number, box = i32(0, 0, width - 1, height - 1), code = 0): Buffer[] {
  return [
    attr('channels', 'chlist', Buffer.concat([z('Y'), i32(1, 0, 1, 1), Buffer.from([0])])),
    attr('compression', 'compression', Buffer.from([code])),
    attr('dataWindow', 'box2i', box),
    attr('displayWindow', 'box2i', box),
    attr('lineOrder', 'lineOrder', Buffer.from([0])),
  ];
}

/** A complete uncompressed scanline EXR: header, offset table, one chunk per line. */
function validExr(width: number, height: number): { bytes: Buffer; headerLength: number } {
  const header = Buffer.concat([MAGIC_AND_VERSION(), ...attributes(width, height), Buffer.from([0])]);
  const table = Buffer.alloc(8 * height);
  const line = 8 + 2 * width;
  const lines = Buffer.alloc(line * height);
  for (let y = 0; y < height; y++) {
    table.writeBigUInt64LE(BigInt(header.length + table.length + y * line), 8 * y);
    lines.writeInt32LE(y, y * line);
    lines.writeInt32LE(2 * width, y * line + 4);
  }
  return { bytes: Buffer.concat([header, table, lines]), headerLength: header.length };
}

const exr = (bytes: Buffer) => fixture(bytes, 'exr');

test('valid EXR files still read as before, long offset tables included', async () => {
  const small = await readExrFile(exr(validExr(5, 3).bytes));
  assert.deepEqual(small.channels, [{ name: 'Y', pixelType: 'half', xSampling: 1, ySampling: 1 }]);
  assert.deepEqual(small.dataWindow, { xMin: 0, yMin: 0, xMax: 4, yMax: 2 });
  assert.equal(small.compression, 'none');
  // More table entries than one read of the table takes.
  const tall = await readExrFile(exr(validExr(1, 20000).bytes));
  assert.equal(tall.dataWindow.yMax, 19999);
  // A name of the longest length allowed.
  const long = Buffer.concat([MAGIC_AND_VERSION(), attr('n'.repeat(255), 't'.repeat(255), Buffer.alloc(3)), ...attributes(1, 1), Buffer.from([0])]);
  assert.equal(parseExrHeader(long).channels.length, 1);
});

test('an EXR attribute claiming 4 GB (or 2 GB) is refused, from a file and from a buffer', async () => {
  for (const size of [0xffffffff, 0x7fffffff]) {
    const bytes = Buffer.concat([MAGIC_AND_VERSION(), attr('channels', 'chlist', Buffer.alloc(20), size), Buffer.from([0])]);
    const message = new RegExp(`^EXR attribute channels at byte 28 claims ${size} bytes, more than the ${bytes.length}-byte file holds$`);
    await refused(async () => readExrFile(exr(bytes)), message);
    await refused(async () => parseExrHeader(bytes), message);
  }
  // Larger than what remains of the file by one byte.
  const bytes = Buffer.concat([MAGIC_AND_VERSION(), attr('x', 'y', Buffer.alloc(10), 11)]);
  await refused(async () => readExrFile(exr(bytes)), /^EXR attribute x at byte 16 claims 11 bytes, more than the 26-byte file holds$/);
});

test('an EXR attribute list with no terminator is refused, however many attributes it has', async () => {
  const unterminated = Buffer.concat([MAGIC_AND_VERSION(), ...attributes(4, 4)]);
  await refused(
    async () => readExrFile(exr(unterminated)),
    new RegExp(`^EXR attribute list has no terminator: the ${unterminated.length}-byte file ends after attribute lineOrder$`),
  );
  await refused(async () => readExrFile(exr(MAGIC_AND_VERSION())), /^EXR attribute list has no terminator: the 8-byte file ends after its version field$/);
  // 100,000 empty attributes (800 kB) and still no end, across several reads of the header.
  const many = Buffer.concat([MAGIC_AND_VERSION(), Buffer.concat(Array.from({ length: 100_000 }, () => attr('a', 'b', Buffer.alloc(0))))]);
  await refused(async () => readExrFile(exr(many)), /^EXR attribute list has no terminator: the \d+-byte file ends after attribute a$/);
});

test('an EXR name that runs past the end of the file, or past 255 bytes, is refused', async () => {
  await refused(async () => readExrFile(exr(Buffer.concat([MAGIC_AND_VERSION(), Buffer.from('channe')]))), /^EXR attribute name at byte 8 runs past the end of the 14-byte file$/);
  await refused(
    async () => readExrFile(exr(Buffer.concat([MAGIC_AND_VERSION(), z('channels'), Buffer.from('chl')]))),
    /^EXR type name of attribute channels at byte 17 runs past the end of the 20-byte file$/,
  );
  const long = Buffer.concat([MAGIC_AND_VERSION(), attr('n'.repeat(256), 'box2i', Buffer.alloc(16)), Buffer.from([0])]);
  await refused(async () => readExrFile(exr(long)), /^EXR attribute name at byte 8 is longer than 255 bytes$/);
});

test('an EXR data window of 2^31 pixels is refused before its offset table is read', async () => {
  // 65536 x 32768 uncompressed: 32768 chunks, in a file of a few hundred bytes.
  const huge = Buffer.concat([MAGIC_AND_VERSION(), ...attributes(1, 1, i32(0, 0, 65535, 32767)), Buffer.from([0]), Buffer.alloc(64)]);
  await refused(
    async () => readExrFile(exr(huge)),
    /^EXR data window 65536x32768 needs 32768 chunks, more than the \d+-byte file holds; the file is incomplete or its header is wrong$/,
  );
  // The widest window int32 allows, tiled 1x1: 2^64 chunks.
  const tiles = attr('tiles', 'tiledesc', Buffer.concat([u32(1), u32(1), Buffer.from([0])]));
  const widest = Buffer.concat([MAGIC_AND_VERSION(TILED), ...attributes(1, 1, i32(-(2 ** 31), -(2 ** 31), 2 ** 31 - 1, 2 ** 31 - 1)), tiles, Buffer.from([0])]);
  await refused(async () => readExrFile(exr(widest)), /^EXR data window 4294967296x4294967296 needs \d+ chunks, more than the \d+-byte file holds/);
});

test('a truncated EXR offset table is refused', async () => {
  const { bytes, headerLength } = validExr(7, 61);
  await refused(async () => readExrFile(exr(bytes.subarray(0, headerLength + 10 * 8))), /^EXR data window 7x61 needs 61 chunks, more than the \d+-byte file holds; the file is incomplete/);
});

test('EXR chunk offsets past the end of the file, and a negative chunk size, are refused', async () => {
  const { bytes, headerLength } = validExr(7, 61);
  const far = Buffer.from(bytes);
  far.writeBigUInt64LE(2n ** 62n, headerLength + 3 * 8);
  await refused(async () => readExrFile(exr(far)), new RegExp(`^chunk 3 of 61 lies outside the ${bytes.length}-byte file; the file is incomplete$`));
  const inside = Buffer.from(bytes);
  inside.writeBigUInt64LE(5n, headerLength); // inside the header, not a chunk
  await refused(async () => readExrFile(exr(inside)), /^chunk 0 of 61 lies outside/);

  const negative = Buffer.from(bytes);
  const lastChunk = Number(negative.readBigUInt64LE(headerLength + 60 * 8));
  negative.writeInt32LE(-1000, lastChunk + 4);
  await refused(async () => readExrFile(exr(negative)), new RegExp(`^the EXR chunk at byte ${lastChunk} claims a negative data size \\(-1000\\)$`));
});

test('the stitcher refuses a hostile EXR tile as that tile’s fault, before running ffmpeg', async () => {
  const dir = path.join(root, 'stitch');
  mkdirSync(dir);
  const rects = [
    { x: 0, y: 0, width: 4, height: 3 },
    { x: 4, y: 0, width: 4, height: 3 },
  ];
  const files = rects.map((_, i) => path.join(dir, `tile_${i}.exr`));
  writeFileSync(files[0]!, validExr(4, 3).bytes);
  writeFileSync(files[1]!, Buffer.concat([MAGIC_AND_VERSION(), attr('channels', 'chlist', Buffer.alloc(20), 0xffffffff), Buffer.from([0])]));
  const request = {
    tiles: rects.map((rect, i) => ({ file: files[i]!, rect })),
    frameWidth: 8,
    frameHeight: 3,
    extension: 'exr' as const,
    output: path.join(dir, 'out', 'frame.exr'),
    // Never run: the tiles are refused first.
    ffmpegPath: path.join(dir, 'no-ffmpeg-here'),
  };
  const error = await refused(() => stitchTiles(request), /^tile 1 \(4x3 at 4,0, .*tile_1\.exr\) is not a usable OpenEXR file: EXR attribute channels at byte 28 claims 4294967295 bytes/);
  assert.ok(error instanceof StitchError);
  assert.equal(error.tile, 1);
  assert.equal(readFileSync(files[0]!).length, validExr(4, 3).bytes.length, 'tiles left as they were');
});
