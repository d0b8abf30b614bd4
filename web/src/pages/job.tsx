import { useEffect, useState } from 'preact/hooks';
import { formatFrameRange, isHeldForMissingFiles, type Frame, type FrameLog, type Job } from '../../../src/protocol/index.ts';
import { api, urls } from '../api.ts';
import { FrameGrid, shownCounts, shownState } from '../components/frame-grid.tsx';
import { engineName, formatName, HeldSettings, JobActions, PriorityInput } from '../components/job-controls.tsx';
import { isSplit, outputSize, TiledFrame, tilesDone, tilingText, TilingNote, type SplitFrame } from '../components/tiles.tsx';
import { FramePasses, Problems } from '../components/outputs.tsx';
import { AddFiles } from '../components/add-files.tsx';
import { Dialog, ProgressBar, ScriptsWarning, StateBadge } from '../components/ui.tsx';
import { duration, elapsedMs, isActive, isHeld, plural, remaining, timeAgo } from '../format.ts';
import { href } from '../router.ts';
import { farm, positionOf, useNow, type DetailState } from '../store.ts';

export function JobPage({ id }: { id: string }) {
  useEffect(() => {
    farm.openJob(id);
    return () => farm.closeJob();
  }, [id]);
  const now = useNow();
  const detail = farm.detail?.id === id ? farm.detail : null;
  const job = farm.jobs.get(id);
  const [openFrame, setOpenFrame] = useState<number | null>(null);

  if (farm.removedJobs.has(id) && !job) {
    return (
      <main id="main" tabIndex={-1} class="page">
        <Crumbs />
        <h1>Job deleted</h1>
        <p>
          This job was deleted. <a href={href.queue}>Back to the queue</a>
        </p>
      </main>
    );
  }
  if (!job || !detail || detail.status === 'loading') {
    const missing = detail?.status === 'missing';
    return (
      <main id="main" tabIndex={-1} class="page">
        <Crumbs />
        {missing ? (
          <>
            <h1>No such job</h1>
            <p>
              The farm has no job <code>{id}</code>. It may have been deleted. <a href={href.queue}>Back to the queue</a>
            </p>
          </>
        ) : detail?.status === 'error' ? (
          <p class="callout error" role="alert">
            Could not load the job: {detail.error}
          </p>
        ) : (
          <p class="muted" role="status">
            Loading the job…
          </p>
        )}
      </main>
    );
  }

  const frame = openFrame === null ? null : (detail.frames[positionOf(detail, openFrame) ?? -1] ?? null);
  const held = isHeld(job) && job.state === 'paused';
  // The frame being rendered in tiles, shown filling in; the first one if several are split.
  const split = isActive(job) ? (detail.frames.find(isSplit) ?? null) : null;
  return (
    <main id="main" tabIndex={-1} class="page job-page">
      <Crumbs />
      <header class="job-head">
        <h1>{job.name}</h1>
        <StateBadge state={job.state} />
        {job.allowScripts && <ScriptsWarning compact />}
      </header>
      {job.allowScripts && <ScriptsWarning />}
      {job.error && (
        <p class="callout error" role="alert">
          {job.error}
        </p>
      )}
      {job.notice && (
        <p class="callout" role="status" data-testid="job-notice">
          {job.notice}
        </p>
      )}
      <Problems job={job} />
      {isHeldForMissingFiles(job) && <AddFiles job={job} />}
      <Summary job={job} now={now} onDeleted={() => (window.location.hash = href.queue)} />
      {!held && <TilingNote job={job} />}
      {job.state === 'probing' && <ProbingNote />}
      {held && (
        <section class="panel" aria-label="Review and start">
          <p class="lead">This job waits for you: check the settings Blender read from the file, change what you need, then start it.</p>
          <HeldSettings key={`${job.id}:${JSON.stringify(job.frames)}`} job={job} />
        </section>
      )}
      {(job.counts.done > 0 || job.videoReady || job.state === 'encoding' || split) && (
        <div class="media">
          <LatestFrame job={job} detail={detail} split={split} onOpen={(f) => setOpenFrame(f.number)} />
          <VideoPanel job={job} />
        </div>
      )}
      <FramesSection job={job} detail={detail} onOpen={(f) => setOpenFrame(f.number)} />
      {frame && <FrameDialog job={job} frame={frame} onClose={() => setOpenFrame(null)} />}
    </main>
  );
}

function Crumbs() {
  return (
    <nav class="crumbs" aria-label="Breadcrumb">
      <a href={href.queue}>← Queue</a>
    </nav>
  );
}

function ProbingNote() {
  const online = [...farm.workers.values()].some((w) => w.state !== 'offline');
  return (
    <p class="callout" role="status">
      <span class="spinner" aria-hidden="true" /> Reading the scene settings from the .blend…{' '}
      {online ? 'a worker is opening it.' : 'waiting for a worker to come online.'}
    </p>
  );
}

function Summary({ job, now, onDeleted }: { job: Job; now: number; onDeleted: () => void }) {
  const c = job.counts;
  const scene = job.scene;
  const pct = scene ? (job.overrides.resolutionPercentage ?? scene.resolutionPercentage) : null;
  return (
    <section class="panel summary" aria-label="Progress">
      <div class="summary-progress">
        <ProgressBar value={c.done} max={c.total} failed={c.failed} label={`${job.name}: frames done`} state={job.state} />
        <p class="counts">
          <strong>
            {c.done.toLocaleString()} of {c.total.toLocaleString()}
          </strong>{' '}
          frames done
          {c.rendering > 0 && job.state === 'rendering' && <span> · {c.rendering} rendering</span>}
          {c.failed > 0 && <span class="failed-text"> · {c.failed} failed</span>}
        </p>
      </div>
      <dl class="facts">
        <div>
          <dt>Elapsed</dt>
          <dd>{duration(elapsedMs(job, now))}</dd>
        </div>
        {job.finishedAt ? (
          <div>
            <dt>Finished</dt>
            <dd>
              <time dateTime={job.finishedAt} title={new Date(job.finishedAt).toLocaleString()}>
                {timeAgo(job.finishedAt, now)}
              </time>
            </dd>
          </div>
        ) : (
          <div>
            <dt>Remaining</dt>
            <dd>{remaining(job)}</dd>
          </div>
        )}
        <div>
          <dt>Per frame</dt>
          <dd>{job.averageFrameMs === null ? '—' : `${duration(job.averageFrameMs)} average`}</dd>
        </div>
        <div>
          <dt>Frames</dt>
          <dd>{job.frames ? formatFrameRange(job.frames) : '—'}</dd>
        </div>
        <div>
          <dt>Resolution</dt>
          <dd>
            {scene && pct !== null
              ? `${Math.round((scene.resolutionX * pct) / 100)} × ${Math.round((scene.resolutionY * pct) / 100)} (${pct}%)`
              : '—'}
          </dd>
        </div>
        <div>
          <dt>Engine</dt>
          <dd>
            {scene ? engineName(scene.engine) : '—'}
            {scene && (job.overrides.samples ?? scene.samples) !== null ? `, ${plural(job.overrides.samples ?? scene.samples ?? 0, 'sample')}` : ''}
          </dd>
        </div>
        <div>
          <dt>Format</dt>
          <dd>{scene ? formatName(job.overrides.fileFormat ?? scene.fileFormat) : '—'}</dd>
        </div>
        <div>
          <dt>Tiles</dt>
          <dd data-testid="job-tiling">{tilingText(job.tiling)}</dd>
        </div>
        <div>
          <dt>Blender</dt>
          <dd data-testid="job-blender">
            {job.blender ?? '—'}
            {scene?.savedWith ? <span class="muted">{` (file saved with ${scene.savedWith})`}</span> : ''}
          </dd>
        </div>
      </dl>
      <div class="summary-foot">
        <label for="job-priority" class="inline-label">
          Priority <span class="muted">(higher renders first)</span>
        </label>
        <PriorityInput job={job} id="job-priority" />
        <JobActions job={job} showDelete="always" onDeleted={onDeleted} hideStart={isHeld(job)} />
      </div>
    </section>
  );
}

function LatestFrame({ job, detail, split, onOpen }: { job: Job; detail: DetailState; split: SplitFrame | null; onOpen: (f: Frame) => void }) {
  const latest = detail.latestDone;
  const exr = job.fileExtension === 'exr';
  const worker = latest?.workerId ? farm.workers.get(latest.workerId) : undefined;
  const size = outputSize(job);
  const w = Math.max(1, size?.width ?? 16);
  const h = Math.max(1, size?.height ?? 9);
  return (
    <section class="panel latest" aria-labelledby="latest-title">
      <h2 id="latest-title">{split ? 'Frame in progress' : 'Latest frame'}</h2>
      {split ? (
        <SplitFrameView job={job} frame={split} onOpen={onOpen} />
      ) : !latest ? (
        <p class="placeholder" style={{ aspectRatio: `${w} / ${h}` }}>
          No frame has finished yet.
        </p>
      ) : (
        <figure>
          {exr ? (
            <p class="placeholder" style={{ aspectRatio: `${w} / ${h}` }}>
              OpenEXR frames have no preview in the browser; download them instead.
            </p>
          ) : (
            <a href={urls.frame(job.id, latest.number)} target="_blank" rel="noopener" class="latest-link">
              <img
                key={latest.number}
                src={urls.preview(job.id, latest.number, 'large')}
                width={w}
                height={h}
                alt={`Frame ${latest.number}, the latest finished frame`}
                data-testid="latest-frame"
              />
            </a>
          )}
          <figcaption>
            <button type="button" class="linklike" onClick={() => onOpen(latest)}>
              Frame {latest.number}
            </button>{' '}
            · {duration(latest.renderMs)} {latest.workerId === null ? 'of rendering, stitched from tiles' : `on ${worker?.name ?? 'a worker'}`} ·{' '}
            <a href={urls.frame(job.id, latest.number)} download>
              Download
            </a>
          </figcaption>
        </figure>
      )}
    </section>
  );
}

/** A frame rendered in tiles on several workers, filling in as they finish. */
function SplitFrameView({ job, frame, onOpen }: { job: Job; frame: SplitFrame; onOpen: (f: Frame) => void }) {
  const exr = job.fileExtension === 'exr';
  return (
    <figure>
      <TiledFrame job={job} frame={frame} images={!exr} />
      <figcaption>
        <button type="button" class="linklike" onClick={() => onOpen(frame)}>
          Frame {frame.number}
        </button>{' '}
        · {tilesDone(frame)} of {plural(frame.tiles.states.length, 'tile')} rendered ·{' '}
        {tilesDone(frame) === frame.tiles.states.length ? 'stitching…' : `${Math.round(frame.progress)}%`}
        {exr ? ' · OpenEXR tiles have no preview in the browser' : ''}
      </figcaption>
    </figure>
  );
}

function VideoPanel({ job }: { job: Job }) {
  return (
    <section class="panel video" aria-labelledby="video-title">
      <h2 id="video-title">Video and downloads</h2>
      {job.videoReady ? (
        <video controls preload="metadata" src={urls.video(job.id)} data-testid="video" />
      ) : (
        <p class="placeholder">
          {job.state === 'encoding'
            ? 'Making the video from the frames…'
            : job.state === 'completed' || job.state === 'failed' || job.state === 'cancelled'
              ? 'No video was made for this job.'
              : 'The video is made as soon as every frame is done.'}
        </p>
      )}
      <ul class="downloads">
        {job.videoReady && (
          <li>
            <a class="button" href={urls.video(job.id)} download={`${job.name}.mp4`}>
              Download MP4
            </a>
          </li>
        )}
        {job.counts.done > 0 && (
          <li>
            <a class="button" href={urls.zip(job.id)} download>
              Download all frames (.zip)
            </a>
          </li>
        )}
        {job.counts.done > 0 && <li class="muted">Single frames: open one in the grid below.</li>}
      </ul>
    </section>
  );
}

function FramesSection({ job, detail, onOpen }: { job: Job; detail: DetailState; onOpen: (f: Frame) => void }) {
  const [goto, setGoto] = useState('');
  const [scrollTo, setScrollTo] = useState<{ frame: number; seq: number } | null>(null);
  const counts = shownCounts(job, detail.stateCounts);
  const thumbnails = job.fileExtension !== 'exr';
  return (
    <section class="panel frames" aria-labelledby="frames-title">
      <div class="frames-head">
        <h2 id="frames-title">Frames</h2>
        <ul class="legend" aria-label="Frame states">
          <li data-state="queued">{counts.queued.toLocaleString()} queued</li>
          <li data-state="rendering">{counts.rendering.toLocaleString()} rendering</li>
          <li data-state="done">{counts.done.toLocaleString()} done</li>
          <li data-state="failed">{counts.failed.toLocaleString()} failed</li>
        </ul>
        {detail.frames.length > 40 && (
          <form
            class="goto"
            onSubmit={(e) => {
              e.preventDefault();
              const n = Number(goto);
              if (goto.trim() !== '' && Number.isInteger(n)) setScrollTo({ frame: n, seq: (scrollTo?.seq ?? 0) + 1 });
            }}
          >
            <label for="goto-frame">Go to frame</label>
            <input id="goto-frame" type="number" step={1} value={goto} onInput={(e) => setGoto(e.currentTarget.value)} />
            <button type="submit" class="small">
              Go
            </button>
          </form>
        )}
      </div>
      {detail.frames.length === 0 ? (
        <p class="muted">{job.state === 'probing' ? 'Frames appear once the scene has been read.' : 'This job has no frames.'}</p>
      ) : (
        <FrameGrid job={job} frames={detail.frames} thumbnails={thumbnails} onOpen={onOpen} scrollTo={scrollTo} />
      )}
    </section>
  );
}

function FrameDialog({ job, frame, onClose }: { job: Job; frame: Frame; onClose: () => void }) {
  const [log, setLog] = useState<FrameLog | null>(null);
  const [error, setError] = useState<string | null>(null);
  const state = shownState(job, frame);
  useEffect(() => {
    let live = true;
    setLog(null);
    api
      .frameLog(job.id, frame.number)
      .then((l) => live && setLog(l))
      .catch((e: Error) => live && setError(e.message));
    return () => {
      live = false;
    };
  }, [job.id, frame.number, frame.state]);
  const worker = frame.workerId ? farm.workers.get(frame.workerId) : undefined;
  return (
    <Dialog
      title={`Frame ${frame.number}`}
      onClose={onClose}
      wide
      returnFocus={() => document.querySelector<HTMLElement>(`.cell[data-frame="${frame.number}"]`)}
    >
      <dl class="facts compact">
        <div>
          <dt>State</dt>
          <dd>
            <span class="badge" data-state={state === 'done' ? 'completed' : state}>
              {state}
              {state === 'rendering' ? ` ${Math.round(frame.progress)}%` : ''}
            </span>
          </dd>
        </div>
        <div>
          <dt>Render time</dt>
          <dd>{duration(frame.renderMs)}</dd>
        </div>
        <div>
          <dt>Worker</dt>
          <dd>
            {worker
              ? `${worker.name} (${worker.host})`
              : frame.workerId
                ? frame.workerId
                : isSplit(frame) || state === 'done'
                  ? 'several, in tiles'
                  : '—'}
          </dd>
        </div>
        <div>
          <dt>Attempts</dt>
          <dd>{frame.attempts}</dd>
        </div>
        {log?.blenderVersion && (
          <div>
            <dt>Blender</dt>
            <dd data-testid="frame-blender">{log.blenderVersion}</dd>
          </div>
        )}
      </dl>
      {isSplit(frame) && state === 'rendering' && (
        <div class="frame-preview">
          <TiledFrame job={job} frame={frame} images={job.fileExtension !== 'exr'} />
          <p class="muted">
            Rendered in {plural(frame.tiles.states.length, 'tile')} on several workers: {tilesDone(frame)} done so far. The frame is stitched
            once every tile is in.
          </p>
        </div>
      )}
      {state === 'done' && (
        <div class="frame-preview">
          {job.fileExtension !== 'exr' && <img src={urls.preview(job.id, frame.number, 'large')} alt={`Frame ${frame.number}`} />}
          <a class="button" href={urls.frame(job.id, frame.number)} download data-autofocus>
            Download frame {frame.number}
          </a>
        </div>
      )}
      {state === 'done' && <FramePasses job={job} frame={frame.number} />}
      {(frame.error ?? log?.error) && (
        <p class="callout error" role="alert">
          {frame.error ?? log?.error}
        </p>
      )}
      <h3>Blender log</h3>
      {error ? (
        <p class="form-error">{error}</p>
      ) : log === null ? (
        <p class="muted">Loading…</p>
      ) : log.log.trim() === '' ? (
        <p class="muted">No log for this frame{state === 'queued' ? ' yet' : ''}.</p>
      ) : (
        <pre class="log" tabIndex={0} aria-label={`Blender log of frame ${frame.number}`} data-testid="frame-log">
          {log.log}
        </pre>
      )}
    </Dialog>
  );
}
