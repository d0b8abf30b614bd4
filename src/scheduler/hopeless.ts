/**
 * When a job cannot finish whatever the farm does, so it should fail now rather than wait
 * for ever: the scene is broken (the same error on several workers and several frames),
 * or every connected worker that could render it has been barred from it after failing it.
 */

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
