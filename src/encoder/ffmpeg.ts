import { spawn } from 'node:child_process';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';

export interface EncodeRequest {
  ffmpegPath: string;
  framesDir: string;
  /** Frame files' extension; every file `frame_*.EXT` in framesDir becomes a video frame. */
  extension: string;
  fps: number;
  output: string;
  onProgress?: (framesEncoded: number) => void;
}

/**
 * What the video is made of, after its input: an H.264/yuv420p MP4 that plays everywhere.
 * Odd sizes are padded by one pixel because yuv420p needs even dimensions. The batch
 * encode and the streaming one (stream.ts) both end with exactly these arguments, so
 * their videos are the same byte for byte when their frames are.
 */
export function videoOutputArgs(fps: number, output: string): string[] {
  return [
    '-c:v', 'libx264',
    '-pix_fmt', 'yuv420p',
    '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2',
    '-r', String(fps),
    '-movflags', '+faststart',
    '-progress', 'pipe:1',
    '-nostats',
    output,
  ];
}

/**
 * Encodes a finished job's frames in one go. Frames are read by glob in name order, so
 * frame steps (1,5,9…) need no renumbering.
 */
export async function encodeVideo(request: EncodeRequest): Promise<void> {
  const temp = `${request.output}.partial.mp4`;
  const args = [
    '-hide_banner',
    '-nostdin',
    '-y',
    '-framerate', String(request.fps),
    '-pattern_type', 'glob',
    '-i', path.join(request.framesDir, `frame_*.${request.extension}`),
    ...videoOutputArgs(request.fps, temp),
  ];
  try {
    await run(request.ffmpegPath, args, request.onProgress);
    await rename(temp, request.output);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

function run(command: string, args: string[], onProgress?: (frames: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const match = /frame=(\d+)/g.exec(chunk);
      if (match && onProgress) onProgress(Number(match[1]));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.on('error', (error) => reject(new Error(`could not run ffmpeg (${command}): ${error.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`ffmpeg exited with code ${code}: ${lastLines(stderr, 5)}`));
    });
  });
}

export function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join('\n');
}
