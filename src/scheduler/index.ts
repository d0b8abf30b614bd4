export { Scheduler } from './scheduler.ts';
export type { Assignment, QueuedJob, FrameOutcome, FailureOutcome, SchedulerOptions, JobCounts, QueuePolicy } from './scheduler.ts';
export { chooseSplit, MIN_TILE_MS } from './tile-policy.ts';
export { orderFrames } from './frame-order.ts';
