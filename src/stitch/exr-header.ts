import { open } from 'node:fs/promises';

/**
 * Just enough of the OpenEXR file layout for the stitcher: the header attributes that say
 * what ffmpeg will decode (channels and their pixel type, windows, compression) and the
 * chunk offset table, to tell a complete file from a truncated one — ffmpeg's EXR decoder
 * quietly fills missing chunks with black instead of failing.
 * See https://openexr.com/en/latest/OpenEXRFileLayout.html.
 */

export type ExrPixelType = 'uint' | 'half' | 'float';

export interface ExrChannel {
  name: string;
  pixelType: ExrPixelType;
  xSampling: number;
  ySampling: number;
}

/** Inclusive pixel bounds, as the file stores them. */
export interface ExrBox {
  xMin: number;
  yMin: number;
  xMax: number;
  yMax: number;
}

export const exrCompressions = ['none', 'rle', 'zips', 'zip', 'piz', 'pxr24', 'b44', 'b44a', 'dwaa', 'dwab'] as const;
export type ExrCompression = (typeof exrCompressions)[number];

/** Scanlines per chunk, by compression. */
const linesPerChunk: Record<ExrCompression, number> = {
  none: 1, rle: 1, zips: 1, zip: 16, piz: 32, pxr24: 16, b44: 32, b44a: 32, dwaa: 32, dwab: 256,
};

export interface ExrHeader {
  tiled: boolean;
  multipart: boolean;
  deep: boolean;
  /** In the file's order (sorted by name). */
  channels: ExrChannel[];
  /** The compression's name, or `unknown(N)` for a code this parser does not know. */
  compression: ExrCompression | `unknown(${number})`;
  dataWindow: ExrBox;
  displayWindow: ExrBox;
  /** Tiled files only: tile size and level mode (0 one level, 1 mipmap, 2 ripmap). */
  tiles?: { width: number; height: number; levelMode: number };
  /** Bytes from the start of the file to the end of the header (where the offset table starts). */
  headerLength: number;
}

export class ExrFormatError extends Error {}
/** The buffer ended inside the header; more of the file is needed. */
class Truncated extends ExrFormatError {}

const MAGIC = 20000630;
const pixelTypes: ExrPixelType[] = ['uint', 'half', 'float'];

/** Parses a single-part header from the start of `buf`. */
export function parseExrHeader(buf: Buffer): ExrHeader {
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > buf.length) throw new Truncated('the file ends inside its EXR header');
  };
  const int32 = () => {
    need(4);
    pos += 4;
    return buf.readInt32LE(pos - 4);
  };
  const text = () => {
    const end = buf.indexOf(0, pos);
    if (end < 0) throw new Truncated('the file ends inside its EXR header');
    const value = buf.toString('latin1', pos, end);
    pos = end + 1;
    return value;
  };

  need(8);
  if (buf.readUInt32LE(0) !== MAGIC) throw new ExrFormatError('not an OpenEXR file (bad magic number)');
  const version = buf.readUInt32LE(4);
  if ((version & 0xff) !== 2) throw new ExrFormatError(`unsupported OpenEXR version ${version & 0xff}`);
  pos = 8;

  const header: Partial<ExrHeader> = {
    tiled: (version & 0x200) !== 0,
    deep: (version & 0x800) !== 0,
    multipart: (version & 0x1000) !== 0,
  };
  for (;;) {
    const name = text();
    if (name === '') break;
    const type = text();
    const size = int32();
    if (size < 0) throw new ExrFormatError(`attribute ${name} has a negative size`);
    need(size);
    const value = buf.subarray(pos, pos + size);
    pos += size;
    if (name === 'channels' && type === 'chlist') header.channels = parseChannels(value);
    else if (name === 'compression' && type === 'compression') {
      const code = value[0] ?? -1;
      header.compression = exrCompressions[code] ?? `unknown(${code})`;
    } else if (name === 'dataWindow' && type === 'box2i') header.dataWindow = parseBox(value);
    else if (name === 'displayWindow' && type === 'box2i') header.displayWindow = parseBox(value);
    else if (name === 'tiles' && type === 'tiledesc' && value.length >= 9) {
      header.tiles = { width: value.readUInt32LE(0), height: value.readUInt32LE(4), levelMode: value[8]! & 0x0f };
    }
  }
  header.headerLength = pos;
  for (const required of ['channels', 'compression', 'dataWindow', 'displayWindow'] as const) {
    if (header[required] === undefined) throw new ExrFormatError(`the EXR header has no ${required} attribute`);
  }
  return header as ExrHeader;
}

function parseChannels(value: Buffer): ExrChannel[] {
  const channels: ExrChannel[] = [];
  let pos = 0;
  while (pos < value.length) {
    const end = value.indexOf(0, pos);
    if (end < 0) break;
    const name = value.toString('latin1', pos, end);
    pos = end + 1;
    if (name === '') return channels;
    if (pos + 16 > value.length) break;
    const type = value.readInt32LE(pos);
    channels.push({
      name,
      pixelType: pixelTypes[type] ?? (`type ${type}` as ExrPixelType),
      xSampling: value.readInt32LE(pos + 8),
      ySampling: value.readInt32LE(pos + 12),
    });
    pos += 16;
  }
  throw new ExrFormatError('malformed channels attribute');
}

function parseBox(value: Buffer): ExrBox {
  if (value.length < 16) throw new ExrFormatError('malformed box2i attribute');
  return { xMin: value.readInt32LE(0), yMin: value.readInt32LE(4), xMax: value.readInt32LE(8), yMax: value.readInt32LE(12) };
}

export const boxWidth = (b: ExrBox) => b.xMax - b.xMin + 1;
export const boxHeight = (b: ExrBox) => b.yMax - b.yMin + 1;

/** Headers larger than this are not EXR frames Blender wrote. */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/**
 * Reads a file's header, and for single-part files checks that every chunk the offset
 * table lists starts inside the file and the last one ends inside it (a file cut short
 * by a failed upload or a full disk fails here).
 */
export async function readExrFile(file: string): Promise<ExrHeader> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    let header: ExrHeader | undefined;
    for (let length = 64 * 1024; !header; length *= 2) {
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(Math.min(length, size)), 0, Math.min(length, size), 0);
      try {
        header = parseExrHeader(buffer.subarray(0, bytesRead));
      } catch (error) {
        if (!(error instanceof Truncated) || bytesRead >= size || length >= MAX_HEADER_BYTES) throw error;
      }
    }
    if (!header.multipart && !header.deep) await checkChunks(handle, header, size);
    return header;
  } finally {
    await handle.close();
  }
}

async function checkChunks(handle: Awaited<ReturnType<typeof open>>, header: ExrHeader, fileSize: number): Promise<void> {
  const chunks = chunkCount(header);
  if (chunks === null) return;
  const tableEnd = header.headerLength + chunks * 8;
  if (tableEnd > fileSize) throw new ExrFormatError(`the file ends inside its chunk offset table (${fileSize} bytes)`);
  const table = Buffer.alloc(chunks * 8);
  await handle.read(table, 0, table.length, header.headerLength);
  let last = 0;
  for (let i = 0; i < chunks; i++) {
    const offset = Number(table.readBigUInt64LE(i * 8));
    if (offset < tableEnd || offset >= fileSize) {
      throw new ExrFormatError(`chunk ${i} of ${chunks} lies outside the ${fileSize}-byte file; the file is incomplete`);
    }
    last = Math.max(last, offset);
  }
  // A scanline chunk starts with y and a data size; a tile chunk with four coordinates and a size.
  const sizeAt = last + (header.tiled ? 16 : 4);
  const sizeField = Buffer.alloc(4);
  const { bytesRead } = await handle.read(sizeField, 0, 4, sizeAt);
  const end = sizeAt + 4 + sizeField.readInt32LE(0);
  if (bytesRead < 4 || end > fileSize) {
    throw new ExrFormatError(`its last chunk ends at byte ${end} but the file has ${fileSize}; the file is incomplete`);
  }
}

/** How many chunks the offset table holds; null when this parser cannot tell. */
function chunkCount(header: ExrHeader): number | null {
  const width = boxWidth(header.dataWindow);
  const height = boxHeight(header.dataWindow);
  if (width < 1 || height < 1) return null;
  if (header.tiled) {
    const tiles = header.tiles;
    if (!tiles || tiles.levelMode !== 0 || tiles.width < 1 || tiles.height < 1) return null;
    return Math.ceil(width / tiles.width) * Math.ceil(height / tiles.height);
  }
  const lines = linesPerChunk[header.compression as ExrCompression];
  return lines ? Math.ceil(height / lines) : null;
}
