import { z } from 'zod';

export const frameRangeSchema = z
  .object({
    start: z.number().int().min(-1_048_574).max(1_048_574),
    end: z.number().int().min(-1_048_574).max(1_048_574),
    step: z.number().int().min(1).max(10_000).default(1),
  })
  .refine((r) => r.end >= r.start, { message: 'frame range ends before it starts' });
export type FrameRange = z.infer<typeof frameRangeSchema>;

/** The largest job a single submission may create; guards the store against "1-999999999". */
export const MAX_FRAMES_PER_JOB = 1_000_000;

/** Parses "12", "1-250" or "1-250:5" (every 5th frame) as typed by people. */
export function parseFrameRange(text: string): FrameRange {
  const match = /^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?(?::\s*(\d+)\s*)?$/.exec(text);
  if (!match) throw new Error(`invalid frame range "${text}": expected N, A-B or A-B:STEP`);
  const start = Number(match[1]);
  const end = match[2] === undefined ? start : Number(match[2]);
  const step = match[3] === undefined ? 1 : Number(match[3]);
  const parsed = frameRangeSchema.safeParse({ start, end, step });
  if (!parsed.success) {
    throw new Error(`invalid frame range "${text}": ${parsed.error.issues[0]?.message}`);
  }
  if (frameCount(parsed.data) > MAX_FRAMES_PER_JOB) {
    throw new Error(`invalid frame range "${text}": more than ${MAX_FRAMES_PER_JOB} frames`);
  }
  return parsed.data;
}

export function frameCount(range: FrameRange): number {
  return Math.floor((range.end - range.start) / range.step) + 1;
}

export function framesOf(range: FrameRange): number[] {
  const frames: number[] = [];
  for (let f = range.start; f <= range.end; f += range.step) frames.push(f);
  return frames;
}

export function formatFrameRange(range: FrameRange): string {
  const base = range.start === range.end ? `${range.start}` : `${range.start}-${range.end}`;
  return range.step === 1 ? base : `${base}:${range.step}`;
}

/**
 * The order a job's frames are handed out in: `interleaved` (first, last, middle, then
 * filling in) shows a broken shot early; `sequential` suits unbaked simulations.
 */
export const frameOrderSchema = z.enum(['interleaved', 'sequential']);
export type FrameOrder = z.infer<typeof frameOrderSchema>;
