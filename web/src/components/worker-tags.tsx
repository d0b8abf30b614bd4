import { useState } from 'preact/hooks';
import type { Worker } from '../../../src/protocol/index.ts';
import { api } from '../api.ts';
import { farm } from '../store.ts';

/**
 * A worker's tags, editable: tags set here are kept on the server, survive restarts and
 * replace the worker's own `tags` setting; "Use its own" goes back to that setting.
 */
export function WorkerTags({ worker }: { worker: Worker }) {
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const save = async (tags: string[] | null) => {
    setBusy(true);
    try {
      farm.workers.set(worker.id, await api.setWorkerTags(worker.id, tags));
      setEditing(false);
    } catch (e) {
      farm.notice('error', `Could not set the tags of ${worker.name}: ${(e as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  if (!editing) {
    return (
      <span class="w-tags" data-testid="worker-tags">
        {worker.tags.length > 0 ? ` · tags ${worker.tags.join(', ')}` : ' · no tags'}
        {worker.tagsSetOnServer && <span class="muted"> (set here)</span>}{' '}
        <button
          type="button"
          class="link small"
          onClick={() => {
            setText(worker.tags.join(', '));
            setEditing(true);
          }}
          aria-label={`Edit the tags of ${worker.name}`}
        >
          edit
        </button>
      </span>
    );
  }
  return (
    <form
      class="w-tags-edit"
      onSubmit={(event) => {
        event.preventDefault();
        void save(text.split(',').map((tag) => tag.trim().toLowerCase()).filter(Boolean));
      }}
    >
      <label>
        <span class="visually-hidden">Tags of {worker.name}, separated by commas</span>
        <input value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} placeholder="gpu, room-2" disabled={busy} data-autofocus />
      </label>
      <button type="submit" class="small" disabled={busy}>
        Save
      </button>
      {worker.tagsSetOnServer && (
        <button type="button" class="small" disabled={busy} onClick={() => void save(null)} title="Go back to the tags in the worker's settings.conf">
          Use its own
        </button>
      )}
      <button type="button" class="small" disabled={busy} onClick={() => setEditing(false)}>
        Cancel
      </button>
    </form>
  );
}
