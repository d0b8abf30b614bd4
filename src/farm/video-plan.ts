/**
 * The rules of encoding a job's video while it renders (video-streams.ts does the I/O):
 * which jobs may, which frame goes to ffmpeg next, and whether the finished stream is
 * exactly the video the batch encode (src/encoder/ffmpeg.ts) would make now. Pure.
 *
 * The batch encode reads every `frame_*.EXT` file of the job's frames folder, in name
 * order. The stream feeds the job's frames in frame order as the run of finished frames
 * from the first one grows. Both videos are the same when, at the end, the stream was fed
 * exactly the files the batch encode would read, in its order, each still the same file.
 */
import type { BigIntStats } from 'node:fs';
import { canStreamFormat } from '../encoder/index.ts';
import { frameFileName } from '../store/data-dir.ts';

/**
 * What tells one file's bytes from another's at the same path: the farm replaces a frame
 * by renaming a new file over it (a new inode, a new change time), and writing into a
 * file changes its modification time.
 */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export function identityOf(stats: BigIntStats): FileIdentity {
  return { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs };
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** A frame file given to ffmpeg: its name in the frames folder and the file it was then. */
export interface FedFrame {
  number: number;
  name: string;
  identity: FileIdentity;
}

/**
 * Why a job's video cannot be encoded while it renders; null when it can. `frames` are
 * all the job's frame numbers in frame order.
 */
export function whyNotStreamable(frames: readonly number[], extension: string): string | null {
  if (!canStreamFormat(extension)) return `ffmpeg cannot read ${extension.toUpperCase()} frames from a stream`;
  if (frames.length === 0) return 'the job has no frames';
  // The batch encode takes the files in name order, which is frame order only when the
  // names differ in their digits alone: no minus sign, the same number of digits.
  if (frames.some((n) => n < 0)) return 'the job has negative frame numbers';
  const length = frameFileName(frames[0]!).length;
  if (frames.some((n) => frameFileName(n).length !== length)) return 'the frame numbers have different numbers of digits';
  return null;
}

/** The next frame to feed: the one after those fed, once it is done; undefined while it is not. */
export function nextToFeed(order: readonly number[], fedCount: number, done: ReadonlySet<number>): number | undefined {
  const next = order[fedCount];
  return next !== undefined && done.has(next) ? next : undefined;
}

/** Whether a file of the frames folder is an input of the batch encode (its `frame_*.EXT` glob). */
export function isBatchInput(name: string, extension: string): boolean {
  const suffix = `.${extension}`;
  return name.startsWith('frame_') && name.endsWith(suffix) && name.length >= 'frame_'.length + suffix.length;
}

export interface StreamCheck {
  /** What was fed, in order. */
  fed: readonly FedFrame[];
  /** Every frame of the job, in frame order; all must be done. */
  frames: readonly number[];
  /** The job's done frames now, from the store. */
  done: readonly number[];
  /** Frames ffmpeg encoded. */
  encoded: number;
  /** Names of the frames folder's files now (any order). */
  folder: readonly string[];
  extension: string;
  /** Each fed file now, by name; null when it is gone. */
  now: ReadonlyMap<string, FileIdentity | null>;
}

/**
 * Why the streamed video may differ from what the batch encode would make now; null when
 * it is the same. Any doubt counts as a difference: the caller then encodes the batch way.
 */
export function whyStreamDiffers(check: StreamCheck): string | null {
  const { fed, frames } = check;
  if (check.done.length !== frames.length || check.done.some((n, i) => n !== frames[i])) return 'the done frames are not the frames the stream was made for';
  if (fed.length !== frames.length) return `${fed.length} of ${frames.length} frames were fed`;
  if (fed.some((f, i) => f.number !== frames[i])) return 'frames were fed out of order';
  if (check.encoded !== fed.length) return `ffmpeg encoded ${check.encoded} of ${fed.length} frames`;
  const inputs = check.folder.filter((name) => isBatchInput(name, check.extension)).sort();
  if (inputs.length !== fed.length || inputs.some((name, i) => name !== fed[i]!.name)) {
    return 'the frames folder holds other files than those fed, or in another order';
  }
  const replaced = fed.find((f) => {
    const now = check.now.get(f.name);
    return !now || !sameIdentity(now, f.identity);
  });
  return replaced ? `frame ${replaced.number} was replaced after it was fed` : null;
}
