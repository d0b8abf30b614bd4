import { tileBlockers } from '../jobs/index.ts';
import { frameStateLetters, runsOf } from '../protocol/index.ts';
import type { Asleep, FrameColumns, FrameCounts, Frame, Job, Worker, JobState, FrameState, SceneInfo } from '../protocol/index.ts';
import type { FrameSummaryRow, JobRow, WorkerRow } from '../store/index.ts';
import type { FrameColumnRows } from '../store/store.ts';
import { jobRecord, type StoredRequest } from './job-record.ts';

/** Turns stored rows into the API's shapes; the only place that knows both. */
export const emptyCounts = (): FrameCounts => ({ total: 0, queued: 0, rendering: 0, done: 0, failed: 0 });

export interface JobTimes {
  averageFrameMs: number | null;
  etaMs: number | null;
}

export function jobView(row: JobRow, counts: FrameCounts = emptyCounts(), times: JobTimes = { averageFrameMs: null, etaMs: null }): Job {
  const { scene, request: submitted, overrides, allowScripts } = jobRecord(row);
  return {
    id: row.id,
    name: row.name,
    state: row.state as JobState,
    priority: row.priority,
    allowScripts,
    blendSha256: row.blend_sha256,
    blendSize: row.blend_size,
    projectId: row.project_id,
    requested: requestedView(submitted),
    tiling: tilingView(submitted, scene),
    order: submitted.order ?? 'interleaved',
    maxWorkers: submitted.maxWorkers ?? null,
    requiredTags: submitted.requiredTags ?? [],
    blenderRequested: submitted.blender ?? null,
    blender: row.blender_version ?? submitted.blender ?? null,
    scene,
    frames:
      row.frame_start === null || row.frame_end === null
        ? null
        : { start: row.frame_start, end: row.frame_end, step: row.frame_step ?? 1 },
    fps: row.fps,
    overrides,
    fileExtension: row.file_extension,
    counts,
    ...times,
    videoReady: row.video_file !== null,
    error: row.error,
    notice: null,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

/**
 * The render settings the user asked for, without submission-only flags such as `hold`.
 * A setting reset to the scene's own (null, from an edit) is left out, as if never asked.
 */
function requestedView(submitted: StoredRequest): Job['requested'] {
  const { frames, fileFormat, resolutionPercentage, samples } = submitted;
  const requested: Job['requested'] = {};
  if (frames) requested.frames = frames;
  if (fileFormat) requested.fileFormat = fileFormat;
  if (resolutionPercentage != null) requested.resolutionPercentage = resolutionPercentage;
  if (samples != null) requested.samples = samples;
  return requested;
}

function tilingView(submitted: StoredRequest, scene: SceneInfo | null): Job['tiling'] {
  const requested = submitted.tiles ?? 'auto';
  const forced = submitted.forceTiles ?? false;
  const format = submitted.fileFormat ?? scene?.fileFormat;
  const blockers = requested === 'off' || !scene || !format ? [] : tileBlockers(scene, format, forced);
  return { requested, forced, blockers };
}

export function frameView(row: FrameSummaryRow, progress = 0, tiles: Frame['tiles'] = null): Frame {
  const state = row.state as FrameState;
  return {
    jobId: row.job_id,
    number: row.number,
    state,
    workerId: row.worker_id,
    attempts: row.attempts,
    progress: state === 'done' ? 100 : state === 'rendering' ? progress : 0,
    renderMs: row.render_ms,
    error: row.error,
    finishedAt: row.finished_at,
    tiles,
    blenderVersion: row.blender_version,
  };
}

/** What a frame being rendered shows besides its stored row; it lives in memory. */
export type LiveFrameDetail = Pick<Frame, 'progress' | 'tiles'>;

/**
 * The web UI's frame columns, from stored columns and the live detail of the frames being
 * rendered (a split frame is stored as rendering until it is stitched). One pass, no
 * object per frame.
 */
export function frameColumnsView(
  job: Job,
  stored: FrameColumnRows,
  freshness: Pick<FrameColumns, 'cursor' | 'partial'>,
  liveDetail: (frame: number, workerId: string | null) => LiveFrameDetail,
): FrameColumns {
  const workerIds: string[] = [];
  const workerIndex = new Map<string, number>();
  const indexOfWorker = (id: string | null): number => {
    if (id === null) return -1;
    let index = workerIndex.get(id);
    if (index === undefined) workerIndex.set(id, (index = workerIds.push(id) - 1));
    return index;
  };
  const timeBase = stored.finishedAt.reduce<number>((min, t) => (t !== null && t < min ? t : min), Infinity);
  const columns: FrameColumns = {
    job,
    ...freshness,
    runs: runsOf(stored.numbers),
    states: stored.stateLetters,
    workerIds,
    workers: stored.workerIds.map(indexOfWorker),
    attempts: stored.attempts,
    renderMs: stored.renderMs,
    timeBase: Number.isFinite(timeBase) ? timeBase : 0,
    finishedAt: stored.finishedAt.map((t) => (t === null ? null : t - timeBase)),
    errors: [],
    progress: [],
    tiles: [],
  };
  stored.errors.forEach((error, i) => error !== null && columns.errors.push([i, error]));
  const rendering = frameStateLetters.rendering;
  for (let i = stored.stateLetters.indexOf(rendering); i !== -1; i = stored.stateLetters.indexOf(rendering, i + 1)) {
    const { progress, tiles } = liveDetail(stored.numbers[i]!, stored.workerIds[i]!);
    if (progress > 0) columns.progress.push([i, progress]);
    if (tiles) columns.tiles.push([i, tiles]);
  }
  return columns;
}

export interface LiveWorkerState {
  connected: boolean;
  current: { jobId: string; frame: number; tile?: number; tiles?: number; percent: number } | null;
  asleep?: Asleep | null;
  tags?: string[];
  device?: { type: string; devices: string[] } | null;
  blenders?: string[];
}

/** Tags set on the server for a worker (the one place its JSON column is read); null: none set. */
export function serverTagsOf(row: WorkerRow): string[] | null {
  return row.tags_json === null ? null : (JSON.parse(row.tags_json) as string[]);
}

export function workerView(row: WorkerRow, live: LiveWorkerState | undefined): Worker {
  const state = !live?.connected ? 'offline' : live.current ? 'rendering' : 'idle';
  const serverTags = serverTagsOf(row);
  return {
    id: row.id,
    name: row.name,
    host: row.host,
    state,
    enabled: row.enabled === 1,
    threads: row.threads,
    tags: live?.connected ? (live.tags ?? []) : (serverTags ?? []),
    tagsSetOnServer: serverTags !== null,
    blenderVersion: row.blender_version,
    blenders: live?.connected ? (live.blenders ?? []) : [],
    current: live?.connected ? live.current : null,
    framesRendered: row.frames_rendered,
    averageFrameMs: row.frames_rendered > 0 ? Math.round(row.render_ms_total / row.frames_rendered) : null,
    asleep: live?.connected ? (live.asleep ?? null) : null,
    asleepUntil: live?.connected ? (live.asleep?.until ?? null) : null,
    device: live?.connected ? (live.device ?? null) : null,
    lastSeenAt: row.last_seen_at,
  };
}
