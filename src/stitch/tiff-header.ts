import { open } from 'node:fs/promises';

/**
 * The two TIFF tags of the first image (IFD0) that the stitcher needs and sharp does not
 * report: Compression, and ExtraSamples, which says whether the alpha channel is
 * associated (premultiplied) or not. Blender writes 16-bit RGBA TIFFs with associated
 * alpha, and libvips un-premultiplies those on load — rounding the colour values and
 * zeroing them where alpha is 0. So the stitcher flips the tag to "unassociated" in memory
 * before decoding (the stored numbers then come through untouched) and flips it back in
 * the stitched file.
 */

export const TIFF_COMPRESSION = { none: 1, lzw: 5, deflate: 8, adobeDeflate: 32946, packbits: 32773 } as const;
export const EXTRA_SAMPLE = { unspecified: 0, associatedAlpha: 1, unassociatedAlpha: 2 } as const;

export interface TiffTags {
  compression: number;
  /** ExtraSamples values; empty when the image has none. */
  extraSamples: number[];
  /** Byte offset of the first ExtraSamples value, when it is stored inline (one SHORT). */
  extraSamplesAt: number | null;
  littleEndian: boolean;
}

const TAG_COMPRESSION = 259;
const TAG_EXTRA_SAMPLES = 338;
const TYPE_SHORT = 3;

/**
 * libtiff refuses a directory of more entries than this, BigTIFF included (where the
 * count is 64 bits and could otherwise ask for petabytes).
 */
const MAX_IFD_ENTRIES = 0xffff;
/** One ExtraSamples value per extra sample, and SamplesPerPixel is itself a SHORT. */
const MAX_EXTRA_SAMPLES = 0xffff;

/** A TIFF whose header or first directory is malformed or claims more than the file holds. */
export class TiffFormatError extends Error {}

/**
 * Tiles come from workers, so every count and offset read below is only the file's word:
 * each is checked against the file's size (and the limits above) before a buffer is
 * allocated for it or a loop runs over it.
 */
export async function readTiffTags(file: string): Promise<TiffTags> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const fits = (position: number, length: number) => position + length <= size;
    const read = async (position: number, length: number) => {
      // Callers check first, with a message saying what is wrong; this is the backstop.
      if (!fits(position, length)) {
        throw new TiffFormatError(`TIFF read of ${length} bytes at offset ${position} runs past the end of the ${size}-byte file`);
      }
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      // Only when the file shrank after stat().
      if (bytesRead < length) throw new TiffFormatError('the file ends inside its TIFF directory');
      return buffer;
    };

    if (size < 8) throw new TiffFormatError(`not a TIFF file (${size} bytes)`);
    const head = await read(0, Math.min(16, size));
    const order = head.toString('latin1', 0, 2);
    if (order !== 'II' && order !== 'MM') throw new TiffFormatError('not a TIFF file');
    const le = order === 'II';
    const u16 = (b: Buffer, at: number) => (le ? b.readUInt16LE(at) : b.readUInt16BE(at));
    const u32 = (b: Buffer, at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
    // Above 2^53 the value is approximate, but then far beyond any file's size, which is all the checks need.
    const u64 = (b: Buffer, at: number) => Number(le ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at));

    const big = u16(head, 2) === 43;
    if (!big && u16(head, 2) !== 42) throw new TiffFormatError('not a TIFF file');
    if (big && head.length < 16) throw new TiffFormatError(`the ${size}-byte file ends inside its BigTIFF header`);
    const ifd = big ? u64(head, 8) : u32(head, 4);
    const countBytes = big ? 8 : 2;
    if (!fits(ifd, countBytes)) throw new TiffFormatError(`TIFF IFD offset ${ifd} lies past the end of the ${size}-byte file`);
    const count = big ? u64(await read(ifd, 8), 0) : u16(await read(ifd, 2), 0);
    const entrySize = big ? 20 : 12;
    const first = ifd + countBytes;
    if (count > MAX_IFD_ENTRIES) {
      throw new TiffFormatError(`TIFF IFD at offset ${ifd} claims ${count} entries, more than the ${MAX_IFD_ENTRIES} a directory may have`);
    }
    if (!fits(first, count * entrySize)) {
      throw new TiffFormatError(`TIFF IFD at offset ${ifd} claims ${count} entries, more than the ${size}-byte file holds`);
    }
    const entries = await read(first, count * entrySize);

    const tags: TiffTags = { compression: TIFF_COMPRESSION.none, extraSamples: [], extraSamplesAt: null, littleEndian: le };
    for (let i = 0; i < count; i++) {
      const at = i * entrySize;
      const tag = u16(entries, at);
      const type = u16(entries, at + 2);
      const n = big ? u64(entries, at + 4) : u32(entries, at + 4);
      const valueAt = at + (big ? 12 : 8);
      if (type !== TYPE_SHORT) continue;
      if (tag === TAG_COMPRESSION) tags.compression = u16(entries, valueAt);
      if (tag === TAG_EXTRA_SAMPLES) {
        if (n > MAX_EXTRA_SAMPLES) {
          throw new TiffFormatError(`TIFF ExtraSamples tag claims ${n} values, more than the ${MAX_EXTRA_SAMPLES} samples a pixel may have`);
        }
        const inline = n * 2 <= (big ? 8 : 4);
        const offset = inline ? 0 : big ? u64(entries, valueAt) : u32(entries, valueAt);
        if (!inline && !fits(offset, n * 2)) {
          throw new TiffFormatError(`TIFF ExtraSamples tag claims ${n} values at offset ${offset}, past the end of the ${size}-byte file`);
        }
        const values = inline ? entries : await read(offset, n * 2);
        const start = inline ? valueAt : 0;
        tags.extraSamples = Array.from({ length: n }, (_, k) => u16(values, start + 2 * k));
        if (inline) tags.extraSamplesAt = first + valueAt;
      }
    }
    return tags;
  } finally {
    await handle.close();
  }
}

/** Writes the first ExtraSamples value into a TIFF held in memory. */
export function setExtraSample(buffer: Buffer, tags: TiffTags, value: number): void {
  if (tags.extraSamplesAt === null) throw new Error('the TIFF has no inline ExtraSamples value');
  // The tags were read from the file earlier; a file replaced since could be shorter.
  if (tags.extraSamplesAt + 2 > buffer.length) {
    throw new TiffFormatError(`TIFF ExtraSamples value at offset ${tags.extraSamplesAt} lies past the end of the ${buffer.length}-byte file`);
  }
  if (tags.littleEndian) buffer.writeUInt16LE(value, tags.extraSamplesAt);
  else buffer.writeUInt16BE(value, tags.extraSamplesAt);
}

/** Writes the first ExtraSamples value into a TIFF file, in place. */
export async function setExtraSampleInFile(file: string, value: number): Promise<void> {
  const tags = await readTiffTags(file);
  if (tags.extraSamplesAt === null) throw new Error(`${file} has no inline ExtraSamples value`);
  const bytes = Buffer.alloc(2);
  if (tags.littleEndian) bytes.writeUInt16LE(value);
  else bytes.writeUInt16BE(value);
  const handle = await open(file, 'r+');
  try {
    await handle.write(bytes, 0, 2, tags.extraSamplesAt);
  } finally {
    await handle.close();
  }
}
