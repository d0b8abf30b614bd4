import type { Job } from '../../../src/protocol/index.ts';
import { JobActions, PriorityInput, reviewHref } from '../components/job-controls.tsx';
import { SubmitPanel } from '../components/submit.tsx';
import { ProgressBar, StateBadge } from '../components/ui.tsx';
import { duration, elapsedMs, isActive, remaining } from '../format.ts';
import { href } from '../router.ts';
import { farm, useNow } from '../store.ts';

/** Queue order: what renders next first (priority, then age); finished jobs newest first. */
function sortJobs(jobs: Job[]): { active: Job[]; finished: Job[] } {
  const active = jobs.filter(isActive).sort((a, b) => b.priority - a.priority || a.createdAt.localeCompare(b.createdAt));
  const finished = jobs
    .filter((j) => !isActive(j))
    .sort((a, b) => (b.finishedAt ?? b.createdAt).localeCompare(a.finishedAt ?? a.createdAt));
  return { active, finished };
}

export function QueuePage() {
  const now = useNow();
  const { active, finished } = sortJobs([...farm.jobs.values()]);
  return (
    <main id="main" tabIndex={-1} class="page">
      <h1 class="visually-hidden">Render queue</h1>
      <SubmitPanel />
      <section class="panel" aria-labelledby="active-title">
        <h2 id="active-title">
          Queue <span class="count">{active.length}</span>
        </h2>
        {!farm.loaded ? (
          <p class="muted" role="status">
            {farm.loadError ? `Could not load the jobs: ${farm.loadError}` : 'Loading…'}
          </p>
        ) : active.length === 0 ? (
          <p class="muted">Nothing is rendering or waiting. Submit a .blend above.</p>
        ) : (
          <JobList jobs={active} now={now} />
        )}
      </section>
      {finished.length > 0 && (
        <section class="panel" aria-labelledby="finished-title">
          <h2 id="finished-title">
            Finished <span class="count">{finished.length}</span>
          </h2>
          <JobList jobs={finished} now={now} />
        </section>
      )}
    </main>
  );
}

function JobList({ jobs, now }: { jobs: Job[]; now: number }) {
  return (
    <div class="job-table">
      <div class="job-row job-header" aria-hidden="true">
        <span>Job</span>
        <span>State</span>
        <span>Progress</span>
        <span>Time</span>
        <span>Priority</span>
        <span class="right">Actions</span>
      </div>
      <ul class="job-list">
        {jobs.map((job) => (
          <JobRow key={job.id} job={job} now={now} />
        ))}
      </ul>
    </div>
  );
}

function JobRow({ job, now }: { job: Job; now: number }) {
  const c = job.counts;
  const review = reviewHref(job);
  const elapsed = elapsedMs(job, now);
  return (
    <li class="job-row" data-state={job.state} data-job={job.id}>
      <div class="c-name">
        <a href={href.job(job.id)} class="job-name">
          {job.name}
        </a>
        <span class="job-meta">
          {job.frames ? `frames ${job.frames.start}–${job.frames.end}${job.frames.step > 1 ? ` every ${job.frames.step}` : ''}` : 'frames not read yet'}
          {job.scene ? ` · ${job.scene.resolutionX}×${job.scene.resolutionY}` : ''}
          {job.allowScripts && (
            <span class="badge warn" title="This job runs the Python scripts embedded in its .blend file">
              Runs scripts
            </span>
          )}
        </span>
      </div>
      <div class="c-state">
        <StateBadge state={job.state} />
        {review && (
          <a class="review-link" href={review}>
            Review settings
          </a>
        )}
      </div>
      <div class="c-progress">
        <ProgressBar value={c.done} max={c.total} failed={c.failed} label={`${job.name}: frames done`} state={job.state} />
        <span class="progress-text">
          {c.done.toLocaleString()}/{c.total.toLocaleString()} frames
          {c.failed > 0 && <span class="failed-text"> · {c.failed} failed</span>}
        </span>
      </div>
      <div class="c-time">
        <span>
          <span class="label">Elapsed</span> {elapsed === null ? '—' : duration(elapsed)}
        </span>
        {isActive(job) && job.state !== 'paused' && (
          <span>
            <span class="label">Left</span> {remaining(job)}
          </span>
        )}
        {job.averageFrameMs !== null && (
          <span class="muted">
            <span class="label">Per frame</span> {duration(job.averageFrameMs)}
          </span>
        )}
      </div>
      <div class="c-priority">
        {isActive(job) ? (
          <>
            <label class="label" for={`prio-${job.id}`}>
              Priority
            </label>
            <PriorityInput job={job} id={`prio-${job.id}`} />
          </>
        ) : (
          <span class="muted">
            <span class="label">Priority</span> {job.priority}
          </span>
        )}
      </div>
      <div class="c-actions">
        <JobActions job={job} />
      </div>
    </li>
  );
}
