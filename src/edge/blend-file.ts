import { open } from 'node:fs/promises';

/**
 * A .blend starts with "BLENDER" when saved plainly; Blender 3.x may save it zstd
 * compressed and older versions gzip compressed. Anything else is refused at upload.
 */
const BLENDER_MAGIC = Buffer.from('BLENDER', 'ascii');
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/** Bytes of a plain header: "BLENDER", pointer size, endianness, version ("-v304"). */
export const BLEND_HEADER_BYTES = 12;

export type BlendKind = 'plain' | 'zstd' | 'gzip';

export function blendKindOf(head: Buffer): BlendKind | null {
  if (head.length >= BLEND_HEADER_BYTES && head.subarray(0, 7).equals(BLENDER_MAGIC)) {
    const pointer = head[7];
    const endian = head[8];
    const version = head.subarray(9, 12).toString('ascii');
    const validPointer = pointer === 0x5f || pointer === 0x2d; // '_' 32-bit, '-' 64-bit
    const validEndian = endian === 0x76 || endian === 0x56; // 'v' little, 'V' big
    return validPointer && validEndian && /^\d{3}$/.test(version) ? 'plain' : null;
  }
  if (head.length >= 4 && head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  if (head.length >= 2 && head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  return null;
}

/**
 * A plain .blend ends with an "ENDB" block header (20 bytes with 32-bit pointers, 24 with
 * 64-bit). A file cut short in transfer or on disk lacks it, so it is refused at upload
 * instead of failing later on a worker. Compressed files are checked by the probe.
 */
export async function isTruncatedPlainBlend(file: string, head: Buffer): Promise<boolean> {
  const blockHeaderBytes = head[7] === 0x2d ? 24 : 20;
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size < BLEND_HEADER_BYTES + blockHeaderBytes) return true;
    const tail = Buffer.alloc(blockHeaderBytes);
    await handle.read(tail, 0, blockHeaderBytes, size - blockHeaderBytes);
    return !tail.subarray(0, 4).equals(Buffer.from('ENDB', 'ascii'));
  } finally {
    await handle.close();
  }
}
