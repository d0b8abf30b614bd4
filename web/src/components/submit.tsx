import { useRef, useState } from 'preact/hooks';
import { outputFormats, parseFrameRange, type Job } from '../../../src/protocol/index.ts';
import { ApiError, uploadBlend, type Upload } from '../api.ts';
import { bytes, isHeld, stateLabels } from '../format.ts';
import { href } from '../router.ts';
import { farm } from '../store.ts';
import { formatName, HeldSettings } from './job-controls.tsx';
import { defaultTiles, TilesFields, tilesValue, type TilesChoice } from './tiles.tsx';
import { ProgressBar } from './ui.tsx';

type Phase =
  | { kind: 'idle'; last?: { jobId: string; name: string } }
  | { kind: 'uploading'; file: File; sent: number; total: number; upload: Upload }
  | { kind: 'rejected'; file: File | null; message: string }
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
 * Drop or choose a .blend: it uploads with a progress bar; with "review" on, the settings
 * Blender reads from the file are shown for editing before the job starts.
 */
export function SubmitPanel() {
  const [phase, setPhase] = useState<Phase>({ kind: 'idle' });
  const [hold, setHold] = useState(true);
  const [allowScripts, setAllowScripts] = useState(false);
  const [overrides, setOverrides] = useState<Overrides>(noOverrides);
  const [tiles, setTiles] = useState<TilesChoice>(defaultTiles);
  const [dragging, setDragging] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const online = [...farm.workers.values()].filter((w) => w.state !== 'offline').length;

  const start = (file: File) => {
    const fields: Record<string, string> = { hold: String(hold), allowScripts: String(allowScripts) };
    try {
      if (overrides.frames.trim()) parseFrameRange(overrides.frames); // same rules as the server
    } catch (e) {
      setPhase({ kind: 'rejected', file, message: (e as Error).message });
      return;
    }
    const tiling = tilesValue(tiles);
    if ('error' in tiling) {
      setPhase({ kind: 'rejected', file, message: tiling.error });
      return;
    }
    for (const key of Object.keys(noOverrides) as (keyof Overrides)[]) {
      const value = overrides[key].trim();
      if (value) fields[key] = value;
    }
    if (tiling.value !== 'auto') fields.tiles = tiling.value;
    if (tiles.force && tiling.value !== 'off') fields.forceTiles = 'true';
    const upload = uploadBlend(file, fields, (sent, total) =>
      setPhase((p) => (p.kind === 'uploading' && p.upload === upload ? { ...p, sent, total } : p)),
    );
    setPhase({ kind: 'uploading', file, sent: 0, total: file.size, upload });
    upload.promise.then(
      (job: Job) => {
        farm.jobs.set(job.id, job);
        if (hold) setPhase({ kind: 'submitted', jobId: job.id, fileName: file.name });
        else setPhase({ kind: 'idle', last: { jobId: job.id, name: job.name } });
      },
      (error: ApiError) => {
        if (error.status === -1) setPhase({ kind: 'idle' });
        else setPhase({ kind: 'rejected', file, message: error.message });
      },
    );
  };

  const reset = () => {
    setPhase({ kind: 'idle' });
    if (input.current) input.current.value = '';
  };

  const busy = phase.kind === 'uploading';
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
      {(phase.kind === 'idle' || phase.kind === 'rejected') && (
        <>
          <div
            class={dragging ? 'dropzone dragging' : 'dropzone'}
            onDragEnter={(e) => {
              e.preventDefault();
              setDragging(true);
            }}
            onDragOver={(e) => {
              e.preventDefault();
              if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
            }}
            onDragLeave={(e) => {
              if (e.currentTarget === e.target) setDragging(false);
            }}
            onDrop={(e) => {
              e.preventDefault();
              setDragging(false);
              const file = e.dataTransfer?.files[0];
              if (file) start(file);
            }}
          >
            <svg class="drop-icon" viewBox="0 0 24 24" aria-hidden="true">
              <path d="M12 3v12m0-12-4 4m4-4 4 4M4 15v4a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-4" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" />
            </svg>
            <p>
              <span>
                Drop a <strong>.blend</strong> file here, or
              </span>
              <button type="button" class="primary" onClick={() => input.current?.click()}>
                Choose a file…
              </button>
            </p>
            <input
              ref={input}
              id="blend-file"
              class="visually-hidden"
              type="file"
              accept=".blend,.blend1,application/x-blender"
              aria-label="Blender file to render"
              tabIndex={-1}
              onChange={(e) => {
                const file = e.currentTarget.files?.[0];
                if (file) start(file);
              }}
            />
          </div>
          {phase.kind === 'rejected' && (
            <p class="callout error" role="alert" data-testid="upload-error">
              {phase.file ? <strong>{phase.file.name} was not accepted: </strong> : null}
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

      {phase.kind === 'uploading' && (
        <div class="uploading" data-testid="upload-progress">
          <p>
            Uploading <strong>{phase.file.name}</strong> · {bytes(phase.sent)} of {bytes(phase.total)}
          </p>
          <ProgressBar value={phase.sent} max={Math.max(1, phase.total)} label={`Uploading ${phase.file.name}`} state="rendering" />
          <button type="button" class="small" onClick={() => phase.upload.abort()}>
            Cancel upload
          </button>
        </div>
      )}

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
