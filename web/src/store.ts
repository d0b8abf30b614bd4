import { useEffect, useState } from 'preact/hooks';
import { changeKey, type FarmChange, type Frame, type FrameCounts, type Job, type Worker } from '../../src/protocol/index.ts';
import { api, ApiError } from './api.ts';
import { LiveConnection, type LiveStatus } from './live.ts';

export interface DetailState {
  id: string;
  status: 'loading' | 'ready' | 'missing' | 'error';
  error: string | null;
  /** Sorted by frame number. */
  frames: Frame[];
  index: Map<number, number>;
  latestDone: Frame | null;
  /** The job's frame range when the list was loaded; a different one means reload. */
  rangeKey: string;
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
  private detailBuffer: FarmChange[] | null = null;
  private syncSeq = 0;
  private detailSeq = 0;
  private detailCheck: ReturnType<typeof setTimeout> | null = null;
  private lastRefetchSignature = '';
  private noticeSeq = 0;
  private connection = new LiveConnection({
    welcome: () => void this.resync(),
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
    for (const change of changes) this.pending.set(changeKey(change), change);
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
          if (detail.status === 'loading') this.detailBuffer?.push(change);
          else if (detail.status === 'ready') applyFrame(detail, change.frame, guarded);
          break;
        }
      }
    }
  }

  /** Loads the whole farm again: at the start and after every reconnect. */
  async resync(): Promise<void> {
    const seq = ++this.syncSeq;
    this.syncBuffer ??= [];
    const detailId = this.detail?.id ?? null;
    if (detailId) {
      this.detailSeq++; // this snapshot supersedes a frame list still loading
      if (this.detail!.status === 'loading') this.detailBuffer = null;
    }
    try {
      const [jobs, workers, detail] = await Promise.all([
        api.jobs(),
        api.workers(),
        detailId ? api.job(detailId).catch((error: unknown) => error as Error) : Promise.resolve(null),
      ]);
      if (seq !== this.syncSeq) return;
      this.jobs = new Map(jobs.map((j) => [j.id, j]));
      this.workers = new Map(workers.map((w) => [w.id, w]));
      if (detailId && this.detail?.id === detailId && detail) this.setDetail(detailId, detail);
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

  openJob(id: string): void {
    if (this.detail?.id === id) return;
    this.closeJob();
    this.detail = { id, status: 'loading', error: null, frames: [], index: new Map(), latestDone: null, rangeKey: '' };
    // On a fresh page the snapshot taken at the live connection's welcome brings the frames:
    // loading them earlier could miss changes made before the page started listening.
    if (this.loaded || this.live.status === 'open') void this.loadDetail(id);
  }

  closeJob(): void {
    this.detail = null;
    this.detailBuffer = null;
    this.detailSeq++;
    if (this.detailCheck) clearTimeout(this.detailCheck);
    this.detailCheck = null;
  }

  private async loadDetail(id: string): Promise<void> {
    const seq = ++this.detailSeq;
    if (this.detail?.status !== 'ready') this.detailBuffer = [];
    const result = await api.job(id).catch((error: unknown) => error as Error);
    if (seq !== this.detailSeq || this.detail?.id !== id) return;
    this.setDetail(id, result);
    this.notify();
  }

  private setDetail(id: string, result: Awaited<ReturnType<typeof api.job>> | Error): void {
    if (result instanceof Error) {
      const missing = result instanceof ApiError && result.status === 404;
      if (this.detail?.status === 'ready' && !missing) return; // keep showing what we have
      this.detail = { ...this.detail!, status: missing ? 'missing' : 'error', error: result.message };
      this.detailBuffer = null;
      return;
    }
    const { frameList, ...job } = result;
    const frames = frameList.slice().sort((a, b) => a.number - b.number);
    const detail: DetailState = {
      id,
      status: 'ready',
      error: null,
      frames,
      index: new Map(frames.map((f, i) => [f.number, i])),
      latestDone: null,
      rangeKey: rangeKeyOf(job),
    };
    for (const frame of frames) if (frame.state === 'done' && isLater(frame, detail.latestDone)) detail.latestDone = frame;
    this.detail = detail;
    const current = this.jobs.get(id);
    if (!current || job.counts.done >= current.counts.done) this.jobs.set(id, job);
    const buffered = this.detailBuffer ?? [];
    this.detailBuffer = null;
    for (const change of buffered) if (change.type === 'frame') applyFrame(detail, change.frame, true);
  }

  /**
   * Frames are created or reset by the server without a frame event (new range, retried
   * frames): when the job's counts disagree with its frames for a moment, reload them.
   */
  private checkDetail(): void {
    const detail = this.detail;
    const job = detail && this.jobs.get(detail.id);
    if (!detail || detail.status !== 'ready' || !job) return;
    if (rangeKeyOf(job) !== detail.rangeKey) {
      void this.loadDetail(detail.id);
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
      void this.loadDetail(now.id);
    }, 1200);
  }
}

function isLater(frame: Frame, than: Frame | null): boolean {
  if (!than) return true;
  return (frame.finishedAt ?? '') >= (than.finishedAt ?? '');
}

function applyFrame(detail: DetailState, frame: Frame, guarded: boolean): void {
  const i = detail.index.get(frame.number);
  if (i === undefined) return; // a frame of a range not loaded yet; the count check reloads
  const current = detail.frames[i]!;
  // Inside a reconnect window an older change may arrive after a newer snapshot.
  if (guarded && ((current.state === 'done' && frame.state !== 'done') || frame.attempts < current.attempts)) return;
  detail.frames[i] = frame;
  if (frame.state === 'done' && isLater(frame, detail.latestDone)) detail.latestDone = frame;
}

function countsAgree(detail: DetailState, counts: FrameCounts): boolean {
  if (detail.frames.length !== counts.total) return false;
  let done = 0;
  let failed = 0;
  for (const f of detail.frames) {
    if (f.state === 'done') done++;
    else if (f.state === 'failed') failed++;
  }
  return done === counts.done && failed === counts.failed;
}

export const farm = new FarmStore();

/** Re-renders the calling component whenever the farm picture changes. */
export function useFarm(): FarmStore {
  const [, setVersion] = useState(farm.version);
  useEffect(() => farm.subscribe(() => setVersion(farm.version)), []);
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
