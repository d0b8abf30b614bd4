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
  /** frame -> workers currently rendering it -> when each started. */
  inFlight: Map<number, Map<string, number>>;
  attempts: Map<number, number>;
  /** Frames neither done nor finally failed; the job is finished when this reaches 0. */
  open: Set<number>;
  /** Workers that failed this job too often (issue: blocklist); they get none of its frames. */
  blocked: Set<string>;
  failuresByWorker: Map<string, number>;
  /** frame -> workers it failed on, so a retry goes to another worker when there is one. */
  failedOn: Map<number, Set<string>>;
  done: number;
  failed: number;
}

export interface SchedulerOptions {
  /** A frame is tried until it has failed this many times in all. */
  maxAttempts: number;
  /** A worker that fails this many frames of one job gets no more of that job. */
  blockAfterFailures: number;
  /**
   * At the tail of the queue, an idle worker takes a copy of the frame expected to finish
   * last, when it would likely finish it sooner; the first result wins.
   */
  duplicateTail?: boolean;
  /** Milliseconds clock; injectable so tests control time. */
  now?: () => number;
}

/** Weight of the newest frame in a worker's running average of frame times. */
const SPEED_WEIGHT = 0.3;

const key = (jobId: string, frame: number) => `${jobId}#${frame}`;

export class Scheduler {
  private readonly jobs = new Map<string, JobEntry>();
  private order: JobEntry[] = [];
  private readonly idle = new Set<string>();
  /** Workers told to take no work (disabled, draining): they cannot take a retry either. */
  private readonly parked = new Set<string>();
  /** worker -> "job#frame" keys it holds, to hand them back if it vanishes. */
  private readonly held = new Map<string, Set<string>>();

  /** worker -> running average of its frame times (ms), learnt from finished frames. */
  private readonly averageMs = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: SchedulerOptions) {
    this.now = options.now ?? (() => performance.now());
  }

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
      failedOn: new Map(),
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
    this.parked.delete(workerId);
    this.idle.add(workerId);
  }

  /** The worker stopped taking work (disabled, draining) but its renders go on. */
  workerParked(workerId: string): void {
    this.idle.delete(workerId);
    this.parked.add(workerId);
  }

  isIdle(workerId: string): boolean {
    return this.idle.has(workerId);
  }

  /** The worker is gone: its unfinished frames go back to the front of their jobs. */
  workerLost(workerId: string): Assignment[] {
    this.idle.delete(workerId);
    this.parked.delete(workerId);
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

  /**
   * A reconnecting worker still holds a frame it finished while it was away (its upload
   * is on the way): it is marked as the worker's again, so nobody renders it twice.
   */
  claim(jobId: string, frame: number, workerId: string): boolean {
    const entry = this.jobs.get(jobId);
    if (!entry || !entry.open.has(frame) || entry.inFlight.has(frame)) return false;
    if (!this.held.has(workerId)) this.held.set(workerId, new Set());
    entry.inFlight.set(frame, new Map([[workerId, this.now()]]));
    this.held.get(workerId)!.add(key(jobId, frame));
    return true;
  }

  /** The worker gives a frame back unrendered (it cannot take it now): no attempt is counted. */
  handBack(jobId: string, frame: number, workerId: string): boolean {
    const entry = this.jobs.get(jobId);
    const holders = entry?.inFlight.get(frame);
    if (!entry || !holders?.delete(workerId)) return false;
    this.held.get(workerId)?.delete(key(jobId, frame));
    if (holders.size === 0) {
      entry.inFlight.delete(frame);
      if (entry.open.has(frame)) entry.retry.unshift(frame);
    }
    return true;
  }

  /** Pairs idle workers with pending frames; call after anything that frees either. */
  dispatch(): Assignment[] {
    const assignments: Assignment[] = [];
    for (const workerId of [...this.idle]) {
      const assignment = this.takeFrameFor(workerId) ?? this.takeDuplicateFor(workerId);
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
    const holders = entry.inFlight.get(frame);
    const startedAt = holders?.get(workerId);
    if (startedAt !== undefined) this.recordDuration(workerId, this.now() - startedAt);
    for (const holder of holders?.keys() ?? []) {
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
    let failedOn = entry.failedOn.get(frame);
    if (!failedOn) entry.failedOn.set(frame, (failedOn = new Set()));
    failedOn.add(workerId);
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
      const frame = this.takePending(entry, workerId);
      if (frame === undefined) continue;
      let holders = entry.inFlight.get(frame);
      if (!holders) entry.inFlight.set(frame, (holders = new Map()));
      holders.set(workerId, this.now());
      this.held.get(workerId)?.add(key(entry.jobId, frame));
      return { workerId, jobId: entry.jobId, frame };
    }
    return null;
  }

  private takePending(entry: JobEntry, workerId: string): number | undefined {
    for (let i = 0; i < entry.retry.length; ) {
      const frame = entry.retry[i]!;
      if (!entry.open.has(frame) || entry.inFlight.has(frame)) {
        entry.retry.splice(i, 1);
        continue;
      }
      if (this.othersCouldTake(entry, frame, workerId)) {
        i++;
        continue;
      }
      entry.retry.splice(i, 1);
      return frame;
    }
    while (entry.next < entry.fresh.length) {
      const frame = entry.fresh[entry.next++]!;
      if (entry.open.has(frame) && !entry.inFlight.has(frame)) return frame;
    }
    return undefined;
  }

  /**
   * Nothing is left to hand out: copy the running frame with the most time left, if this
   * worker would likely finish it sooner than its holder. Time left is the holder's
   * average minus time spent; for a frame already running longer than that, or on a
   * worker not yet measured, it is guessed as long again as it has run so far.
   */
  private takeDuplicateFor(workerId: string): Assignment | null {
    if (!this.options.duplicateTail) return null;
    const mine = this.averageMs.get(workerId);
    if (mine === undefined) return null; // unmeasured: no grounds to think it is faster
    const now = this.now();
    let best: { entry: JobEntry; frame: number; left: number } | null = null;
    for (const entry of this.order) {
      if (entry.paused || entry.blocked.has(workerId)) continue;
      for (const [frame, holders] of entry.inFlight) {
        if (holders.size !== 1 || holders.has(workerId)) continue;
        const [[holder, startedAt]] = holders;
        const elapsed = now - startedAt;
        const expected = this.averageMs.get(holder);
        const left = expected !== undefined && expected > elapsed ? expected - elapsed : elapsed;
        if (!best || left > best.left) best = { entry, frame, left };
      }
    }
    if (!best || mine >= best.left) return null;
    best.entry.inFlight.get(best.frame)!.set(workerId, now);
    this.held.get(workerId)?.add(key(best.entry.jobId, best.frame));
    return { workerId, jobId: best.entry.jobId, frame: best.frame };
  }

  private recordDuration(workerId: string, ms: number): void {
    const previous = this.averageMs.get(workerId);
    this.averageMs.set(workerId, previous === undefined ? ms : previous + SPEED_WEIGHT * (ms - previous));
  }

  /** True when this worker failed the frame before and another known worker has not. */
  private othersCouldTake(entry: JobEntry, frame: number, workerId: string): boolean {
    const failedOn = entry.failedOn.get(frame);
    if (!failedOn?.has(workerId)) return false;
    for (const other of this.held.keys()) {
      if (!failedOn.has(other) && !entry.blocked.has(other) && !this.parked.has(other)) return true;
    }
    return false;
  }

  private inFlightOf(entry: JobEntry): Assignment[] {
    const result: Assignment[] = [];
    for (const [frame, holders] of entry.inFlight) {
      for (const workerId of holders.keys()) result.push({ workerId, jobId: entry.jobId, frame });
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
