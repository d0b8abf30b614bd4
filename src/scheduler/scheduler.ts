/**
 * Decides which frame, or which tile of a frame, each free worker renders next. Pure
 * bookkeeping, no I/O: the farm applies its decisions to the store and the sockets, and
 * tests drive it directly.
 *
 * Workers pull: a worker that says it is ready joins the idle set, and `dispatch` pairs
 * idle workers with pending work in queue order (priority, then submission), so fast
 * workers come back sooner and render more frames. When the first job in the queue has
 * nothing left to hand out, idle workers flow on to the next job.
 *
 * The unit of work is a whole frame or one tile of a split frame (see tile-policy.ts).
 * Units are retried, handed back and duplicated alike; a split frame is done once every
 * tile is in and the farm has stitched them (`frameStitched`).
 */
import { tileRegions, type FrameState, type TileGrid } from '../protocol/index.ts';
import {
  addHolder,
  assignmentOf,
  dropHolder,
  fairFirst,
  queueFirst,
  forgetAssignments,
  heldKey,
  isOpenUnit,
  newJobEntry,
  parseUnit,
  shareOf,
  unitKey,
  type Assignment,
  type FailureOutcome,
  type FrameOutcome,
  type JobCounts,
  type JobEntry,
  type QueuedJob,
} from './job-entry.ts';
import { hopelessReason, recordFailure } from './hopeless.ts';
import { tailCandidates } from './tail-copies.ts';

export type { Assignment, FailureOutcome, FrameOutcome, JobCounts, QueuedJob } from './job-entry.ts';
import { chooseSplit } from './tile-policy.ts';
import { canRender, noTraits, type WorkerTraits } from './eligibility.ts';

export interface SchedulerOptions {
  /** A frame (or tile) is tried until it has failed this many times in all. */
  maxAttempts: number;
  /**
   * A worker that fails this many different frames of one job gets no more of that job
   * (one frame failing again and again says more about the frame than the worker).
   */
  blockAfterFailures: number;
  /**
   * At the tail of the queue, an idle worker takes a copy of the unit expected to finish
   * last, when it would likely finish it sooner; the first result wins.
   */
  duplicateTail?: boolean;
  /**
   * `fifo` (default): among jobs of the same priority the earliest submitted takes every
   * idle worker it can use. `fair`: each idle worker goes to the job with the fewest
   * workers on it, so jobs of the same priority split the farm evenly.
   */
  queuePolicy?: QueuePolicy;
  /** Milliseconds clock; injectable so tests control time. */
  now?: () => number;
}

export type QueuePolicy = 'fifo' | 'fair';

/** Weight of the newest frame in a running average of frame times. */
const SPEED_WEIGHT = 0.3;

export class Scheduler {
  private readonly jobs = new Map<string, JobEntry>();
  private order: JobEntry[] = [];
  private readonly idle = new Set<string>();
  /** Workers told to take no work (disabled, draining): they cannot take a retry either. */
  private readonly parked = new Set<string>();
  /** worker -> "job#unit" keys it holds, to hand them back if it vanishes. */
  private readonly held = new Map<string, Set<string>>();

  /** worker -> what it has that jobs may need (scripts allowed, tags, Blender versions). */
  private readonly traits = new Map<string, WorkerTraits>();

  /** worker -> running average of its whole-frame times (ms), learnt from finished work. */
  private readonly averageMs = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: SchedulerOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  addJob(job: QueuedJob): void {
    if (this.jobs.has(job.jobId)) throw new Error(`job ${job.jobId} is already queued`);
    const entry = newJobEntry(job);
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
    // A split frame counts as rendering from its split until it is stitched.
    const rendering = entry.wholeInFlight + entry.split.size;
    const queued = entry.open.size - rendering;
    return { total: entry.open.size + entry.done + entry.failed, queued, rendering, done: entry.done, failed: entry.failed };
  }

  /** Whether any frame of the job was ever handed out or finished (render settings are then fixed). */
  hasStarted(jobId: string): boolean {
    const entry = this.jobs.get(jobId);
    return entry !== undefined && (entry.next > 0 || entry.done + entry.failed > 0 || entry.inFlight.size > 0);
  }

  /** Whether the frame is still to be finished (queued, rendering, or split and not yet stitched). */
  isOpen(jobId: string, frame: number): boolean {
    return this.jobs.get(jobId)?.open.has(frame) ?? false;
  }

  /** Whether the worker was given this frame (or tile) while it is open: only then may it deliver it. */
  wasAssigned(jobId: string, frame: number, workerId: string, tile?: number): boolean {
    return this.jobs.get(jobId)?.assignedTo.get(unitKey(frame, tile))?.has(workerId) ?? false;
  }

  /** The tiles of a split frame and how each stands; null for a frame rendered whole. */
  tilesOf(jobId: string, frame: number): { grid: TileGrid; states: FrameState[] } | null {
    const entry = this.jobs.get(jobId);
    const split = entry?.split.get(frame);
    if (!entry || !split) return null;
    const states = split.regions.map(({ index }): FrameState => {
      if (split.done.has(index)) return 'done';
      return entry.inFlight.has(unitKey(frame, index)) ? 'rendering' : 'queued';
    });
    return { grid: split.grid, states };
  }

  /** Total render time of a split frame's tiles, once they are all in. */
  tileRenderMs(jobId: string, frame: number): number | undefined {
    return this.jobs.get(jobId)?.split.get(frame)?.renderMs;
  }

  /** Removes a job (cancelled or deleted) and returns the renders that should be stopped. */
  removeJob(jobId: string): Assignment[] {
    const entry = this.jobs.get(jobId);
    if (!entry) return [];
    const stop: Assignment[] = [];
    for (const [unit, holders] of entry.inFlight) {
      for (const workerId of holders.keys()) {
        this.held.get(workerId)?.delete(heldKey(jobId, unit));
        stop.push(assignmentOf(entry, workerId, unit));
      }
    }
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

  /** Changes how many workers may render the job at once (undefined: no limit); renders under way go on. */
  setMaxWorkers(jobId: string, maxWorkers: number | undefined): void {
    const entry = this.jobs.get(jobId);
    if (entry) entry.maxWorkers = maxWorkers;
  }

  setPaused(jobId: string, paused: boolean): void {
    const entry = this.jobs.get(jobId);
    if (entry) entry.paused = paused;
  }

  /** Whether the worker runs jobs that need scripts; told once when it connects. */
  setScriptsAllowed(workerId: string, allowed: boolean): void {
    this.setTraits(workerId, { allowScripts: allowed });
  }

  /** The worker's tags; told when it connects. */
  setWorkerTags(workerId: string, tags: readonly string[]): void {
    this.setTraits(workerId, { tags: new Set(tags) });
  }

  /** The versions of the worker's Blender installations; told when it connects. */
  setWorkerBlenders(workerId: string, versions: readonly string[]): void {
    this.setTraits(workerId, { blenders: [...versions] });
  }

  private setTraits(workerId: string, change: Partial<WorkerTraits>): void {
    this.traits.set(workerId, { ...(this.traits.get(workerId) ?? noTraits()), ...change });
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

  /** The worker is gone: its unfinished units go back to the front of their jobs. */
  workerLost(workerId: string): Assignment[] {
    this.idle.delete(workerId);
    this.parked.delete(workerId);
    const returned: Assignment[] = [];
    for (const k of this.held.get(workerId) ?? []) {
      const hash = k.lastIndexOf('#');
      const entry = this.jobs.get(k.slice(0, hash));
      if (!entry) continue;
      const unit = k.slice(hash + 1);
      returned.push(assignmentOf(entry, workerId, unit));
      if (this.dropHolder(entry, unit, workerId) && isOpenUnit(entry, unit)) entry.retry.push(unit);
    }
    this.held.delete(workerId);
    return returned;
  }

  /**
   * A reconnecting worker still holds a frame (or tile) it finished while it was away (its
   * upload is on the way): it is marked as the worker's again, so nobody renders it twice.
   */
  claim(jobId: string, frame: number, workerId: string, tile?: number): boolean {
    const entry = this.jobs.get(jobId);
    const unit = unitKey(frame, tile);
    if (!entry || !isOpenUnit(entry, unit) || entry.inFlight.has(unit)) return false;
    if (!this.held.has(workerId)) this.held.set(workerId, new Set());
    this.addHolder(entry, unit, workerId);
    return true;
  }

  /** The worker gives a unit back unrendered (it cannot take it now): no attempt is counted. */
  handBack(jobId: string, frame: number, workerId: string, tile?: number): boolean {
    const entry = this.jobs.get(jobId);
    const unit = unitKey(frame, tile);
    if (!entry || !entry.inFlight.get(unit)?.has(workerId)) return false;
    if (this.dropHolder(entry, unit, workerId) && isOpenUnit(entry, unit)) entry.retry.unshift(unit);
    return true;
  }

  /** Pairs idle workers with pending units; call after anything that frees either. */
  dispatch(): Assignment[] {
    const assignments: Assignment[] = [];
    const unserved: string[] = [];
    for (const workerId of [...this.idle]) {
      const assignment = this.takeWorkFor(workerId);
      if (assignment) {
        this.idle.delete(workerId);
        assignments.push(assignment);
      } else unserved.push(workerId);
    }
    if (this.options.duplicateTail && unserved.length > 0) {
      for (const copy of this.takeDuplicates(unserved)) {
        this.idle.delete(copy.workerId);
        assignments.push(copy);
      }
    }
    return assignments;
  }

  /** A worker delivered a frame or one tile of it: the first valid result wins. */
  frameDone(jobId: string, frame: number, workerId: string, tile?: number): FrameOutcome {
    const entry = this.jobs.get(jobId);
    if (!entry) return { kind: 'unknown' };
    const unit = unitKey(frame, tile);
    const split = entry.split.get(frame);
    if (!entry.open.has(frame) || (tile === undefined) !== (split === undefined)) return { kind: 'duplicate' };
    if (split && (tile! >= split.regions.length || split.done.has(tile!))) return { kind: 'duplicate' };
    if (!entry.assignedTo.get(unit)?.has(workerId)) return { kind: 'not_assigned' };

    const holders = entry.inFlight.get(unit);
    const startedAt = holders?.get(workerId);
    if (startedAt !== undefined) this.recordDuration(entry, workerId, (this.now() - startedAt) / shareOf(entry, unit));
    const cancel: Assignment[] = [];
    for (const holder of [...(holders?.keys() ?? [])]) {
      if (holder !== workerId) cancel.push(assignmentOf(entry, holder, unit));
      this.dropHolder(entry, unit, holder);
    }
    // A unit handed back earlier may still wait in `retry`; it is skipped when taken.
    if (split) {
      split.done.add(tile!);
      if (startedAt !== undefined) split.renderMs += this.now() - startedAt;
      if (split.done.size < split.regions.length) return { kind: 'accepted', jobFinished: false, cancel, stitch: false };
      entry.stitching.add(frame);
      return { kind: 'accepted', jobFinished: false, cancel, stitch: true };
    }
    forgetAssignments(entry, frame);
    entry.open.delete(frame);
    entry.done++;
    return { kind: 'accepted', jobFinished: entry.open.size === 0, cancel, stitch: false };
  }

  /** The farm stitched a split frame's tiles: the frame is done. */
  frameStitched(jobId: string, frame: number): { jobFinished: boolean } | null {
    const entry = this.jobs.get(jobId);
    if (!entry || !entry.stitching.delete(frame)) return null;
    forgetAssignments(entry, frame);
    entry.split.delete(frame);
    entry.open.delete(frame);
    entry.done++;
    return { jobFinished: entry.open.size === 0 };
  }

  /** Stitching failed (a bad tile, say): the frame starts over, and that counts as an attempt. */
  stitchFailed(jobId: string, frame: number): FailureOutcome {
    const entry = this.jobs.get(jobId);
    if (!entry || !entry.stitching.delete(frame)) return { kind: 'unknown' };
    forgetAssignments(entry, frame);
    entry.split.delete(frame);
    const unit = unitKey(frame);
    const attempts = (entry.attempts.get(unit) ?? 0) + 1;
    entry.attempts.set(unit, attempts);
    if (attempts < this.options.maxAttempts) {
      entry.retry.push(unit);
      return { kind: 'requeued', attempts };
    }
    entry.open.delete(frame);
    entry.failed++;
    return { kind: 'failed', attempts, jobFinished: entry.open.size === 0, cancel: [] };
  }

  frameFailed(jobId: string, frame: number, workerId: string, tile?: number, error = ''): FailureOutcome {
    const entry = this.jobs.get(jobId);
    const unit = unitKey(frame, tile);
    if (!entry || !isOpenUnit(entry, unit) || !entry.assignedTo.get(unit)?.has(workerId)) return { kind: 'unknown' };
    const attempts = recordFailure(entry, { unit, frame, workerId, error }, this.options.blockAfterFailures);
    const wasHolder = entry.inFlight.get(unit)?.has(workerId) ?? false;
    const nobodyLeft = wasHolder ? this.dropHolder(entry, unit, workerId) : !entry.inFlight.has(unit);
    if (attempts < this.options.maxAttempts) {
      if (nobodyLeft) entry.retry.push(unit);
      return { kind: 'requeued', attempts };
    }
    if (!nobodyLeft) return { kind: 'requeued', attempts }; // a copy still runs elsewhere
    return { kind: 'failed', attempts, ...this.failFrame(entry, frame) };
  }

  /**
   * Why the job cannot finish whatever the farm does, or null: the same error came from
   * several workers (the scene is broken), or every connected worker that could render it
   * is barred from it and nothing of it is rendering. With no worker connected a job
   * simply waits.
   */
  hopelessReason(jobId: string, connected: Iterable<string>): string | null {
    const entry = this.jobs.get(jobId);
    if (!entry) return null;
    // Only workers that could render it count: scripts allowed if needed, every required tag, its Blender.
    const candidates = [...connected].filter((w) => canRender(entry, this.traits.get(w)));
    return hopelessReason(entry, candidates, this.options.blockAfterFailures);
  }

  /** Workers that may not take frames of this job after repeated failures there. */
  blockedWorkers(jobId: string): string[] {
    return [...(this.jobs.get(jobId)?.blocked ?? [])];
  }

  /** Units waiting to be handed out (frames never started, retries, tiles of split frames). */
  pendingCount(jobId: string): number {
    const entry = this.jobs.get(jobId);
    if (!entry) return 0;
    const waiting = (units: string[]) => units.filter((u) => isOpenUnit(entry, u) && !entry.inFlight.has(u)).length;
    return entry.fresh.length - entry.next + waiting(entry.retry) + waiting(entry.tileQueue);
  }

  // ---- internals -----------------------------------------------------------------

  private takeWorkFor(workerId: string): Assignment | null {
    for (const entry of this.options.queuePolicy === 'fair' ? this.fairOrder() : this.order) {
      if (!this.mayTake(entry, workerId)) continue;
      const unit = this.takePending(entry, workerId);
      if (unit === undefined) continue;
      this.addHolder(entry, unit, workerId);
      return assignmentOf(entry, workerId, unit);
    }
    return null;
  }

  private takePending(entry: JobEntry, workerId: string): string | undefined {
    const retried = this.takeFrom(entry, entry.retry, workerId);
    if (retried !== undefined) return this.splitIfWanted(entry, retried);
    const tile = this.takeFrom(entry, entry.tileQueue, workerId);
    if (tile !== undefined) return tile;
    while (entry.next < entry.fresh.length) {
      const frame = entry.fresh[entry.next++]!;
      const unit = unitKey(frame);
      if (isOpenUnit(entry, unit) && !entry.inFlight.has(unit)) return this.splitIfWanted(entry, unit);
    }
    return undefined;
  }

  /** Takes the first unit of `queue` still worth rendering that this worker should take. */
  private takeFrom(entry: JobEntry, queue: string[], workerId: string): string | undefined {
    for (let i = 0; i < queue.length; ) {
      const unit = queue[i]!;
      if (!isOpenUnit(entry, unit) || entry.inFlight.has(unit)) {
        queue.splice(i, 1);
        continue;
      }
      if (this.othersCouldTake(entry, unit, workerId)) {
        i++;
        continue;
      }
      queue.splice(i, 1);
      return unit;
    }
    return undefined;
  }

  /** A whole frame about to be handed out may be cut into tiles first; returns the unit to hand out. */
  private splitIfWanted(entry: JobEntry, unit: string): string {
    if (entry.tiling.mode === 'off') return unit;
    const { frame, tile } = parseUnit(unit);
    if (tile !== undefined || entry.split.has(frame)) return unit;
    const framesLeft = 1 + entry.fresh.length - entry.next + entry.retry.length;
    const grid = chooseSplit(entry.tiling, { idleWorkers: this.idle.size, framesLeft, frameMs: entry.frameMs });
    if (!grid) return unit;
    const regions = tileRegions(entry.tiling.frameWidth, entry.tiling.frameHeight, grid);
    entry.split.set(frame, { grid, regions, done: new Set(), renderMs: 0 });
    for (let i = 1; i < regions.length; i++) entry.tileQueue.push(unitKey(frame, i));
    return unitKey(frame, 0);
  }

  /**
   * Nothing is left to hand out: idle workers, fastest first, copy the running units with
   * the most time left (tail-copies.ts), each when it would likely finish it sooner than
   * its holder. The candidates are listed once per dispatch, not once per idle worker: at
   * the tail of a big job hundreds of workers go idle at once.
   */
  private takeDuplicates(workers: string[]): Assignment[] {
    const candidates = tailCandidates(this.order, this.averageMs, this.now());
    if (candidates.length === 0) return [];
    const measured = workers.filter((w) => this.averageMs.has(w)); // unmeasured: no grounds to think it faster
    measured.sort((a, b) => this.averageMs.get(a)! - this.averageMs.get(b)!);
    const copies: Assignment[] = [];
    for (const workerId of measured) {
      const mine = this.averageMs.get(workerId)!;
      const index = candidates.findIndex((c) => c.holder !== workerId && this.mayTake(c.entry, workerId));
      const best = index < 0 ? undefined : candidates[index]!;
      if (!best || mine * best.share >= best.left) continue;
      candidates.splice(index, 1);
      this.addHolder(best.entry, best.unit, workerId);
      copies.push(assignmentOf(best.entry, workerId, best.unit));
    }
    return copies;
  }

  /** Whether the worker may be given work of this job now. */
  private mayTake(entry: JobEntry, workerId: string): boolean {
    return (
      !entry.paused &&
      !entry.blocked.has(workerId) &&
      canRender(entry, this.traits.get(workerId)) &&
      (entry.maxWorkers === undefined || entry.workersOn.size < entry.maxWorkers || entry.workersOn.has(workerId))
    );
  }

  /** A unit failed for good: its frame fails, and other tiles of it stop. */
  private failFrame(entry: JobEntry, frame: number): { jobFinished: boolean; cancel: Assignment[] } {
    const cancel: Assignment[] = [];
    const split = entry.split.get(frame);
    for (const { index } of split?.regions ?? []) {
      const unit = unitKey(frame, index);
      for (const holder of [...(entry.inFlight.get(unit)?.keys() ?? [])]) {
        cancel.push(assignmentOf(entry, holder, unit));
        this.dropHolder(entry, unit, holder);
      }
    }
    forgetAssignments(entry, frame);
    entry.split.delete(frame);
    entry.open.delete(frame);
    entry.failed++;
    return { jobFinished: entry.open.size === 0, cancel };
  }

  private addHolder(entry: JobEntry, unit: string, workerId: string): void {
    addHolder(entry, unit, workerId, this.now());
    this.held.get(workerId)?.add(heldKey(entry.jobId, unit));
  }

  /** Removes one holder of a unit; true when nobody renders the unit any more. */
  private dropHolder(entry: JobEntry, unit: string, workerId: string): boolean {
    this.held.get(workerId)?.delete(heldKey(entry.jobId, unit));
    return dropHolder(entry, unit, workerId);
  }

  private recordDuration(entry: JobEntry, workerId: string, frameMs: number): void {
    const previous = this.averageMs.get(workerId);
    this.averageMs.set(workerId, previous === undefined ? frameMs : previous + SPEED_WEIGHT * (frameMs - previous));
    entry.frameMs = entry.frameMs === undefined ? frameMs : entry.frameMs + SPEED_WEIGHT * (frameMs - entry.frameMs);
  }

  /** True when this worker failed the unit before and another known worker has not. */
  private othersCouldTake(entry: JobEntry, unit: string, workerId: string): boolean {
    const failedOn = entry.failedOn.get(unit);
    if (!failedOn?.has(workerId)) return false;
    for (const other of this.held.keys()) {
      if (!failedOn.has(other) && !entry.blocked.has(other) && !this.parked.has(other)) return true;
    }
    return false;
  }

  private fairOrder(): JobEntry[] {
    return [...this.order].sort(fairFirst);
  }

  private sortQueue(): void {
    this.order.sort(queueFirst);
  }
}
