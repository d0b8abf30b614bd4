import { isActive, type Asleep, type Job, type JobState, type Worker } from '../../src/protocol/index.ts';

/** "850 ms", "12.4 s", "3 min 05 s", "2 h 14 min", "3 d 4 h". */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const totalS = Math.round(s);
  const m = Math.floor(totalS / 60);
  if (m < 60) return `${m} min ${String(totalS % 60).padStart(2, '0')} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, '0')} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function plural(n: number, word: string): string {
  return `${n.toLocaleString()} ${word}${n === 1 ? '' : 's'}`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export const stateLabels: Record<JobState, string> = {
  probing: 'Reading scene',
  queued: 'Queued',
  paused: 'Paused',
  rendering: 'Rendering',
  encoding: 'Making video',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export { isActive };

/** A paused job whose frames were never handed out: its render settings may still change. */
export function isHeld(job: Job): boolean {
  return (
    (job.state === 'paused' || job.state === 'queued') &&
    job.scene !== null &&
    job.startedAt === null &&
    job.counts.done + job.counts.failed + job.counts.rendering === 0
  );
}

export function elapsedMs(job: Job, now: number): number | null {
  if (!job.startedAt) return null;
  const end = job.finishedAt ? Date.parse(job.finishedAt) : now;
  return Math.max(0, end - Date.parse(job.startedAt));
}

export function remaining(job: Job): string {
  if (job.state === 'encoding') return 'making the video';
  if (!isActive(job)) return '—';
  if (job.state === 'paused') return 'paused';
  if (job.etaMs === null) return job.state === 'rendering' ? 'estimating…' : '—';
  if (job.etaMs === 0) return 'finishing';
  return `about ${duration(job.etaMs)}`;
}

export function percentDone(job: Job): number {
  return job.counts.total === 0 ? 0 : (100 * job.counts.done) / job.counts.total;
}

/**
 * "asleep until 18:00" for a worker outside the hours of its schedules (local time here);
 * the weekday is added when it wakes more than a day from now.
 */
export function asleepText(asleep: Asleep, now: number): string {
  if (asleep.until === null) return 'asleep: its schedules share no hours';
  const wakes = new Date(asleep.until);
  const time = `${String(wakes.getHours()).padStart(2, '0')}:${String(wakes.getMinutes()).padStart(2, '0')}`;
  const day = wakes.getTime() - now > 24 * 3600_000 ? `${wakes.toLocaleDateString('en-GB', { weekday: 'short' })} ` : '';
  return `asleep until ${day}${time}`;
}

/** Which schedules keep a worker asleep: "its schedule", "tag room-2", or both. */
export function asleepReason(asleep: Asleep): string {
  const tags = asleep.tags.length === 0 ? [] : [`${asleep.tags.length === 1 ? 'tag' : 'tags'} ${asleep.tags.join(', ')}`];
  return [...(asleep.own ? ['its schedule'] : []), ...tags].join(' and ');
}

export function workerStateText(worker: Worker, jobName?: string): string {
  if (worker.state === 'offline') return 'Offline';
  if (worker.asleep && !worker.current) return asleepText(worker.asleep, Date.now()).replace(/^a/, 'A');
  if (worker.state === 'idle' || !worker.current) return worker.enabled ? 'Idle' : 'Idle (takes no frames)';
  const of = jobName ? ` of ${jobName}` : '';
  return `Rendering frame ${worker.current.frame}${of} at ${Math.round(worker.current.percent)}%`;
}

export function workerMode(worker: Worker): 'enabled' | 'draining' | 'disabled' {
  if (worker.enabled) return 'enabled';
  return worker.state === 'rendering' ? 'draining' : 'disabled';
}

export function timeAgo(iso: string, now: number): string {
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return '';
  if (ms < 60_000) return 'just now';
  return `${duration(ms).replace(/ \d+ s$/, '')} ago`;
}
