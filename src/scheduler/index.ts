export { Scheduler } from './scheduler.ts';
export type { Assignment, QueuedJob, FrameOutcome, FailureOutcome, SchedulerOptions } from './scheduler.ts';
export { canTransition, assertTransition } from './job-state.ts';
