export { Scheduler } from './scheduler.ts';
export type { Assignment, QueuedJob, FrameOutcome, FailureOutcome, SchedulerOptions, JobCounts } from './scheduler.ts';
export { canTransition, assertTransition } from './job-state.ts';
