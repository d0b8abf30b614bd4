import { ErrorTally } from './hopeless.ts';
import type { JobTilingPlan } from '../jobs/index.ts';
import { tileCount, type FrameOrder, type TileGrid, type TileRegion } from '../protocol/index.ts';
import { orderFrames } from './frame-order.ts';

/**
 * What the scheduler keeps per job, and the small pure functions that read one entry. The
 * scheduler (scheduler.ts) holds the entries of every queued job and the workers' state.
 */

export interface Assignment {
  workerId: string;
  jobId: string;
  frame: number;
  /** Present when the worker renders one tile of the frame rather than all of it. */
  tile?: TileRegion;
}

export interface QueuedJob {
  jobId: string;
  /** Higher first; ties go to the lower sequence number (earlier submission). */
  priority: number;
  seq: number;
  /** Frames still to render, in frame order. */
  frames: number[];
  /** The order they are handed out in; `interleaved` (first, last, middle, …) when absent. */
  order?: FrameOrder;
  /** Frames of the job already finished before it was (re)queued, for its counts. */
  done?: number;
  failed?: number;
  paused?: boolean;
  /** How frames may be split into tiles; whole frames when absent. */
  tiling?: JobTilingPlan;
  /** The job runs the .blend's Python: only workers that allow scripts may take it. */
  needsScripts?: boolean;
  /** At most this many workers render the job at once; no limit when absent. */
  maxWorkers?: number;
  /** Only workers with every one of these tags may take it. */
  requiredTags?: string[];
  /** Only workers with a Blender of this release ("4.2") may take it; any when absent. */
  blender?: string | null;
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
  /** `stitch`: that was the last tile of a split frame; the farm stitches, then calls `frameStitched`. */
  | { kind: 'accepted'; jobFinished: boolean; cancel: Assignment[]; stitch: boolean }
  | { kind: 'duplicate' }
  /** The worker was never given this frame or tile: its result is refused. */
  | { kind: 'not_assigned' }
  | { kind: 'unknown' };

export type FailureOutcome =
  | { kind: 'requeued'; attempts: number }
  /** `cancel`: other tiles of the frame still rendering, now pointless. */
  | { kind: 'failed'; attempts: number; jobFinished: boolean; cancel: Assignment[] }
  | { kind: 'unknown' };

/** The tiles of a split frame. */
export interface SplitFrame {
  grid: TileGrid;
  regions: TileRegion[];
  done: Set<number>;
  /** Tile render times so far, for the frame's total. */
  renderMs: number;
}

export interface JobEntry {
  jobId: string;
  priority: number;
  seq: number;
  paused: boolean;
  tiling: JobTilingPlan;
  needsScripts: boolean;
  maxWorkers: number | undefined;
  requiredTags: string[];
  blender: string | null;
  /** worker -> units of this job it renders now: the workers on the job, for maxWorkers. */
  workersOn: Map<string, number>;
  /** Frames never handed out; consumed from `next` so no array shifting on 100k frames. */
  fresh: number[];
  next: number;
  /** Units handed back (worker lost or failed) go ahead of fresh ones; tiles of split frames next. */
  retry: string[];
  tileQueue: string[];
  /** unit -> workers currently rendering it -> when each started. */
  inFlight: Map<string, Map<string, number>>;
  /**
   * unit -> every worker it was handed to (or claimed by) while its frame is open: only
   * they may deliver or fail it, even after it went elsewhere (a late result still wins).
   */
  assignedTo: Map<string, Set<string>>;
  /** Whole frames (not tiles) in flight, so counts cost nothing. */
  wholeInFlight: number;
  split: Map<number, SplitFrame>;
  /** Split frames whose tiles are all in, waiting for the farm's stitch. */
  stitching: Set<number>;
  attempts: Map<string, number>;
  /** Frames neither done nor finally failed; the job is finished when this reaches 0. */
  open: Set<number>;
  /** Workers that failed this job too often (issue: blocklist); they get none of its frames. */
  blocked: Set<string>;
  /** worker -> the frames it failed in this job; enough of them bar it from the job. */
  failedFramesByWorker: Map<string, Set<number>>;
  /** unit -> workers it failed on, so a retry goes to another worker when there is one. */
  failedOn: Map<string, Set<string>>;
  /** Failures by error, to tell the scene's errors from a worker's (hopeless.ts). */
  errors: ErrorTally;
  /** Set once the same error came from several workers: the scene cannot render. */
  sceneError: string | null;
  lastError: string | null;
  /** Running average of one whole frame's render time in this job (tiles scaled up). */
  frameMs: number | undefined;
  done: number;
  failed: number;
}

/** A unit of work within a job: "12" is frame 12, "12/3" its tile 3. */
export const unitKey = (frame: number, tile?: number) => (tile === undefined ? `${frame}` : `${frame}/${tile}`);
export function parseUnit(unit: string): { frame: number; tile?: number } {
  const slash = unit.indexOf('/');
  return slash < 0 ? { frame: Number(unit) } : { frame: Number(unit.slice(0, slash)), tile: Number(unit.slice(slash + 1)) };
}
export const heldKey = (jobId: string, unit: string) => `${jobId}#${unit}`;

/** A job as the scheduler first holds it: every frame fresh and open. */
export function newJobEntry(job: QueuedJob): JobEntry {
  return {
    jobId: job.jobId,
    priority: job.priority,
    seq: job.seq,
    paused: job.paused ?? false,
    tiling: job.tiling ?? { mode: 'off' },
    needsScripts: job.needsScripts ?? false,
    maxWorkers: job.maxWorkers,
    requiredTags: job.requiredTags ?? [],
    blender: job.blender ?? null,
    workersOn: new Map(),
    fresh: orderFrames(job.frames, job.order ?? 'interleaved'),
    next: 0,
    retry: [],
    tileQueue: [],
    inFlight: new Map(),
    assignedTo: new Map(),
    wholeInFlight: 0,
    split: new Map(),
    stitching: new Set(),
    attempts: new Map(),
    open: new Set(job.frames),
    blocked: new Set(),
    failedFramesByWorker: new Map(),
    failedOn: new Map(),
    errors: new ErrorTally(),
    sceneError: null,
    lastError: null,
    frameMs: undefined,
    done: job.done ?? 0,
    failed: job.failed ?? 0,
  };
}

/** The frame is settled or starts over: who was given it, or its tiles, no longer matters. */
export function forgetAssignments(entry: JobEntry, frame: number): void {
  entry.assignedTo.delete(unitKey(frame));
  for (const { index } of entry.split.get(frame)?.regions ?? []) entry.assignedTo.delete(unitKey(frame, index));
}


/** Whether a unit still needs rendering: its frame is open and, for a tile, the tile is not in. */
export function isOpenUnit(entry: JobEntry, unit: string): boolean {
  const { frame, tile } = parseUnit(unit);
  if (!entry.open.has(frame)) return false;
  const split = entry.split.get(frame);
  if (tile === undefined) return split === undefined;
  return split !== undefined && tile < split.regions.length && !split.done.has(tile);
}


/** The part of a whole frame a unit is: 1 for a frame, 1/N for one of N tiles. */
export function shareOf(entry: JobEntry, unit: string): number {
  const { frame, tile } = parseUnit(unit);
  const split = tile === undefined ? undefined : entry.split.get(frame);
  return split ? 1 / tileCount(split.grid) : 1;
}


export function assignmentOf(entry: JobEntry, workerId: string, unit: string): Assignment {
  const { frame, tile } = parseUnit(unit);
  const region = tile === undefined ? undefined : entry.split.get(frame)?.regions[tile];
  return region ? { workerId, jobId: entry.jobId, frame, tile: region } : { workerId, jobId: entry.jobId, frame };
}

/** A worker starts rendering a unit of the job (a copy, if others render it too). */
export function addHolder(entry: JobEntry, unit: string, workerId: string, now: number): void {
  let holders = entry.inFlight.get(unit);
  if (!holders) {
    entry.inFlight.set(unit, (holders = new Map()));
    if (!unit.includes('/')) entry.wholeInFlight++;
  }
  if (!holders.has(workerId)) entry.workersOn.set(workerId, (entry.workersOn.get(workerId) ?? 0) + 1);
  holders.set(workerId, now);
  let assigned = entry.assignedTo.get(unit);
  if (!assigned) entry.assignedTo.set(unit, (assigned = new Set()));
  assigned.add(workerId);
}

/** A worker stops rendering a unit; true when nobody renders it any more. */
export function dropHolder(entry: JobEntry, unit: string, workerId: string): boolean {
  const holders = entry.inFlight.get(unit);
  if (!holders) return true;
  if (holders.delete(workerId)) {
    const units = (entry.workersOn.get(workerId) ?? 1) - 1;
    if (units > 0) entry.workersOn.set(workerId, units);
    else entry.workersOn.delete(workerId);
  }
  if (holders.size > 0) return false;
  entry.inFlight.delete(unit);
  if (!unit.includes('/')) entry.wholeInFlight--;
  return true;
}

/** The queue's order (`fifo`): priority first, then submission. */
export const queueFirst = (a: JobEntry, b: JobEntry) => b.priority - a.priority || a.seq - b.seq;

/**
 * The queue as `fair` serves it: priority still first; within a priority, the job with
 * the fewest workers on it, then the earliest. Sorted per idle worker, since each worker
 * handed out changes the counts; a copy of a queue of jobs, not of frames, so cheap.
 */
export const fairFirst = (a: JobEntry, b: JobEntry) => b.priority - a.priority || a.workersOn.size - b.workersOn.size || a.seq - b.seq;
