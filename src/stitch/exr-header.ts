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
/** Attribute and type names: at most 31 bytes, or 255 with the long-names flag. */
const MAX_NAME_BYTES = 255;

/**
 * Parses a single-part header from the start of `buf`, which holds the first bytes of a
 * file of `fileSize` bytes. The file comes from a worker, so every size in it is checked
 * against `fileSize` before it is used: what cannot fit in the file is refused for good,
 * what only runs past `buf` throws Truncated, for the caller to read more.
 */
export function parseExrHeader(buf: Buffer, fileSize = buf.length): ExrHeader {
  let pos = 0;
  const need = (n: number) => {
    if (pos + n <= buf.length) return;
    const message = `the ${fileSize}-byte file ends inside its EXR header`;
    throw buf.length >= fileSize ? new ExrFormatError(message) : new Truncated(message);
  };
  const uint32 = () => {
    need(4);
    pos += 4;
    return buf.readUInt32LE(pos - 4);
  };
  /** A null-terminated name, at most MAX_NAME_BYTES long. */
  const text = (what: string) => {
    const window = buf.subarray(pos, pos + MAX_NAME_BYTES + 1);
    const length = window.indexOf(0);
    if (length < 0) {
      if (window.length > MAX_NAME_BYTES) throw new ExrFormatError(`EXR ${what} at byte ${pos} is longer than ${MAX_NAME_BYTES} bytes`);
      if (buf.length >= fileSize) throw new ExrFormatError(`EXR ${what} at byte ${pos} runs past the end of the ${fileSize}-byte file`);
      throw new Truncated(`the ${fileSize}-byte file ends inside its EXR header`);
    }
    const value = buf.toString('latin1', pos, pos + length);
    pos += length + 1;
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
  // The loop ends: every attribute moves pos forward (by 7 bytes at least) and the file is finite.
  let last = '';
  for (;;) {
    if (pos >= fileSize) {
      const after = last ? `attribute ${last}` : 'its version field';
      throw new ExrFormatError(`EXR attribute list has no terminator: the ${fileSize}-byte file ends after ${after}`);
    }
    const name = text('attribute name');
    if (name === '') break;
    const type = text(`type name of attribute ${name}`);
    const size = uint32();
    // Read unsigned, so a "4 GB" size is reported as such rather than as a negative number.
    if (pos + size > fileSize) {
      throw new ExrFormatError(`EXR attribute ${name} at byte ${pos} claims ${size} bytes, more than the ${fileSize}-byte file holds`);
    }
    need(size);
    const value = buf.subarray(pos, pos + size);
    pos += size;
    last = name;
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
/** Offset table entries read at a time, so a long table never needs one large buffer. */
const TABLE_ENTRIES_PER_READ = 8192;

/**
 * Reads a file's header, and for single-part files checks that every chunk the offset
 * table lists starts inside the file and the last one ends inside it (a file cut short
 * by a failed upload or a full disk fails here).
 */
export async function readExrFile(file: string): Promise<ExrHeader> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const header = await readHeader(handle, size);
    if (!header.multipart && !header.deep) await checkChunks(handle, header, size);
    return header;
  } finally {
    await handle.close();
  }
}

type Handle = Awaited<ReturnType<typeof open>>;

/** Reads a growing prefix of the file (never more than the file, nor MAX_HEADER_BYTES) until the header parses. */
async function readHeader(handle: Handle, size: number): Promise<ExrHeader> {
  for (let length = 64 * 1024; ; length *= 2) {
    const wanted = Math.min(length, size);
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(wanted), 0, wanted, 0);
    try {
      return parseExrHeader(buffer.subarray(0, bytesRead), size);
    } catch (error) {
      // bytesRead < wanted only when the file shrank after stat(): its end is in the header.
      if (!(error instanceof Truncated) || bytesRead < wanted) throw error;
      if (length >= MAX_HEADER_BYTES) throw new ExrFormatError(`the EXR header is longer than ${MAX_HEADER_BYTES} bytes`);
    }
  }
}

async function checkChunks(handle: Handle, header: ExrHeader, fileSize: number): Promise<void> {
  const chunks = chunkCount(header);
  if (chunks === null) return;
  // Each chunk takes 8 bytes of offset table and at least its own header (y and a data
  // size; a tile's four coordinates and a size), so a data window cannot ask for more
  // chunks than the file has room for — checked before the table is read.
  const chunkHeader = header.tiled ? 20 : 8;
  if (header.headerLength + chunks * (8 + chunkHeader) > fileSize) {
    const { dataWindow: w } = header;
    throw new ExrFormatError(
      `EXR data window ${boxWidth(w)}x${boxHeight(w)} needs ${chunks} chunks, more than the ${fileSize}-byte file holds; the file is incomplete or its header is wrong`,
    );
  }
  const tableEnd = header.headerLength + chunks * 8;
  const slice = Buffer.alloc(Math.min(chunks, TABLE_ENTRIES_PER_READ) * 8);
  let last = 0;
  for (let first = 0; first < chunks; first += TABLE_ENTRIES_PER_READ) {
    const count = Math.min(chunks - first, TABLE_ENTRIES_PER_READ);
    const { bytesRead } = await handle.read(slice, 0, count * 8, header.headerLength + first * 8);
    if (bytesRead < count * 8) throw new ExrFormatError('the file ends inside its EXR chunk offset table; the file is incomplete');
    for (let i = 0; i < count; i++) {
      const offset = Number(slice.readBigUInt64LE(i * 8));
      if (offset < tableEnd || offset >= fileSize) {
        throw new ExrFormatError(`chunk ${first + i} of ${chunks} lies outside the ${fileSize}-byte file; the file is incomplete`);
      }
      last = Math.max(last, offset);
    }
  }
  // A scanline chunk starts with y and a data size; a tile chunk with four coordinates and a size.
  const sizeAt = last + (header.tiled ? 16 : 4);
  const sizeField = Buffer.alloc(4);
  const { bytesRead } = await handle.read(sizeField, 0, 4, sizeAt);
  const dataSize = sizeField.readInt32LE(0);
  const end = sizeAt + 4 + dataSize;
  if (bytesRead < 4 || end > fileSize) {
    throw new ExrFormatError(`its last chunk ends at byte ${end} but the file has ${fileSize}; the file is incomplete`);
  }
  if (dataSize < 0) throw new ExrFormatError(`the EXR chunk at byte ${last} claims a negative data size (${dataSize})`);
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
