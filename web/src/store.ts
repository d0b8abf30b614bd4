import { useEffect, useLayoutEffect, useState } from 'preact/hooks';
import {
  changeKey,
  columnIndexOf,
  framesFromColumns,
  type FarmChange,
  type Frame,
  type FrameColumns,
  type FrameCounts,
  type FrameRun,
  type FrameState,
  type Job,
  type ProgressChange,
  type Worker,
} from '../../src/protocol/index.ts';
import { api, ApiError } from './api.ts';
import { LiveConnection, type LiveStatus } from './live.ts';

export interface DetailState {
  id: string;
  status: 'loading' | 'ready' | 'missing' | 'error';
  error: string | null;
  /** Sorted by frame number. */
  frames: Frame[];
  /** The frame numbers of `frames` as runs (see `positionOf`): no entry per frame to build. */
  runs: FrameRun[];
  /** How many of `frames` are in each state, kept as they change: no loop over every frame per render. */
  stateCounts: Record<FrameState, number>;
  latestDone: Frame | null;
  /** The job's frame range when the list was loaded; a different one means reload. */
  rangeKey: string;
  /** Where the server's frame changes stood when the list was read: ask for the frames changed since. */
  cursor: string;
  /**
   * The live connection (its `liveSession`) that has delivered every change since the list
   * was read; 0 when none: the frames changed in between must be fetched once one listens.
   */
  session: number;
}

export interface Notice {
  id: number;
  kind: 'error' | 'info';
  text: string;
}

export type AuthState = 'checking' | 'login' | 'ok';

const rangeKeyOf = (job: Job | undefined) => JSON.stringify(job?.frames ?? null);

/**
 * The page's picture of the farm: a snapshot from the API, kept current by the observer
 * connection. Incoming changes are gathered (latest per job/frame/worker) and applied once
 * per animation frame, so a busy farm costs one render per screen refresh at most.
 */
class FarmStore {
  auth: AuthState = 'checking';
  jobs = new Map<string, Job>();
  workers = new Map<string, Worker>();
  removedJobs = new Set<string>();
  loaded = false;
  loadError: string | null = null;
  detail: DetailState | null = null;
  live: { status: LiveStatus; retryAt: number | null; reason: string | null; everOpen: boolean } = {
    status: 'connecting',
    retryAt: null,
    reason: null,
    everOpen: false,
  };
  notices: Notice[] = [];
  version = 0;

  private listeners = new Set<() => void>();
  private pending = new Map<string, FarmChange>();
  private scheduled: { raf: number; timer: ReturnType<typeof setTimeout> } | null = null;
  /** Changes that arrive while a snapshot loads; applied on top of it, guarded against going back. */
  private syncBuffer: FarmChange[] | null = null;
  /** Frame changes that arrive while the open job's frames are being fetched (null when they are not). */
  private detailBuffer: FarmChange[] | null = null;
  /** Counts the live connection's welcomes: each one starts a new stream of changes. */
  private liveSession = 0;
  private syncSeq = 0;
  private detailSeq = 0;
  private detailCheck: ReturnType<typeof setTimeout> | null = null;
  private lastRefetchSignature = '';
  private noticeSeq = 0;
  private connection = new LiveConnection({
    welcome: () => this.welcomed(),
    batch: (changes) => this.receive(changes),
    status: (status, retryAt, reason) => {
      this.live = { status, retryAt, reason, everOpen: this.live.everOpen || status === 'open' };
      // Without a live connection the page still shows the farm as it was last seen.
      if (status === 'down' && !this.loaded) void this.resync();
      this.notify();
    },
    unauthorized: () => this.setAuth('login'),
  });

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    this.version++;
    for (const listener of this.listeners) listener();
  }

  async start(): Promise<void> {
    try {
      const session = await api.session();
      if (!session.authenticated) return this.setAuth('login');
    } catch (error) {
      this.loadError = (error as Error).message;
    }
    this.setAuth('ok');
  }

  setAuth(auth: AuthState): void {
    if (this.auth === auth) return;
    this.auth = auth;
    if (auth === 'ok') this.connection.start();
    else this.connection.stop();
    this.notify();
  }

  retryNow(): void {
    this.connection.retryNow();
  }

  notice(kind: Notice['kind'], text: string): void {
    const id = ++this.noticeSeq;
    this.notices = [...this.notices, { id, kind, text }].slice(-4);
    this.notify();
    setTimeout(() => this.dismiss(id), kind === 'error' ? 12_000 : 6_000);
  }

  dismiss(id: number): void {
    this.notices = this.notices.filter((n) => n.id !== id);
    this.notify();
  }

  // ---- live changes ------------------------------------------------------------

  private receive(changes: FarmChange[]): void {
    for (const change of changes) {
      const key = changeKey(change);
      this.pending.delete(key); // re-inserted last: a progress change must come after the views it updates
      this.pending.set(key, change);
    }
    if (this.scheduled) return;
    // requestAnimationFrame pauses in a hidden tab; the timer keeps the state from aging there.
    const run = () => {
      if (!this.scheduled) return;
      cancelAnimationFrame(this.scheduled.raf);
      clearTimeout(this.scheduled.timer);
      this.scheduled = null;
      this.flush();
    };
    this.scheduled = { raf: requestAnimationFrame(run), timer: setTimeout(run, 1000) };
  }

  private flush(): void {
    const changes = [...this.pending.values()];
    this.pending.clear();
    if (this.syncBuffer) {
      this.syncBuffer.push(...changes);
      return;
    }
    this.apply(changes, false);
    this.notify();
    this.checkDetail();
  }

  private apply(changes: FarmChange[], guarded: boolean): void {
    const detail = this.detail;
    for (const change of changes) {
      switch (change.type) {
        case 'job': {
          const current = this.jobs.get(change.job.id);
          if (guarded && current && change.job.counts.done < current.counts.done) break;
          if (!guarded || current || !this.removedJobs.has(change.job.id)) this.jobs.set(change.job.id, change.job);
          break;
        }
        case 'job_removed':
          this.jobs.delete(change.jobId);
          this.removedJobs.add(change.jobId);
          break;
        case 'worker':
          this.workers.set(change.worker.id, change.worker);
          break;
        case 'frame': {
          if (!detail || change.frame.jobId !== detail.id) break;
          this.detailBuffer?.push(change); // applied again on top of the frames being fetched
          if (detail.status === 'ready') applyFrame(detail, change.frame, guarded);
          break;
        }
        case 'progress': {
          const worker = this.workers.get(change.workerId);
          if (worker) this.workers.set(worker.id, withPercent(worker, change, guarded));
          if (!detail || change.jobId !== detail.id) break;
          this.detailBuffer?.push(change);
          if (detail.status === 'ready') applyProgress(detail, change, guarded);
          break;
        }
      }
    }
  }

  /** The live connection listens (again): load the farm, and the open job's frames changed meanwhile. */
  private welcomed(): void {
    this.liveSession++;
    void this.resync();
    this.catchUp();
  }

  /** Loads jobs and workers again: at the start and after every reconnect. */
  async resync(): Promise<void> {
    const seq = ++this.syncSeq;
    this.syncBuffer ??= [];
    try {
      const [jobs, workers] = await Promise.all([api.jobs(), api.workers()]);
      if (seq !== this.syncSeq) return;
      this.jobs = new Map(jobs.map((j) => [j.id, j]));
      this.workers = new Map(workers.map((w) => [w.id, w]));
      const buffered = this.syncBuffer ?? [];
      this.syncBuffer = null;
      this.apply(buffered, true);
      this.loaded = true;
      this.loadError = null;
    } catch (error) {
      if (seq !== this.syncSeq) return;
      this.syncBuffer = null;
      this.loadError = (error as Error).message;
    }
    this.notify();
    this.checkDetail();
  }

  // ---- one job's frames -------------------------------------------------------------

  /**
   * Shows a job's frames. They are asked for at once, even before the live connection
   * listens (on a fresh page it is several round trips away); frames that change before
   * it does are fetched when it does (`catchUp`).
   */
  openJob(id: string): void {
    if (this.detail?.id === id && this.detail.status !== 'error') return;
    this.closeJob();
    this.detail = { ...emptyList(id), status: 'loading' };
    void this.loadDetail(id, 'all');
  }

  closeJob(): void {
    this.detail = null;
    this.detailBuffer = null;
    this.detailSeq++;
    if (this.detailCheck) clearTimeout(this.detailCheck);
    this.detailCheck = null;
  }

  /** Fetches the open job's frames: all of them, or those changed since the list shown was read. */
  private async loadDetail(id: string, which: 'all' | 'changed'): Promise<void> {
    const seq = ++this.detailSeq;
    const since = which === 'changed' ? this.detail?.cursor : undefined;
    // The answer misses no change of a connection already listening when it is asked for.
    const session = this.live.status === 'open' ? this.liveSession : 0;
    this.detailBuffer = [];
    const result = await api.frames(id, since).catch((error: unknown) => error as Error);
    if (seq !== this.detailSeq || this.detail?.id !== id) return;
    const buffered = this.detailBuffer ?? [];
    this.detailBuffer = null;
    if (result instanceof Error) this.detailFailed(result);
    else {
      this.showFrames(result, session, buffered);
      this.catchUp(); // in case a live connection started listening meanwhile
    }
    this.notify();
    this.checkDetail();
  }

  /** Shows fetched frames: a whole list, or the frames changed since over the list shown. */
  private showFrames(answer: FrameColumns, session: number, buffered: FarmChange[]): void {
    // The server answered, so this page is signed in: no need to wait for the session check.
    if (this.auth === 'checking') this.setAuth('ok');
    const frames = framesFromColumns(answer);
    const shown = this.detail;
    const detail = answer.partial && shown?.status === 'ready' ? replaceFrames(shown, frames) : listDetail(answer, frames);
    detail.cursor = answer.cursor;
    detail.session = session;
    this.detail = detail;
    const current = this.jobs.get(detail.id);
    if (!current || answer.job.counts.done >= current.counts.done) this.jobs.set(detail.id, answer.job);
    for (const change of buffered) {
      if (change.type === 'frame') applyFrame(detail, change.frame, true);
      else if (change.type === 'progress') applyProgress(detail, change, true);
    }
  }

  /**
   * Fetches the frames that changed between reading the list shown and the live connection
   * listening, unless the list was read while this connection listened.
   */
  private catchUp(): void {
    const detail = this.detail;
    if (!detail || detail.status !== 'ready' || this.live.status !== 'open') return;
    if (detail.session === this.liveSession || this.detailBuffer) return; // current, or a fetch is under way (it calls again)
    void this.loadDetail(detail.id, 'changed');
  }

  private detailFailed(error: Error): void {
    const missing = error instanceof ApiError && error.code === 'JOB_NOT_FOUND';
    if (this.detail?.status === 'ready' && !missing) return; // keep showing what we have
    this.detail = { ...this.detail!, status: missing ? 'missing' : 'error', error: error.message };
  }

  /**
   * Frames are created or reset by the server without a frame event (new range, retried
   * frames): when the job's counts disagree with its frames for a moment, reload them.
   */
  private checkDetail(): void {
    const detail = this.detail;
    const job = detail && this.jobs.get(detail.id);
    // While frames are being fetched the checks wait for them (the next batch runs them).
    if (!detail || detail.status !== 'ready' || !job || this.detailBuffer) return;
    if (rangeKeyOf(job) !== detail.rangeKey) {
      void this.loadDetail(detail.id, 'all');
      return;
    }
    if (this.detailCheck) return;
    if (countsAgree(detail, job.counts)) return;
    this.detailCheck = setTimeout(() => {
      this.detailCheck = null;
      const now = this.detail;
      const latest = now && this.jobs.get(now.id);
      if (!now || now.status !== 'ready' || !latest || countsAgree(now, latest.counts)) return;
      const signature = `${now.id}:${JSON.stringify(latest.counts)}`;
      if (signature === this.lastRefetchSignature) return;
      this.lastRefetchSignature = signature;
      void this.loadDetail(now.id, 'all');
    }, 1200);
  }
}

function isLater(frame: Frame, than: Frame | null): boolean {
  if (!than) return true;
  return (frame.finishedAt ?? '') >= (than.finishedAt ?? '');
}

function emptyList(id: string): DetailState {
  const stateCounts = { queued: 0, rendering: 0, done: 0, failed: 0 };
  return { id, status: 'ready', error: null, frames: [], runs: [], stateCounts, latestDone: null, rangeKey: '', cursor: '', session: 0 };
}

/** A job's whole frame list, ready to show (its cursor and session still to be set). */
function listDetail(answer: FrameColumns, frames: Frame[]): DetailState {
  const detail: DetailState = { ...emptyList(answer.job.id), frames, runs: answer.runs, rangeKey: rangeKeyOf(answer.job) };
  for (const frame of frames) {
    detail.stateCounts[frame.state]++;
    noteDone(detail, frame);
  }
  return detail;
}

/** Where a frame is in the list; undefined for a frame it does not hold. */
export const positionOf = (detail: DetailState, frame: number) => columnIndexOf(detail.runs, frame);

/** Puts frames fetched anew over the ones they replace: they are newer, so nothing guards them. */
function replaceFrames(detail: DetailState, frames: Frame[]): DetailState {
  for (const frame of frames) {
    const i = positionOf(detail, frame.number);
    if (i !== undefined) putFrame(detail, i, frame); // else the range changed: the range check reloads the whole list
  }
  return detail;
}

function applyFrame(detail: DetailState, frame: Frame, guarded: boolean): void {
  const i = positionOf(detail, frame.number);
  if (i === undefined) return; // a frame of a range not loaded yet; the count check reloads
  const current = detail.frames[i]!;
  // Inside a reconnect window an older change may arrive after a newer snapshot.
  if (guarded && ((current.state === 'done' && frame.state !== 'done') || frame.attempts < current.attempts)) return;
  putFrame(detail, i, frame);
}

/**
 * A worker's progress, on its view: only while it still renders what the progress is about
 * (progress comes at most once a second, and may arrive after the worker moved on).
 * Guarded (a change older than the view may come after it), it only moves forward: work
 * that starts again comes with the worker's own view.
 */
function withPercent(worker: Worker, change: ProgressChange, guarded: boolean): Worker {
  const { current } = worker;
  if (!current || current.jobId !== change.jobId || current.frame !== change.frame || current.tile !== change.tile) return worker;
  if (current.percent === change.percent || (guarded && change.percent < current.percent)) return worker;
  return { ...worker, current: { ...current, percent: change.percent } };
}

/** A frame's progress, only while the list shows it rendering (it may have finished or been handed back since); guarded as withPercent. */
function applyProgress(detail: DetailState, change: ProgressChange, guarded: boolean): void {
  const i = positionOf(detail, change.frame);
  const current = i === undefined ? undefined : detail.frames[i]!;
  if (!current || current.state !== 'rendering' || current.progress === change.frameProgress) return;
  if (guarded && change.frameProgress < current.progress) return;
  putFrame(detail, i!, { ...current, progress: change.frameProgress });
}

function putFrame(detail: DetailState, i: number, frame: Frame): void {
  detail.stateCounts[detail.frames[i]!.state]--;
  detail.stateCounts[frame.state]++;
  detail.frames[i] = frame;
  noteDone(detail, frame);
}

function noteDone(detail: DetailState, frame: Frame): void {
  if (frame.state === 'done' && isLater(frame, detail.latestDone)) detail.latestDone = frame;
}

function countsAgree(detail: DetailState, counts: FrameCounts): boolean {
  const { done, failed } = detail.stateCounts;
  return detail.frames.length === counts.total && done === counts.done && failed === counts.failed;
}

export const farm = new FarmStore();

/** Re-renders the calling component whenever the farm picture changes. */
export function useFarm(): FarmStore {
  const [, setVersion] = useState(farm.version);
  // A layout effect subscribes right after the first render, not after the first paint: a job's
  // frames may arrive in between. A change made before it subscribed is caught up at once.
  useLayoutEffect(() => {
    const update = () => setVersion(farm.version);
    update();
    return farm.subscribe(update);
  }, []);
  return farm;
}

/** The current time, refreshed every `ms`, for elapsed and remaining times. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}
