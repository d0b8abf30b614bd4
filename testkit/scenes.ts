import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';

const run = promisify(execFile);

export const BLENDER = process.env.BLENDER ?? 'blender';
const MAKE_SCENE_SCRIPT = fileURLToPath(new URL('../blender/test_scenes/make_test_scene.py', import.meta.url));
const SCENE_KIT = fileURLToPath(new URL('../blender/test_scenes/scene_kit.py', import.meta.url));
const CACHE_DIR = join(tmpdir(), 'archenland-test-scenes');

export type TestSceneOptions = {
  frames?: string;
  width?: number;
  height?: number;
  samples?: number;
  denoise?: boolean;
  engine?: string;
  fps?: number;
  /** "crash:N", "hang:N" or "chatter:N": embedded Python that kills or stalls Blender on frame N, or prints 30 progress lines over 3 s first (needs allowScripts). */
  misbehave?: string;
  /** A compositor Glare node between Render Layers and Composite (spreads light across pixels). */
  glare?: boolean;
  /** A checkered ground and more objects, so every region of the frame has detail. */
  detail?: boolean;
  /** Output file format; PNG unless given. */
  format?: 'PNG' | 'OPEN_EXR' | 'OPEN_EXR_MULTILAYER';
  /** Bits per channel: 8 or 16 for PNG, 16 (half) or 32 for OPEN_EXR; default 8 / 32. */
  colorDepth?: 8 | 16 | 32;
  /** Stereo 3D, each eye a file of its own; the value is the right eye's file suffix ("_R"). */
  stereo?: string;
};

/**
 * Generate (or reuse) a small deterministic scene and return its .blend path.
 * The cache key covers the options and the generator script, so editing
 * make_test_scene.py produces fresh files.
 */
export async function makeTestScene(opts: TestSceneOptions = {}): Promise<string> {
  const settings = {
    frames: opts.frames ?? '1-10',
    width: opts.width ?? 64,
    height: opts.height ?? 48,
    samples: opts.samples ?? 4,
    engine: opts.engine ?? 'CYCLES',
    fps: opts.fps ?? 24,
    denoise: opts.denoise ?? false,
    misbehave: opts.misbehave ?? null,
    glare: opts.glare ?? false,
    detail: opts.detail ?? false,
    format: opts.format ?? 'PNG',
    colorDepth: opts.colorDepth ?? null,
    stereo: opts.stereo ?? null,
  };
  const key = createHash('sha256')
    .update(readFileSync(MAKE_SCENE_SCRIPT))
    .update(readFileSync(SCENE_KIT))
    .update(JSON.stringify(settings))
    .digest('hex')
    .slice(0, 16);
  const output = join(CACHE_DIR, `scene-${key}.blend`);
  if (existsSync(output)) return output;

  await mkdir(CACHE_DIR, { recursive: true });
  // Write under a unique name and rename, so a concurrent caller never sees half a file.
  const partial = join(CACHE_DIR, `scene-${key}.${process.pid}.${Date.now()}.partial.blend`);
  const args = [
    '-b', '--factory-startup', '--python', MAKE_SCENE_SCRIPT, '--',
    '--output', partial,
    '--frames', settings.frames,
    '--width', String(settings.width),
    '--height', String(settings.height),
    '--samples', String(settings.samples),
    '--engine', settings.engine,
    '--fps', String(settings.fps),
    ...(settings.denoise ? ['--denoise'] : []),
    ...(settings.misbehave ? ['--misbehave', settings.misbehave] : []),
    ...(settings.glare ? ['--glare'] : []),
    ...(settings.detail ? ['--detail'] : []),
    '--format', settings.format,
    ...(settings.colorDepth ? ['--color-depth', String(settings.colorDepth)] : []),
    ...(settings.stereo ? [`--stereo=${settings.stereo}`] : []),
  ];
  try {
    await run(BLENDER, args, { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    if (!existsSync(partial)) throw new Error(`make_test_scene.py did not write ${partial}`);
    await rename(partial, output);
  } catch (error) {
    await rm(partial, { force: true });
    const err = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`Could not generate a test scene: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
  return output;
}

export type RgbaImage = { width: number; height: number; channels: number; data: Buffer };

/** Decode an image to raw RGBA pixels (PNG metadata such as dates is ignored). */
export async function decodeRgba(path: string): Promise<RgbaImage> {
  const { data, info } = await sharp(path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data };
}

/** Fail with a summary (size, differing bytes, largest difference) unless pixels match exactly. */
export function assertPixelsEqual(a: RgbaImage, b: RgbaImage, label = 'images'): void {
  assert.deepEqual(
    { width: a.width, height: a.height, channels: a.channels },
    { width: b.width, height: b.height, channels: b.channels },
    `${label}: sizes differ`,
  );
  if (a.data.equals(b.data)) return;
  let differing = 0;
  let largest = 0;
  for (let i = 0; i < a.data.length; i++) {
    const diff = Math.abs(a.data[i] - b.data[i]);
    if (diff > 0) differing++;
    if (diff > largest) largest = diff;
  }
  assert.fail(`${label}: ${differing} of ${a.data.length} bytes differ, largest difference ${largest}/255`);
}

const MAKE_HOSTILE_SCENE_SCRIPT = fileURLToPath(new URL('../blender/test_scenes/make_hostile_scene.py', import.meta.url));

export type HostileSceneOptions = {
  /** Names that forge old-style events, among them a "saved" event for frame 1 pointing at this file. */
  forgeEventsAt?: string;
  /** Compositor File Output nodes writing into this folder, beside the .blend and out of a node group. */
  fileOutputsOutside?: string;
};

/**
 * Generate a scene that attacks the worker (blender/test_scenes/make_hostile_scene.py) at `output`.
 * Not cached: the paths it attacks belong to one test run, and "//" paths in it
 * resolve beside `output`.
 */
export async function makeHostileScene(output: string, opts: HostileSceneOptions): Promise<string> {
  const args = [
    '-b', '--factory-startup', '--python', MAKE_HOSTILE_SCENE_SCRIPT, '--',
    '--output', output,
    ...(opts.forgeEventsAt ? ['--forge-events', opts.forgeEventsAt] : []),
    ...(opts.fileOutputsOutside ? ['--file-outputs', opts.fileOutputsOutside] : []),
  ];
  try {
    await run(BLENDER, args, { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const err = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`Could not generate a hostile test scene: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
  if (!existsSync(output)) throw new Error(`make_hostile_scene.py did not write ${output}`);
  return output;
}
