import { useEffect, useState } from 'preact/hooks';
import {
  allows,
  canRetry,
  describeIssues,
  frameCount,
  jobPatchSchema,
  outputFormats,
  type Job,
  type JobPatch,
  type OutputFormat,
} from '../../../src/protocol/index.ts';
import { api, type JobAction } from '../api.ts';
import { isActive, isHeld, plural } from '../format.ts';
import { href } from '../router.ts';
import { farm } from '../store.ts';
import { tilingText, TilingNote } from './tiles.tsx';
import { ConfirmDialog } from './ui.tsx';

const verbs: Record<JobAction, string> = { cancel: 'cancel', pause: 'pause', resume: 'resume', retry: 'retry' };

/** Pause, resume, cancel, retry and delete, as the job's state allows. */
export function JobActions({
  job,
  onDeleted,
  showDelete = 'finished',
  hideStart = false,
}: {
  job: Job;
  onDeleted?: () => void;
  showDelete?: 'finished' | 'always';
  /** The page shows the settings form with its own Start button. */
  hideStart?: boolean;
}) {
  const [busy, setBusy] = useState<JobAction | null>(null);
  const [confirm, setConfirm] = useState<'cancel' | 'delete' | null>(null);
  const run = async (action: JobAction) => {
    setBusy(action);
    try {
      const updated = await api.jobAction(job.id, action);
      farm.jobs.set(updated.id, updated);
    } catch (e) {
      farm.notice('error', `Could not ${verbs[action]} “${job.name}”: ${(e as Error).message}`);
    } finally {
      setBusy(null);
    }
  };
  const retryable = canRetry(job);
  const cancellable = allows('cancel', job.state);
  const deletable = showDelete === 'always' || !isActive(job);
  const neverStarted = job.startedAt === null;
  return (
    <div class="actions" role="group" aria-label={`Actions for ${job.name}`}>
      {allows('pause', job.state) && (
        <button type="button" class="small" disabled={busy !== null} onClick={() => run('pause')} aria-label={`Pause ${job.name}`}>
          Pause
        </button>
      )}
      {job.state === 'paused' && !(hideStart && neverStarted) && (
        <button
          type="button"
          class={neverStarted ? 'small primary' : 'small'}
          disabled={busy !== null}
          onClick={() => run('resume')}
          aria-label={`${neverStarted ? 'Start' : 'Resume'} ${job.name}`}
        >
          {neverStarted ? 'Start' : 'Resume'}
        </button>
      )}
      {retryable && (
        <button type="button" class="small" disabled={busy !== null} onClick={() => run('retry')} aria-label={`Retry failed frames of ${job.name}`}>
          Retry failed
        </button>
      )}
      {cancellable && (
        <button type="button" class="small" disabled={busy !== null} onClick={() => setConfirm('cancel')} aria-label={`Cancel ${job.name}`}>
          Cancel
        </button>
      )}
      {deletable && (
        <button type="button" class="small subtle-danger" disabled={busy !== null} onClick={() => setConfirm('delete')} aria-label={`Delete ${job.name}`}>
          Delete
        </button>
      )}
      {confirm === 'cancel' && (
        <ConfirmDialog
          title="Cancel this job?"
          message={
            <p>
              “{job.name}” stops: no more frames are rendered. The {job.counts.done} finished frame{job.counts.done === 1 ? '' : 's'} stay
              available until the job is deleted.
            </p>
          }
          confirmLabel="Cancel job"
          onConfirm={async () => {
            const updated = await api.jobAction(job.id, 'cancel');
            farm.jobs.set(updated.id, updated);
          }}
          onClose={() => setConfirm(null)}
        />
      )}
      {confirm === 'delete' && (
        <ConfirmDialog
          title="Delete this job?"
          message={
            <p>
              “{job.name}” and all its files are removed from the farm: the uploaded .blend, {job.counts.done} rendered frame
              {job.counts.done === 1 ? '' : 's'}
              {job.videoReady ? ' and the video' : ''}.{isActive(job) ? ' The job is cancelled first.' : ''} This cannot be undone.
            </p>
          }
          confirmLabel="Delete job"
          onConfirm={async () => {
            await api.deleteJob(job.id);
            farm.jobs.delete(job.id);
            farm.removedJobs.add(job.id);
            onDeleted?.();
          }}
          onClose={() => setConfirm(null)}
        />
      )}
    </div>
  );
}

/** A job's priority: higher renders first. Saved when the field is left or Enter is pressed. */
export function PriorityInput({ job, id }: { job: Job; id: string }) {
  const [value, setValue] = useState(String(job.priority));
  const [focused, setFocused] = useState(false);
  useEffect(() => {
    if (!focused) setValue(String(job.priority));
  }, [job.priority, focused]);
  const commit = async () => {
    const priority = Number(value);
    if (value.trim() === '' || priority === job.priority) return setValue(String(job.priority));
    const parsed = jobPatchSchema.safeParse({ priority });
    if (!parsed.success) {
      farm.notice('error', `Priority: ${describeIssues(parsed.error)}`);
      return setValue(String(job.priority));
    }
    try {
      const updated = await api.patchJob(job.id, parsed.data);
      farm.jobs.set(updated.id, updated);
      farm.notice('info', `“${job.name}” now has priority ${updated.priority}.`);
    } catch (e) {
      farm.notice('error', `Could not change the priority: ${(e as Error).message}`);
      setValue(String(job.priority));
    }
  };
  return (
    <input
      id={id}
      class="priority"
      type="number"
      inputMode="numeric"
      min={-1000}
      max={1000}
      step={1}
      value={value}
      aria-label={`Priority of ${job.name}`}
      title="Higher priority renders first"
      onFocus={() => setFocused(true)}
      onBlur={() => {
        setFocused(false);
        void commit();
      }}
      onInput={(e) => setValue(e.currentTarget.value)}
      onKeyDown={(e) => {
        if (e.key === 'Enter') e.currentTarget.blur();
        if (e.key === 'Escape') {
          setValue(String(job.priority));
          e.currentTarget.blur();
        }
      }}
    />
  );
}

interface SettingsDraft {
  name: string;
  priority: string;
  start: string;
  end: string;
  step: string;
  fileFormat: string;
  resolutionPercentage: string;
  samples: string;
}

function draftOf(job: Job): SettingsDraft {
  const scene = job.scene!;
  return {
    name: job.name,
    priority: String(job.priority),
    start: String(job.frames?.start ?? scene.frameStart),
    end: String(job.frames?.end ?? scene.frameEnd),
    step: String(job.frames?.step ?? scene.frameStep),
    fileFormat: job.overrides.fileFormat ?? scene.fileFormat,
    resolutionPercentage: String(job.overrides.resolutionPercentage ?? scene.resolutionPercentage),
    samples: scene.samples === null && job.overrides.samples === null ? '' : String(job.overrides.samples ?? scene.samples),
  };
}

/** What changed between the job as it is and the draft, as a PATCH body. */
function patchOf(job: Job, draft: SettingsDraft): { patch: JobPatch } | { error: string } {
  const base = draftOf(job);
  const patch: Record<string, unknown> = {};
  const num = (s: string) => (s.trim() === '' ? NaN : Number(s));
  if (draft.name.trim() !== base.name) patch.name = draft.name.trim();
  if (draft.priority !== base.priority) patch.priority = num(draft.priority);
  if (draft.start !== base.start || draft.end !== base.end || draft.step !== base.step) {
    patch.frames = { start: num(draft.start), end: num(draft.end), step: num(draft.step) };
  }
  if (draft.fileFormat !== base.fileFormat) patch.fileFormat = draft.fileFormat;
  if (draft.resolutionPercentage !== base.resolutionPercentage) patch.resolutionPercentage = num(draft.resolutionPercentage);
  // An emptied samples field goes back to the file's own value.
  if (draft.samples !== base.samples) patch.samples = draft.samples.trim() === '' ? null : num(draft.samples);
  const parsed = jobPatchSchema.safeParse(patch);
  if (!parsed.success) return { error: describeIssues(parsed.error) };
  return { patch: parsed.data };
}

/**
 * The settings Blender read from the .blend, editable until the first frame is handed out:
 * shown for a job submitted with "review before rendering". Start = PATCH, then resume.
 */
export function HeldSettings({ job, onStarted }: { job: Job; onStarted?: () => void }) {
  const [draft, setDraft] = useState<SettingsDraft>(() => draftOf(job));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const scene = job.scene!;
  const field = (key: keyof SettingsDraft) => ({
    value: draft[key],
    onInput: (e: { currentTarget: HTMLInputElement | HTMLSelectElement }) => setDraft({ ...draft, [key]: e.currentTarget.value }),
  });
  const pct = Number(draft.resolutionPercentage);
  const outW = Math.round((scene.resolutionX * pct) / 100);
  const outH = Math.round((scene.resolutionY * pct) / 100);
  const start = Number(draft.start);
  const end = Number(draft.end);
  const step = Number(draft.step);
  const count = Number.isInteger(start) && Number.isInteger(end) && step >= 1 && end >= start ? frameCount({ start, end, step }) : null;
  const formats: string[] = [...outputFormats];
  if (!formats.includes(draft.fileFormat)) formats.unshift(draft.fileFormat);

  const startJob = async (event: Event) => {
    event.preventDefault();
    const result = patchOf(job, draft);
    if ('error' in result) return setError(result.error);
    setBusy(true);
    setError(null);
    try {
      if (Object.keys(result.patch).length > 0) farm.jobs.set(job.id, await api.patchJob(job.id, result.patch));
      if (job.state === 'paused') farm.jobs.set(job.id, await api.jobAction(job.id, 'resume'));
      onStarted?.();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const save = async () => {
    const result = patchOf(job, draft);
    if ('error' in result) return setError(result.error);
    if (Object.keys(result.patch).length === 0) return;
    setBusy(true);
    setError(null);
    try {
      farm.jobs.set(job.id, await api.patchJob(job.id, result.patch));
      farm.notice('info', 'Settings saved.');
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const fid = (name: string) => `held-${job.id}-${name}`;
  return (
    <form class="held" onSubmit={startJob} aria-labelledby={fid('title')} data-testid="held-settings">
      <h3 id={fid('title')}>
        Scene settings read from the file <span class="muted heading-note">by Blender {scene.blenderVersion}</span>
      </h3>
      <dl class="facts">
        <div>
          <dt>Scene</dt>
          <dd>{scene.sceneName}</dd>
        </div>
        <div>
          <dt>Engine</dt>
          <dd>{engineName(scene.engine)}</dd>
        </div>
        <div>
          <dt>Frames in file</dt>
          <dd>
            {scene.frameStart}–{scene.frameEnd}
            {scene.frameStep > 1 ? ` every ${scene.frameStep}` : ''}
          </dd>
        </div>
        <div>
          <dt>Frame rate</dt>
          <dd>{Math.round(scene.fps * 100) / 100} fps</dd>
        </div>
        <div>
          <dt>Resolution</dt>
          <dd>
            {scene.resolutionX} × {scene.resolutionY} at {scene.resolutionPercentage}%
          </dd>
        </div>
        <div>
          <dt>Samples</dt>
          <dd>{scene.samples ?? 'n/a'}</dd>
        </div>
        <div>
          <dt>Output</dt>
          <dd>{scene.fileFormat}</dd>
        </div>
        <div>
          <dt>Tiles</dt>
          <dd title="Chosen at upload">{tilingText(job.tiling)}</dd>
        </div>
        <div>
          <dt>Workers</dt>
          <dd title="Chosen at upload">
            {job.requiredTags.length > 0 ? `with tags ${job.requiredTags.join(', ')}` : 'any'}
            {job.maxWorkers !== null ? `, at most ${job.maxWorkers} at once` : ''}
          </dd>
        </div>
        <div>
          <dt>Frame order</dt>
          <dd title="Chosen at upload">{job.order === 'sequential' ? 'in frame order' : 'first, last, middle, then filling in'}</dd>
        </div>
      </dl>
      <TilingNote job={job} />
      {scene.denoising && (
        <p class="callout warn">
          Denoising is on in this scene. Workers whose Blender is built without OpenImageDenoise (Debian’s) fail such frames.
        </p>
      )}
      <fieldset>
        <legend>Render</legend>
        <div class="form-grid">
          <div class="field wide">
            <label for={fid('name')}>Job name</label>
            <input id={fid('name')} type="text" maxLength={200} required {...field('name')} />
          </div>
          <div class="field">
            <label for={fid('start')}>First frame</label>
            <input id={fid('start')} type="number" step={1} required {...field('start')} />
          </div>
          <div class="field">
            <label for={fid('end')}>Last frame</label>
            <input id={fid('end')} type="number" step={1} required {...field('end')} />
          </div>
          <div class="field">
            <label for={fid('step')}>Every nth frame</label>
            <input id={fid('step')} type="number" min={1} max={10000} step={1} required {...field('step')} />
          </div>
          <div class="field">
            <label for={fid('format')}>Image format</label>
            <select id={fid('format')} {...field('fileFormat')}>
              {formats.map((f) => (
                <option key={f} value={f} disabled={!outputFormats.includes(f as OutputFormat)}>
                  {formatName(f)}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for={fid('res')}>Resolution %</label>
            <input id={fid('res')} type="number" min={1} max={1000} step={1} required {...field('resolutionPercentage')} aria-describedby={fid('res-hint')} />
            <small id={fid('res-hint')} class="hint">
              {Number.isFinite(outW) && outW > 0 ? `${outW} × ${outH} px` : ' '}
            </small>
          </div>
          <div class="field">
            <label for={fid('samples')}>Samples</label>
            <input
              id={fid('samples')}
              type="number"
              min={1}
              step={1}
              disabled={scene.samples === null}
              placeholder={scene.samples === null ? 'n/a' : ''}
              {...field('samples')}
            />
          </div>
          <div class="field">
            <label for={fid('priority')}>Priority</label>
            <input id={fid('priority')} type="number" min={-1000} max={1000} step={1} {...field('priority')} />
          </div>
        </div>
      </fieldset>
      <p class="muted" aria-live="polite">
        {count !== null ? `${plural(count, 'frame')} will be rendered.` : 'Check the frame range.'}
      </p>
      {error && (
        <p class="form-error" role="alert">
          {error}
        </p>
      )}
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Starting…' : 'Start rendering'}
        </button>
        <button type="button" disabled={busy} onClick={save}>
          Save without starting
        </button>
      </div>
    </form>
  );
}

export function engineName(engine: string): string {
  const names: Record<string, string> = { CYCLES: 'Cycles', BLENDER_EEVEE: 'EEVEE', BLENDER_EEVEE_NEXT: 'EEVEE', BLENDER_WORKBENCH: 'Workbench' };
  return names[engine] ?? engine;
}

export function formatName(format: string): string {
  const names: Record<string, string> = { PNG: 'PNG', JPEG: 'JPEG', OPEN_EXR: 'OpenEXR', TIFF: 'TIFF' };
  return names[format] ?? `${format} (from the file)`;
}

/** Link to the job page, used where a held job waits for review. */
export function reviewHref(job: Job): string | null {
  return isHeld(job) && job.state === 'paused' ? href.job(job.id) : null;
}
