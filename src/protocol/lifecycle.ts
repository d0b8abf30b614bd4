import type { FrameCounts, FrameState, JobState } from './api.ts';

/**
 * The job and frame life cycles as data, shared by the server (which moves jobs and frames
 * only along these arrows, guarded in SQL) and the web UI (which offers only the commands
 * a state allows).
 */
export const jobTransitions: Readonly<Record<JobState, readonly JobState[]>> = {
  probing: ['queued', 'paused', 'failed', 'cancelled'],
  queued: ['rendering', 'paused', 'failed', 'cancelled'],
  // completed straight from paused or rendering: a job whose frames make no video (multilayer EXR).
  // probing from paused: files were added to a held job, so its scene is read again.
  paused: ['probing', 'queued', 'rendering', 'encoding', 'completed', 'failed', 'cancelled'],
  rendering: ['encoding', 'completed', 'paused', 'failed', 'cancelled', 'queued'],
  encoding: ['completed', 'failed', 'cancelled'],
  completed: [],
  failed: ['queued', 'probing'], // a retry queues failed frames again, or reads again a scene that failed its preflight
  cancelled: [],
};

export function canTransition(from: JobState, to: JobState): boolean {
  return jobTransitions[from].includes(to);
}

/** The states a job may be in to move to `to`: the guard of a compare-and-set. */
export function statesLeadingTo(to: JobState): JobState[] {
  return (Object.keys(jobTransitions) as JobState[]).filter((from) => canTransition(from, to));
}

/**
 * A frame is handed out (rendering) and comes back done, failed, or unfinished (queued;
 * a split frame stays rendering while its tiles go round). A late result of a worker
 * presumed lost may finish a frame that was put back in the queue. Only retrying a job
 * takes a failed frame back; a done frame stays done.
 */
export const frameTransitions: Readonly<Record<FrameState, readonly FrameState[]>> = {
  queued: ['queued', 'rendering', 'done', 'failed'],
  rendering: ['queued', 'rendering', 'done', 'failed'],
  failed: ['queued'],
  done: [],
};

export function frameStatesLeadingTo(to: FrameState): FrameState[] {
  return (Object.keys(frameTransitions) as FrameState[]).filter((from) => frameTransitions[from].includes(to));
}

export const finishedStates: readonly JobState[] = ['completed', 'failed', 'cancelled'];
export const isFinished = (state: JobState) => finishedStates.includes(state);

/** What a person may do to a job, by the states that allow it. */
export const jobCommands = {
  pause: ['queued', 'rendering'],
  resume: ['paused'],
  cancel: ['probing', 'queued', 'paused', 'rendering', 'encoding'],
  retry: ['failed', 'rendering', 'queued', 'paused'],
  /** Render settings change only before the first frame is handed out, as well. */
  editRenderSettings: ['paused', 'queued'],
  /** Files added to a held job (one the preflight held for files its project lacks), before its first frame. */
  replaceProject: ['paused'],
} as const satisfies Record<string, readonly JobState[]>;

export type JobCommand = keyof typeof jobCommands;

export function allows(command: JobCommand, state: JobState): boolean {
  return (jobCommands[command] as readonly JobState[]).includes(state);
}

/**
 * Retrying needs failed frames to retry, or a failed job: one that gave up (no worker
 * could finish it) or failed its preflight starts over.
 */
export function canRetry(job: { state: JobState; counts: FrameCounts }): boolean {
  return (job.counts.failed > 0 || job.state === 'failed') && allows('retry', job.state);
}

/** A job still on its way: it may render, or be rendering, or be made into a video. */
export function isActive(job: { state: JobState }): boolean {
  return !isFinished(job.state);
}

/**
 * Paused by its preflight: the scene names files the project lacks, so the job waits for
 * them (or for a resume) instead of rendering frames without them. `submit --wait` stops here.
 */
export function isHeldForMissingFiles(job: { state: JobState; scene: { problems: ReadonlyArray<{ code: string }> } | null }): boolean {
  return job.state === 'paused' && (job.scene?.problems.some((problem) => problem.code === 'MISSING_FILE') ?? false);
}
