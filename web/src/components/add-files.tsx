import { useRef, useState } from 'preact/hooks';
import type { Job } from '../../../src/protocol/index.ts';
import type { Upload } from '../api.ts';
import { bytes } from '../format.ts';
import { addProjectFiles, type ProjectProgress } from '../project/send-project.ts';
import { isZip, projectFromZip, type PickedProject } from '../project/read-project.ts';
import { FolderInput } from './drop-zone.tsx';
import { farm } from '../store.ts';
import { ProgressBar } from './ui.tsx';

/**
 * A job held because its project lacks files: choose the folder (or .zip) it came from,
 * with the files now in place. Only the files the server lacks are sent, and the job's
 * scene is read again.
 */
export function AddFiles({ job }: { job: Job }) {
  const folderInput = useRef<HTMLInputElement>(null);
  const zipInput = useRef<HTMLInputElement>(null);
  const [sending, setSending] = useState<{ name: string; upload: Upload; progress: ProjectProgress | null } | null>(null);
  const [error, setError] = useState<string | null>(null);

  const send = async (name: string, reading: Promise<PickedProject>) => {
    setError(null);
    try {
      const upload = addProjectFiles(await reading, job, (progress) => setSending((s) => s && { ...s, progress }));
      setSending({ name, upload, progress: null });
      await upload.promise;
      farm.notice('info', `Files added to ${job.name}: reading its scene again.`);
    } catch (e) {
      if ((e as { status?: number }).status !== -1) setError((e as Error).message);
    } finally {
      setSending(null);
    }
  };

  const progress = sending?.progress;
  const verb = progress?.stage === 'uploading' ? 'Uploading' : 'Reading';
  return (
    <section class="panel add-files" aria-label="Add the missing files" data-testid="add-files">
      <p class="lead">
        Put the missing files in the project's folder, then add the folder (or a .zip of it): only the files the farm lacks are sent, and the scene is read
        again.
      </p>
      {error && (
        <p class="callout error" role="alert">
          {error}
        </p>
      )}
      {sending ? (
        <div class="uploading" data-testid="add-files-progress">
          <p>
            {verb} <strong>{sending.name}</strong>
            {progress && ` · ${bytes(progress.done)} of ${bytes(progress.total)}`}
            {progress?.stage === 'uploading' && ` · ${progress.reusedFiles} files already on the server`}
          </p>
          <ProgressBar key={verb} value={progress?.done ?? 0} max={Math.max(1, progress?.total ?? 1)} label={`${verb} ${sending.name}`} state="rendering" />
          <button type="button" class="small" onClick={() => sending.upload.abort()}>
            Cancel
          </button>
        </div>
      ) : (
        <div class="actions">
          <button type="button" onClick={() => folderInput.current?.click()}>
            Add a folder…
          </button>
          <button type="button" onClick={() => zipInput.current?.click()}>
            Add a .zip…
          </button>
        </div>
      )}
      <FolderInput
        inputRef={folderInput}
        id="add-files-folder"
        label="Project folder with the missing files"
        onProject={(name, reading) => void send(name, reading)}
        onError={setError}
      />
      <input
        ref={zipInput}
        id="add-files-zip"
        class="visually-hidden"
        type="file"
        accept=".zip,application/zip"
        aria-label="Project .zip with the missing files"
        tabIndex={-1}
        onChange={(e) => {
          const file = e.currentTarget.files?.[0];
          if (file && isZip(file)) void send(file.name, projectFromZip(file));
          else if (file) setError(`${file.name} is not a .zip`);
          e.currentTarget.value = '';
        }}
      />
    </section>
  );
}
