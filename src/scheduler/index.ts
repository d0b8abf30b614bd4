export { Scheduler } from './scheduler.ts';
export type { Assignment, QueuedJob, FrameOutcome, FailureOutcome, SchedulerOptions, JobCounts } from './scheduler.ts';
export { canTransition, assertTransition, finishedStates } from './job-state.ts';
