/**
 * SHA-256 of each project file, computed in the browser. Web Crypto exists only in a
 * secure context (https, or http on localhost / 127.0.0.1); without it there is no
 * well-kept tiny SHA-256 in the project's dependencies, so the page says so instead.
 */
export const NEEDS_SECURE_CONTEXT =
  'Sending a folder or a .zip needs the farm page opened over https or on localhost: the browser computes each file’s SHA-256 only there. ' +
  'Open it that way, send the .blend alone, or use `archenland submit --project-dir DIR` from the command line.';

export function canDigest(): boolean {
  return window.isSecureContext && typeof crypto !== 'undefined' && crypto.subtle !== undefined;
}

export async function sha256Hex(data: ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * The folder the project sat in on the artist's machine, read from the absolute paths a
 * .blend holds. The browser never tells a dropped folder's full path, but a scene that
 * uses "/home/ann/shot/abs/tex.png" while the project has "abs/tex.png" was made in
 * "/home/ann/shot": naming that as the project's root lets workers remap such paths into
 * their copy of the project, as they do for the command line. Null when nothing matches.
 */
export async function rootFromBlend(data: ArrayBuffer, projectPaths: Set<string>): Promise<string | null> {
  const bytes = await uncompressed(new Uint8Array(data));
  if (!bytes) return null;
  const counts = new Map<string, number>();
  for (const text of absolutePaths(bytes)) {
    const slashed = text.replace(/\\/g, '/');
    // The longest tail that is a project file, so the root is the deepest folder that fits.
    for (let i = slashed.indexOf('/', 1); i > 0; i = slashed.indexOf('/', i + 1)) {
      if (projectPaths.has(slashed.slice(i + 1).toLowerCase())) {
        const root = text.slice(0, i);
        counts.set(root, (counts.get(root) ?? 0) + 1);
        break;
      }
    }
  }
  let best: string | null = null;
  for (const [root, count] of counts) if (best === null || count > counts.get(best)!) best = root;
  return best;
}

/** A .blend's bytes as Blender reads them: plain, or gzip (older Blenders); zstd (3.0+) is not readable here. */
async function uncompressed(bytes: Uint8Array): Promise<Uint8Array | null> {
  const magic = String.fromCharCode(...bytes.subarray(0, 7));
  if (magic === 'BLENDER') return bytes;
  if (bytes[0] === 0x1f && bytes[1] === 0x8b && typeof DecompressionStream !== 'undefined') {
    try {
      const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('gzip'));
      return new Uint8Array(await new Response(stream).arrayBuffer());
    } catch {
      return null;
    }
  }
  return null;
}

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

/**
 * Absolute file paths stored in a .blend: Blender keeps them as NUL-terminated strings
 * ("/…" or "C:\…"), so a "/" or a drive's ":" right after a NUL starts a candidate. Found
 * by indexOf on those bytes, not byte by byte: a .blend can be hundreds of MB.
 */
function* absolutePaths(bytes: Uint8Array): Generator<string> {
  for (let at = bytes.indexOf(SLASH, 1); at >= 0; at = bytes.indexOf(SLASH, at + 1)) {
    if (bytes[at - 1] === 0 && bytes[at + 1] !== SLASH) yield* stringAt(bytes, at); // "//" is Blender's relative prefix
  }
  for (let at = bytes.indexOf(COLON, 2); at >= 0; at = bytes.indexOf(COLON, at + 1)) {
    const letter = bytes[at - 1]! | 0x20;
    const next = bytes[at + 1];
    if (bytes[at - 2] === 0 && letter >= 0x61 && letter <= 0x7a && (next === SLASH || next === BACKSLASH)) yield* stringAt(bytes, at - 1);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The NUL-terminated text at `start`, if it is short enough to be a path and decodes. */
function* stringAt(bytes: Uint8Array, start: number): Generator<string> {
  const end = bytes.indexOf(0, start);
  if (end < 0 || end - start > 1024) return; // Blender's paths fit in 1024 bytes
  try {
    const text = decoder.decode(bytes.subarray(start, end));
    if (!/[\u0000-\u001f]/.test(text)) yield text;
  } catch {
    // not text
  }
}
