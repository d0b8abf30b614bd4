import { existsSync } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Preview sizes the UI asks for: grid thumbnails and the large "latest frame". */
export const previewWidths = { small: 320, large: 1280 } as const;
export type PreviewSize = keyof typeof previewWidths;

/** Formats sharp decodes; EXR frames have no preview (the UI says so). */
const previewable = new Set(['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp']);

export function canPreview(frameFile: string): boolean {
  return previewable.has(path.extname(frameFile).toLowerCase());
}

/**
 * A small WebP of a finished frame, made once and kept beside the frames, so the web UI
 * never downloads full-size images for its grid. Concurrent requests for the same
 * preview share the work.
 */
const inFlight = new Map<string, Promise<string>>();

export function previewOf(frameFile: string, previewDir: string, size: PreviewSize): Promise<string> {
  const target = path.join(previewDir, `${path.parse(frameFile).name}.${size}.webp`);
  if (existsSync(target)) return Promise.resolve(target);
  let work = inFlight.get(target);
  if (!work) {
    work = makePreview(frameFile, target, previewWidths[size]).finally(() => inFlight.delete(target));
    inFlight.set(target, work);
  }
  return work;
}

async function makePreview(source: string, target: string, width: number): Promise<string> {
  await mkdir(path.dirname(target), { recursive: true });
  const temp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  // Loaded on first use: sharp costs ~27 MB of memory that a server showing no previews never needs.
  const { default: sharp } = await import('sharp');
  await sharp(source).resize({ width, withoutEnlargement: true }).webp({ quality: 75 }).toFile(temp);
  await rename(temp, target);
  return target;
}
