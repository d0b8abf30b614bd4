import { useState } from 'preact/hooks';
import { outputFormats, parseFrameRange, type Job } from '../../../src/protocol/index.ts';
import { ApiError, uploadBlend, type Upload } from '../api.ts';
import { bytes, isHeld, stateLabels } from '../format.ts';
import { canDigest, NEEDS_SECURE_CONTEXT } from '../project/digest.ts';
import type { PickedProject } from '../project/read-project.ts';
import { sendProject, type ProjectProgress } from '../project/send-project.ts';
import { href } from '../router.ts';
import { farm } from '../store.ts';
import { DropZone } from './drop-zone.tsx';
import { formatName, HeldSettings } from './job-controls.tsx';
import { ProjectPicker } from './project-picker.tsx';
import { defaultTiles, TilesFields, tilesValue, type TilesChoice } from './tiles.tsx';
import { ProgressBar } from './ui.tsx';

type Phase =
  | { kind: 'idle'; last?: { jobId: string; name: string } }
  | { kind: 'reading'; name: string }
  | { kind: 'choosing'; project: PickedProject }
  | { kind: 'uploading'; name: string; sent: number; total: number; upload: Upload; project?: ProjectProgress }
  | { kind: 'rejected'; name: string | null; message: string }
  | { kind: 'submitted'; jobId: string; fileName: string };

interface Overrides {
  name: string;
  frames: string;
  fileFormat: string;
  resolutionPercentage: string;
  samples: string;
  priority: string;
  /** Empty: the server's default, interleaved. */
  order: string;
  /** Comma-separated worker tags; empty: any worker. */
  requiredTags: string;
}

const noOverrides: Overrides = { name: '', frames: '', fileFormat: '', resolutionPercentage: '', samples: '', priority: '', order: '', requiredTags: '' };

/**
 * Drop or choose a .blend, or a folder or .zip holding one and the files it uses: it
 * uploads with a progress bar; with "review" on, the settings Blender reads from the file
 * are shown for editing before the job starts.
 */
export function SubmitPanel() {
  const [phase, setPhase] = useState<Phase>({ kind: 'idle' });
  const [hold, setHold] = useState(true);
  const [allowScripts, setAllowScripts] = useState(false);
  const [overrides, setOverrides] = useState<Overrides>(noOverrides);
  const [tiles, setTiles] = useState<TilesChoice>(defaultTiles);
  const online = [...farm.workers.values()].filter((w) => w.state !== 'offline').length;

  /** The job's form fields, or why they cannot be sent (checked before any byte is). */
  const jobFields = (): Record<string, string> | { error: string } => {
    const fields: Record<string, string> = { hold: String(hold), allowScripts: String(allowScripts) };
    try {
      if (overrides.frames.trim()) parseFrameRange(overrides.frames); // same rules as the server
    } catch (e) {
      return { error: (e as Error).message };
    }
    const tiling = tilesValue(tiles);
    if ('error' in tiling) return { error: tiling.error };
    for (const key of Object.keys(noOverrides) as (keyof Overrides)[]) {
      const value = overrides[key].trim();
      if (value) fields[key] = value;
    }
    if (tiling.value !== 'auto') fields.tiles = tiling.value;
    if (tiles.force && tiling.value !== 'off') fields.forceTiles = 'true';
    return fields;
  };

  /** Starts `send` (a .blend alone, or a project and then its main .blend) and follows it to the job. */
  const start = (name: string, send: (fields: Record<string, string>, progress: (sent: number, total: number, project?: ProjectProgress) => void) => Upload, total: number) => {
    const fields = jobFields();
    if ('error' in fields) {
      setPhase({ kind: 'rejected', name, message: fields.error as string });
      return;
    }
    const upload = send(fields, (sent, total, project) =>
      setPhase((p) => (p.kind === 'uploading' && p.upload === upload ? { ...p, sent, total, project } : p)),
    );
    setPhase({ kind: 'uploading', name, sent: 0, total, upload });
    upload.promise.then(
      (job: Job) => {
        farm.jobs.set(job.id, job);
        if (hold) setPhase({ kind: 'submitted', jobId: job.id, fileName: name });
        else setPhase({ kind: 'idle', last: { jobId: job.id, name: job.name } });
      },
      (error: ApiError) => {
        if (error.status === -1) setPhase({ kind: 'idle' });
        else setPhase({ kind: 'rejected', name, message: error.message });
      },
    );
  };

  const startBlend = (file: File) => start(file.name, (fields, progress) => uploadBlend(file, fields, progress), file.size);

  const startProject = (project: PickedProject, main: string) =>
    start(`${project.name}/${main}`, (fields, progress) => sendProject(project, main, fields, (p) => progress(p.done, p.total, p)), 0);

  const readProject = (name: string, reading: Promise<PickedProject>) => {
    if (!canDigest()) {
      // Said before unpacking anything: without hashes the project cannot be sent at all.
      setPhase({ kind: 'rejected', name, message: NEEDS_SECURE_CONTEXT });
      return;
    }
    setPhase({ kind: 'reading', name });
    reading.then(
      (project) => (project.blends.length === 1 ? startProject(project, project.blends[0]!) : setPhase({ kind: 'choosing', project })),
      (error: Error) => setPhase({ kind: 'rejected', name, message: error.message }),
    );
  };

  const reset = () => setPhase({ kind: 'idle' });

  const submittedJob = phase.kind === 'submitted' ? farm.jobs.get(phase.jobId) : undefined;

  return (
    <section class="panel submit" aria-labelledby="submit-title" data-testid="submit">
      <h2 id="submit-title">Submit a scene</h2>
      {online === 0 && farm.loaded && (
        <p class="callout warn" role="status" data-testid="no-workers">
          No workers are online. You can still submit: the job waits until a worker connects (its scene settings are read then).
        </p>
      )}

      {phase.kind === 'idle' && phase.last && (
        <p class="callout ok" role="status" data-testid="submitted">
          <strong>“{phase.last.name}”</strong> was added to the queue. <a href={href.job(phase.last.jobId)}>Open the job</a>
        </p>
      )}
      {phase.kind === 'reading' && (
        <p role="status" data-testid="reading-project">
          <span class="spinner" aria-hidden="true" /> Reading <strong>{phase.name}</strong>…
        </p>
      )}
      {phase.kind === 'choosing' && <ProjectPicker project={phase.project} onSubmit={(main) => startProject(phase.project, main)} onCancel={reset} />}
      {(phase.kind === 'idle' || phase.kind === 'rejected') && (
        <>
          <DropZone onBlend={startBlend} onProject={readProject} onError={(message) => setPhase({ kind: 'rejected', name: null, message })} />
          {phase.kind === 'rejected' && (
            <p class="callout error" role="alert" data-testid="upload-error">
              {phase.name ? <strong>{phase.name} was not accepted: </strong> : null}
              {phase.message}
            </p>
          )}
          <div class="submit-options">
            <label class="check">
              <input type="checkbox" checked={hold} onChange={(e) => setHold(e.currentTarget.checked)} />
              Review the scene settings before rendering
            </label>
            <label class="check">
              <input type="checkbox" checked={allowScripts} onChange={(e) => setAllowScripts(e.currentTarget.checked)} />
              Allow Python scripts embedded in the file
            </label>
            {allowScripts && (
              <p class="callout warn">
                Scripts inside the .blend will run on every worker. Only allow this for files you trust; the job is marked “Runs
                scripts”.
              </p>
            )}
            <details>
              <summary>Override settings at upload</summary>
              <div class="form-grid">
                <OverrideField id="ov-name" label="Job name" value={overrides.name} placeholder="file name" onInput={(v) => setOverrides({ ...overrides, name: v })} />
                <OverrideField id="ov-frames" label="Frames" value={overrides.frames} placeholder="e.g. 1-250 or 1-250:5" onInput={(v) => setOverrides({ ...overrides, frames: v })} />
                <div class="field">
                  <label for="ov-format">Image format</label>
                  <select id="ov-format" value={overrides.fileFormat} onChange={(e) => setOverrides({ ...overrides, fileFormat: e.currentTarget.value })}>
                    <option value="">As in the file</option>
                    {outputFormats.map((f) => (
                      <option key={f} value={f}>
                        {formatName(f)}
                      </option>
                    ))}
                  </select>
                </div>
                <OverrideField id="ov-res" label="Resolution %" type="number" value={overrides.resolutionPercentage} placeholder="as in the file" onInput={(v) => setOverrides({ ...overrides, resolutionPercentage: v })} />
                <OverrideField id="ov-samples" label="Samples" type="number" value={overrides.samples} placeholder="as in the file" onInput={(v) => setOverrides({ ...overrides, samples: v })} />
                <OverrideField id="ov-priority" label="Priority" type="number" value={overrides.priority} placeholder="0" onInput={(v) => setOverrides({ ...overrides, priority: v })} />
                <div class="field">
                  <label for="ov-order">Frame order</label>
                  <select id="ov-order" value={overrides.order} onChange={(e) => setOverrides({ ...overrides, order: e.currentTarget.value })}>
                    <option value="">First, last, middle, then filling in</option>
                    <option value="sequential">In frame order (unbaked simulations)</option>
                  </select>
                </div>
                <OverrideField id="ov-tags" label="Worker tags" value={overrides.requiredTags} placeholder="any worker, or e.g. gpu,room-2" onInput={(v) => setOverrides({ ...overrides, requiredTags: v })} />
                <TilesFields choice={tiles} onChange={setTiles} />
              </div>
            </details>
          </div>
        </>
      )}

      {phase.kind === 'uploading' && <Uploading phase={phase} />}

      {phase.kind === 'submitted' && (
        <Submitted
          phase={phase}
          job={submittedJob}
          online={online}
          onReset={reset}
          onStarted={(job) => setPhase({ kind: 'idle', last: { jobId: job.id, name: job.name } })}
        />
      )}
    </section>
  );
}

function OverrideField(props: { id: string; label: string; value: string; placeholder: string; type?: 'text' | 'number'; onInput: (v: string) => void }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.type === 'number' ? (
        <input id={props.id} type="number" step={1} value={props.value} placeholder={props.placeholder} onInput={(e) => props.onInput(e.currentTarget.value)} />
      ) : (
        <input id={props.id} type="text" value={props.value} placeholder={props.placeholder} onInput={(e) => props.onInput(e.currentTarget.value)} />
      )}
    </div>
  );
}

function Submitted(props: {
  phase: Extract<Phase, { kind: 'submitted' }>;
  job: Job | undefined;
  online: number;
  onReset: () => void;
  onStarted: (job: Job) => void;
}) {
  const { job, phase } = props;
  const another = (
    <button type="button" class="small" onClick={props.onReset}>
      Submit another file
    </button>
  );
  if (!job) {
    return (
      <div class="submitted">
        <p>The job for {phase.fileName} is no longer on the farm.</p>
        {another}
      </div>
    );
  }
  if (!['probing', 'paused'].includes(job.state) || (job.state === 'paused' && !isHeld(job))) {
    // Started elsewhere (the queue, another screen), or it failed while being read.
    return (
      <div class="submitted" role="status">
        <p>
          <strong>“{job.name}”</strong> is {stateLabels[job.state].toLowerCase()}
          {job.state === 'failed' && job.error ? `: ${job.error}` : '.'} <a href={href.job(job.id)}>Open the job</a>
        </p>
        {another}
      </div>
    );
  }
  return (
    <div class="submitted">
      <div class="submitted-head">
        <p role="status" data-testid={job.state === 'probing' ? 'probing' : undefined}>
          {job.state === 'probing' ? <span class="spinner" aria-hidden="true" /> : null} Uploaded <strong>{phase.fileName}</strong>.{' '}
          {job.state === 'probing'
            ? `Reading its scene settings…${props.online === 0 ? ' waiting for a worker to come online.' : ''}`
            : 'It waits, paused, until you start it.'}
        </p>
        {another}
      </div>
      {job.state === 'paused' && <HeldSettings key={job.id} job={job} onStarted={() => props.onStarted(farm.jobs.get(job.id) ?? job)} />}
    </div>
  );
}

function Uploading({ phase }: { phase: Extract<Phase, { kind: 'uploading' }> }) {
  const hashing = phase.project?.stage === 'hashing';
  const reused = phase.project?.stage === 'uploading' ? phase.project.reusedFiles : null;
  const verb = hashing ? 'Reading' : 'Uploading';
  return (
    <div class="uploading" data-testid="upload-progress">
      <p>
        {verb} <strong>{phase.name}</strong> · {bytes(phase.sent)} of {bytes(phase.total)}
        {reused !== null && (
          <span data-testid="reused-files">
            {' '}
            · {reused} {reused === 1 ? 'file' : 'files'} already on the server
          </span>
        )}
      </p>
      {/* Keyed by stage: a new bar for the upload, not the full reading bar sliding back to 0. */}
      <ProgressBar key={verb} value={phase.sent} max={Math.max(1, phase.total)} label={`${verb} ${phase.name}`} state="rendering" />
      <button type="button" class="small" onClick={() => phase.upload.abort()}>
        Cancel upload
      </button>
    </div>
  );
}
