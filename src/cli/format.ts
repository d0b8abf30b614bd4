import { formatFrameRange, type Asleep, type Job, type JobDetail, type Worker } from '../protocol/index.ts';
import { clockTime } from '../protocol/index.ts';

/** Plain text tables for people; `--json` prints the API's own objects for scripts. */
export function formatJobs(jobs: Job[]): string {
  if (jobs.length === 0) return 'no jobs';
  const rows = jobs.map((j) => [j.id, j.name, j.state, `${j.counts.done}/${j.counts.total}`, j.createdAt.slice(0, 19).replace('T', ' ')]);
  return table(['ID', 'NAME', 'STATE', 'FRAMES', 'SUBMITTED'], rows);
}

export function formatWorkers(workers: Worker[]): string {
  if (workers.length === 0) return 'no workers';
  const rows = workers.map((w) => [
    w.name,
    w.host,
    [
      w.current ? `rendering ${w.current.frame} (${Math.round(w.current.percent)}%)` : w.asleep ? '' : w.state,
      w.asleep ? asleepText(w.asleep) : '',
    ].filter(Boolean).join(', then '),
    String(w.framesRendered),
    w.averageFrameMs === null ? '-' : `${(w.averageFrameMs / 1000).toFixed(1)} s`,
    w.tags.join(',') || '-',
    !w.device ? '-' : w.device.type === 'CPU' ? 'CPU' : `${w.device.type}: ${w.device.devices.join(', ')}`,
    (w.blenders.length > 0 ? w.blenders : [w.blenderVersion ?? '-']).join(', '),
  ]);
  return table(['NAME', 'HOST', 'STATE', 'FRAMES', 'AVG FRAME', 'TAGS', 'DEVICE', 'BLENDER'], rows);
}

/** "asleep until 18:00 (tag room-2)": when a worker wakes and which schedules keep it asleep. */
function asleepText(asleep: Asleep): string {
  const why = [...(asleep.own ? ['its schedule'] : []), ...asleep.tags.map((tag) => `tag ${tag}`)].join(', ');
  return `asleep ${asleep.until ? `until ${clockTime(new Date(asleep.until))}` : '(its schedules share no hours)'} (${why})`;
}

export function formatJob(job: Job): string {
  const lines = [
    `${job.name} (${job.id}): ${job.state}`,
    `frames: ${job.counts.done} done, ${job.counts.rendering} rendering, ${job.counts.queued} queued, ${job.counts.failed} failed of ${job.counts.total}`,
  ];
  if (job.scene) lines.push(`scene: ${job.scene.engine}, ${job.scene.resolutionX}x${job.scene.resolutionY}, ${job.fps} fps`);
  if (job.blender) lines.push(`blender: ${job.blender}${job.blenderRequested ? ' (asked for)' : ''}${job.scene?.savedWith ? `; the file was saved with ${job.scene.savedWith}` : ''}`);
  if (job.error) lines.push(`error: ${job.error}`);
  if (job.notice) lines.push(`note: ${job.notice}`);
  // The preflight's findings: what would spoil the render, errors first.
  for (const problem of job.scene?.problems ?? []) {
    lines.push(`${problem.severity}: ${problem.message}${problem.path && !problem.message.includes(problem.path) ? ` (${problem.path})` : ''}`);
  }
  if (job.videoReady) lines.push(`video: /api/jobs/${job.id}/video`);
  return lines.join('\n');
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** One job for people: its summary, settings, timing and the frames that failed. */
export function formatJobDetail(job: JobDetail): string {
  const lines = [formatJob(job)];
  if (job.frames) lines.push(`range: ${formatFrameRange(job.frames)}${job.fileExtension ? `, .${job.fileExtension} files` : ''}, priority ${job.priority}`);
  if (job.averageFrameMs !== null) lines.push(`average frame: ${seconds(job.averageFrameMs)}${job.etaMs ? `, about ${seconds(job.etaMs)} left` : ''}`);
  const failed = job.frameList.filter((f) => f.state === 'failed');
  for (const f of failed.slice(0, 10)) lines.push(`  frame ${f.number} failed after ${f.attempts} attempts: ${firstLine(f.error)}`);
  if (failed.length > 10) lines.push(`  … and ${failed.length - 10} more failed frames (archenland log ${job.id} <frame>)`);
  return lines.join('\n');
}

const seconds = (ms: number) => (ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${(ms / 1000).toFixed(1)} s`);
const firstLine = (text: string | null) => (text ?? '').split('\n')[0]!.slice(0, 200);
