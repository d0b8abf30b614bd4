/**
 * Decides which frame each free worker renders next. Pure bookkeeping, no I/O: the farm
 * applies its decisions to the store and the sockets, and tests drive it directly.
 *
 * Workers pull: a worker that says it is ready joins the idle set, and `dispatch` pairs
 * idle workers with pending frames in queue order (priority, then submission), so fast
 * workers come back sooner and render more frames. When the first job in the queue has
 * nothing left to hand out, idle workers flow on to the next job.
 */
export interface Assignment {
  workerId: string;
  jobId: string;
  frame: number;
}

export interface QueuedJob {
  jobId: string;
  /** Higher first; ties go to the lower sequence number (earlier submission). */
  priority: number;
  seq: number;
  /** Frames still to render, in the order they should be handed out. */
  frames: number[];
  /** Frames of the job already finished before it was (re)queued, for its counts. */
  done?: number;
  failed?: number;
  paused?: boolean;
}

/** How a job's frames stand, kept as counters so reading them costs nothing at any size. */
export interface JobCounts {
  total: number;
  queued: number;
  rendering: number;
  done: number;
  failed: number;
}

export type FrameOutcome =
  | { kind: 'accepted'; jobFinished: boolean; cancel: Assignment[] }
  | { kind: 'duplicate' }
  | { kind: 'unknown' };

export type FailureOutcome =
  | { kind: 'requeued'; attempts: number }
  | { kind: 'failed'; attempts: number; jobFinished: boolean }
  | { kind: 'unknown' };

interface JobEntry {
  jobId: string;
  priority: number;
  seq: number;
  paused: boolean;
  /** Frames never handed out; consumed from `next` so no array shifting on 100k frames. */
  fresh: number[];
  next: number;
  /** Frames handed back (worker lost or failed) go ahead of fresh ones. */
  retry: number[];
  /** frame -> workers currently rendering it. */
  inFlight: Map<number, Set<string>>;
  attempts: Map<number, number>;
  /** Frames neither done nor finally failed; the job is finished when this reaches 0. */
  open: Set<number>;
  /** Workers that failed this job too often (issue: blocklist); they get none of its frames. */
  blocked: Set<string>;
  failuresByWorker: Map<string, number>;
  done: number;
  failed: number;
}

export interface SchedulerOptions {
  /** A frame is retried until it has failed this many times in all. */
  maxAttempts: number;
  /** A worker that fails this many frames of one job gets no more of that job. */
  blockAfterFailures: number;
}

const key = (jobId: string, frame: number) => `${jobId}#${frame}`;

export class Scheduler {
  private readonly jobs = new Map<string, JobEntry>();
  private order: JobEntry[] = [];
  private readonly idle = new Set<string>();
  /** worker -> "job#frame" keys it holds, to hand them back if it vanishes. */
  private readonly held = new Map<string, Set<string>>();

  constructor(private readonly options: SchedulerOptions) {}

  addJob(job: QueuedJob): void {
    if (this.jobs.has(job.jobId)) throw new Error(`job ${job.jobId} is already queued`);
    const entry: JobEntry = {
      jobId: job.jobId,
      priority: job.priority,
      seq: job.seq,
      paused: job.paused ?? false,
      fresh: [...job.frames],
      next: 0,
      retry: [],
      inFlight: new Map(),
      attempts: new Map(),
      open: new Set(job.frames),
      blocked: new Set(),
      failuresByWorker: new Map(),
      done: job.done ?? 0,
      failed: job.failed ?? 0,
    };
    this.jobs.set(job.jobId, entry);
    this.order.push(entry);
    this.sortQueue();
  }

  hasJob(jobId: string): boolean {
    return this.jobs.has(jobId);
  }

  counts(jobId: string): JobCounts | undefined {
    const entry = this.jobs.get(jobId);
    if (!entry) return undefined;
    const rendering = entry.inFlight.size;
    const queued = entry.open.size - rendering;
    return { total: entry.open.size + entry.done + entry.failed, queued, rendering, done: entry.done, failed: entry.failed };
  }

  /** Whether any frame of the job was ever handed out or finished (render settings are then fixed). */
  hasStarted(jobId: string): boolean {
    const entry = this.jobs.get(jobId);
    return entry !== undefined && (entry.next > 0 || entry.done + entry.failed > 0 || entry.inFlight.size > 0);
  }

  /** Removes a job (cancelled or deleted) and returns the renders that should be stopped. */
  removeJob(jobId: string): Assignment[] {
    const entry = this.jobs.get(jobId);
    if (!entry) return [];
    const stop = this.inFlightOf(entry);
    for (const a of stop) this.held.get(a.workerId)?.delete(key(jobId, a.frame));
    this.jobs.delete(jobId);
    this.order = this.order.filter((e) => e !== entry);
    return stop;
  }

  setPriority(jobId: string, priority: number): void {
    const entry = this.jobs.get(jobId);
    if (!entry) return;
    entry.priority = priority;
    this.sortQueue();
  }

  setPaused(jobId: string, paused: boolean): void {
    const entry = this.jobs.get(jobId);
    if (entry) entry.paused = paused;
  }

  workerReady(workerId: string): void {
    if (!this.held.has(workerId)) this.held.set(workerId, new Set());
    this.idle.add(workerId);
  }

  /** The worker stopped taking work (disabled, draining) but its renders go on. */
  workerBusy(workerId: string): void {
    this.idle.delete(workerId);
  }

  isIdle(workerId: string): boolean {
    return this.idle.has(workerId);
  }

  /** The worker is gone: its unfinished frames go back to the front of their jobs. */
  workerLost(workerId: string): Assignment[] {
    this.idle.delete(workerId);
    const returned: Assignment[] = [];
    for (const k of this.held.get(workerId) ?? []) {
      const [jobId, frameText] = splitKey(k);
      const entry = this.jobs.get(jobId);
      if (!entry) continue;
      const frame = Number(frameText);
      const holders = entry.inFlight.get(frame);
      holders?.delete(workerId);
      if (holders && holders.size === 0) {
        entry.inFlight.delete(frame);
        if (entry.open.has(frame)) entry.retry.push(frame);
      }
      returned.push({ workerId, jobId, frame });
    }
    this.held.delete(workerId);
    return returned;
  }

  /** Pairs idle workers with pending frames; call after anything that frees either. */
  dispatch(): Assignment[] {
    const assignments: Assignment[] = [];
    for (const workerId of [...this.idle]) {
      const assignment = this.takeFrameFor(workerId);
      if (!assignment) continue;
      this.idle.delete(workerId);
      assignments.push(assignment);
    }
    return assignments;
  }

  frameDone(jobId: string, frame: number, workerId: string): FrameOutcome {
    const entry = this.jobs.get(jobId);
    if (!entry) return { kind: 'unknown' };
    if (!entry.open.has(frame)) return { kind: 'duplicate' };
    entry.open.delete(frame);
    entry.done++;
    const cancel: Assignment[] = [];
    for (const holder of entry.inFlight.get(frame) ?? []) {
      this.held.get(holder)?.delete(key(jobId, frame));
      if (holder !== workerId) cancel.push({ workerId: holder, jobId, frame });
    }
    entry.inFlight.delete(frame);
    // A frame handed back earlier may still wait in `retry`; it is skipped when taken.
    return { kind: 'accepted', jobFinished: entry.open.size === 0, cancel };
  }

  frameFailed(jobId: string, frame: number, workerId: string): FailureOutcome {
    const entry = this.jobs.get(jobId);
    if (!entry || !entry.open.has(frame)) return { kind: 'unknown' };
    const attempts = (entry.attempts.get(frame) ?? 0) + 1;
    entry.attempts.set(frame, attempts);
    const failures = (entry.failuresByWorker.get(workerId) ?? 0) + 1;
    entry.failuresByWorker.set(workerId, failures);
    if (failures >= this.options.blockAfterFailures) entry.blocked.add(workerId);

    const holders = entry.inFlight.get(frame);
    holders?.delete(workerId);
    this.held.get(workerId)?.delete(key(jobId, frame));
    const stillRendering = holders !== undefined && holders.size > 0;
    if (!stillRendering) entry.inFlight.delete(frame);

    if (attempts < this.options.maxAttempts) {
      if (!stillRendering) entry.retry.push(frame);
      return { kind: 'requeued', attempts };
    }
    if (stillRendering) return { kind: 'requeued', attempts };
    entry.open.delete(frame);
    entry.failed++;
    return { kind: 'failed', attempts, jobFinished: entry.open.size === 0 };
  }

  /** Workers that may not take frames of this job after repeated failures there. */
  blockedWorkers(jobId: string): string[] {
    return [...(this.jobs.get(jobId)?.blocked ?? [])];
  }

  pendingCount(jobId: string): number {
    const entry = this.jobs.get(jobId);
    if (!entry) return 0;
    return entry.fresh.length - entry.next + entry.retry.filter((f) => entry.open.has(f)).length;
  }

  private takeFrameFor(workerId: string): Assignment | null {
    for (const entry of this.order) {
      if (entry.paused || entry.blocked.has(workerId)) continue;
      const frame = this.takePending(entry);
      if (frame === undefined) continue;
      let holders = entry.inFlight.get(frame);
      if (!holders) entry.inFlight.set(frame, (holders = new Set()));
      holders.add(workerId);
      this.held.get(workerId)?.add(key(entry.jobId, frame));
      return { workerId, jobId: entry.jobId, frame };
    }
    return null;
  }

  private takePending(entry: JobEntry): number | undefined {
    while (entry.retry.length > 0) {
      const frame = entry.retry.shift()!;
      if (entry.open.has(frame) && !entry.inFlight.has(frame)) return frame;
    }
    while (entry.next < entry.fresh.length) {
      const frame = entry.fresh[entry.next++]!;
      if (entry.open.has(frame) && !entry.inFlight.has(frame)) return frame;
    }
    return undefined;
  }

  private inFlightOf(entry: JobEntry): Assignment[] {
    const result: Assignment[] = [];
    for (const [frame, holders] of entry.inFlight) {
      for (const workerId of holders) result.push({ workerId, jobId: entry.jobId, frame });
    }
    return result;
  }

  private sortQueue(): void {
    this.order.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
  }
}

function splitKey(k: string): [string, string] {
  const i = k.lastIndexOf('#');
  return [k.slice(0, i), k.slice(i + 1)];
}
