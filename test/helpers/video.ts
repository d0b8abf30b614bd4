/**
 * Frames and videos for the video tests, made and read with the real ffmpeg: distinct
 * generated frames (ffmpeg's testsrc2 pattern moves from frame to frame), the batch
 * encode of a folder as the reference, and what ffprobe counts in a video.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { encodeVideo } from '../../src/encoder/index.ts';
import { frameFileName } from '../../src/store/index.ts';

const run = promisify(execFile);

export interface FrameSet {
  dir: string;
  extension: 'png' | 'jpg' | 'tif';
  /** The files, in frame order. */
  files: string[];
}

/**
 * `numbers.length` distinct frames named as the farm names them (frame_0001.png …).
 * `pixelFormat` picks the depth, e.g. rgb48be for 16-bit PNG.
 */
export async function makeFrames(
  dir: string,
  numbers: number[],
  opts: { width: number; height: number; extension?: 'png' | 'jpg' | 'tif'; pixelFormat?: string; seed?: number },
): Promise<FrameSet> {
  const extension = opts.extension ?? 'png';
  const scratch = path.join(dir, '.generated');
  mkdirSync(scratch, { recursive: true });
  // The pattern starts `seed` frames in, so two sets with different seeds differ everywhere.
  const seed = opts.seed ?? 0;
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=${opts.width}x${opts.height}:rate=24`,
    '-vf', `trim=start_frame=${seed},setpts=PTS-STARTPTS`,
    '-frames:v', String(numbers.length),
    ...(opts.pixelFormat ? ['-pix_fmt', opts.pixelFormat] : []),
    path.join(scratch, `g_%06d.${extension}`),
  ]);
  // Renamed into place, as the farm commits frames.
  const files = numbers.map((n, i) => {
    const file = path.join(dir, `${frameFileName(n)}.${extension}`);
    renameSync(path.join(scratch, `g_${String(i + 1).padStart(6, '0')}.${extension}`), file);
    return file;
  });
  rmSync(scratch, { recursive: true, force: true });
  return { dir, extension, files };
}

/** The reference: the farm's batch encode of a frames folder. */
export async function batchEncode(framesDir: string, extension: string, fps: number, output: string): Promise<string> {
  await encodeVideo({ ffmpegPath: 'ffmpeg', framesDir, extension, fps, output });
  return output;
}

export function md5(file: string): string {
  return createHash('md5').update(readFileSync(file)).digest('hex');
}

/** Frames in a video as ffprobe counts them by decoding, with the codec, pixel format and rate. */
export async function probeVideo(file: string): Promise<{ frames: number; codec: string; pixelFormat: string; rate: string }> {
  const { stdout } = await run('ffprobe', [
    '-v', 'error', '-count_frames', '-select_streams', 'v:0',
    '-show_entries', 'stream=codec_name,pix_fmt,nb_read_frames,r_frame_rate', '-of', 'json', file,
  ]);
  const stream = JSON.parse(stdout).streams[0];
  return { frames: Number(stream.nb_read_frames), codec: stream.codec_name, pixelFormat: stream.pix_fmt, rate: stream.r_frame_rate };
}

/** An MD5 of each decoded frame of a video (ffmpeg's framemd5 muxer), to compare decodes. */
export async function decodedFrameHashes(file: string): Promise<string[]> {
  const { stdout } = await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-i', file, '-map', '0:v:0', '-f', 'framemd5', '-'], { maxBuffer: 64 * 1024 * 1024 });
  return stdout.split('\n').filter((line) => line && !line.startsWith('#')).map((line) => line.split(',').pop()!.trim());
}

/** Files of a folder whose names match a pattern. */
export function filesMatching(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir).filter((name) => pattern.test(name));
}
