/**
 * When a job cannot finish whatever the farm does, so it should fail now rather than wait
 * for ever: the scene is broken (the same error on several workers and several frames),
 * or every connected worker that could render it has been barred from it after failing it.
 */
import type { JobEntry } from './job-entry.ts';

/**
 * Distinct workers, and distinct frames, failing with the same error before it counts as
 * the scene's: one worker's failures may be its own, and one frame's (a crash on that
 * frame alone) fail that frame, not the job.
 */
export const SCENE_ERROR_WORKERS = 2;
export const SCENE_ERROR_FRAMES = 2;

/**
 * The part of an error that does not depend on the worker or frame: numbers and absolute
 * paths (each worker's cache folder differs) are blanked, so "frame 3 failed in
 * /var/a/x.blend" and "frame 7 failed in /srv/b/x.blend" count as one error.
 */
export function errorSignature(error: string): string {
  return error
    .split('\n', 1)[0]!
    .replace(/(?:[A-Za-z]:)?[\\/][^\s'"]+/g, '<path>')
    .replace(/\d+/g, '#')
    .trim()
    .slice(0, 300);
}

/** Errors seen in one job: signature -> the workers and frames that hit it, and the first message. */
export class ErrorTally {
  private readonly seen = new Map<string, { workers: Set<string>; frames: Set<number>; message: string }>();

  /** Records a failure; returns the error's message once enough workers and frames have hit it. */
  add(workerId: string, frame: number, error: string): string | null {
    const signature = errorSignature(error);
    if (signature === '') return null;
    let entry = this.seen.get(signature);
    if (!entry) this.seen.set(signature, (entry = { workers: new Set(), frames: new Set(), message: error.split('\n', 1)[0]!.slice(0, 500) }));
    entry.workers.add(workerId);
    entry.frames.add(frame);
    return entry.workers.size >= SCENE_ERROR_WORKERS && entry.frames.size >= SCENE_ERROR_FRAMES ? entry.message : null;
  }
}

/**
 * Books a failed attempt on the job: its count, the workers the unit failed on, the
 * frames each worker failed (enough bar it from the job), and the error's tally. Returns
 * the unit's attempts so far.
 */
export function recordFailure(entry: JobEntry, failure: { unit: string; frame: number; workerId: string; error: string }, blockAfterFailures: number): number {
  const { unit, frame, workerId, error } = failure;
  if (error) {
    entry.lastError = error;
    entry.sceneError ??= entry.errors.add(workerId, frame, error);
  }
  const attempts = (entry.attempts.get(unit) ?? 0) + 1;
  entry.attempts.set(unit, attempts);
  let failedOn = entry.failedOn.get(unit);
  if (!failedOn) entry.failedOn.set(unit, (failedOn = new Set()));
  failedOn.add(workerId);
  let failedFrames = entry.failedFramesByWorker.get(workerId);
  if (!failedFrames) entry.failedFramesByWorker.set(workerId, (failedFrames = new Set()));
  failedFrames.add(frame);
  if (failedFrames.size >= blockAfterFailures) entry.blocked.add(workerId);
  return attempts;
}

/**
 * Why the job cannot finish, or null: the same error from several workers and frames (the
 * scene is broken), or every candidate (a connected worker that could render it) barred
 * and nothing of it rendering. With no candidate connected a job simply waits.
 */
export function hopelessReason(entry: JobEntry, candidates: readonly string[], blockAfterFailures: number): string | null {
  if (entry.open.size === 0) return null;
  if (entry.sceneError) return `the same error on several workers and frames, so the scene itself cannot render: ${entry.sceneError}`;
  if (entry.blocked.size === 0 || entry.inFlight.size > 0 || entry.stitching.size > 0) return null;
  if (candidates.length === 0 || candidates.some((w) => !entry.blocked.has(w))) return null;
  const who = candidates.length === 1 ? 'the only worker that could render it' : `all ${candidates.length} workers that could render it`;
  return `${who} failed ${blockAfterFailures} of its frames and may not take it any more: ${entry.lastError ?? 'unknown error'}`;
}
