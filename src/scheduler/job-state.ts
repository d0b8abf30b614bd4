import type { JobState } from '../protocol/index.ts';

/**
 * The job life cycle, kept in one table so every state change in the farm is checked
 * against it (pg-boss style: the state machine is data, not scattered ifs).
 */
const transitions: Record<JobState, readonly JobState[]> = {
  probing: ['queued', 'paused', 'failed', 'cancelled'],
  queued: ['rendering', 'paused', 'failed', 'cancelled'],
  paused: ['queued', 'rendering', 'encoding', 'failed', 'cancelled'],
  rendering: ['encoding', 'paused', 'failed', 'cancelled', 'queued'],
  encoding: ['completed', 'failed', 'cancelled'],
  completed: [],
  failed: ['queued'], // retrying failed frames puts the job back in the queue
  cancelled: [],
};

export function canTransition(from: JobState, to: JobState): boolean {
  return transitions[from].includes(to);
}

export function assertTransition(from: JobState, to: JobState): void {
  if (!canTransition(from, to)) throw new Error(`a job cannot go from ${from} to ${to}`);
}

export const finishedStates: readonly JobState[] = ['completed', 'failed', 'cancelled'];
