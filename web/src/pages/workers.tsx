import { useState } from 'preact/hooks';
import type { Worker } from '../../../src/protocol/index.ts';
import { api, type WorkerMode } from '../api.ts';
import { asleepReason, asleepText, duration, timeAgo, workerMode } from '../format.ts';
import { WorkerTags } from '../components/worker-tags.tsx';
import { href } from '../router.ts';
import { farm, useNow } from '../store.ts';

export function WorkersPage() {
  const now = useNow(5000);
  const workers = [...farm.workers.values()].sort(
    (a, b) => Number(a.state === 'offline') - Number(b.state === 'offline') || a.name.localeCompare(b.name),
  );
  const online = workers.filter((w) => w.state !== 'offline').length;
  return (
    <main id="main" tabIndex={-1} class="page">
      <section class="panel" aria-labelledby="workers-title">
        <h1 id="workers-title" class="h2">
          Workers <span class="count">{online} of {workers.length} online</span>
        </h1>
        {!farm.loaded ? (
          <p class="muted">Loading…</p>
        ) : workers.length === 0 ? (
          <p class="muted">
            No worker has connected yet. Start one on a render machine with{' '}
            <code>node bin/archenland.js worker --address &lt;server&gt;</code>, with a worker token in its{' '}
            <code>settings.conf</code>.
          </p>
        ) : (
          <div class="worker-table">
            <div class="worker-row worker-header" aria-hidden="true">
              <span>Worker</span>
              <span>State</span>
              <span>Mode</span>
              <span>Threads</span>
              <span>Frames</span>
              <span>Per frame</span>
              <span class="right">Actions</span>
            </div>
            <ul class="worker-list">
              {workers.map((w) => (
                <WorkerRow key={w.id} worker={w} now={now} />
              ))}
            </ul>
          </div>
        )}
      </section>
    </main>
  );
}

/** " · tile 3/4": which tile of a split frame, counted from 1. */
function TileOf({ tile, tiles }: { tile: number; tiles?: number }) {
  return <span class="w-tile">{` · tile ${tile + 1}${tiles ? `/${tiles}` : ''}`}</span>;
}

const modeLabels = { enabled: 'Enabled', draining: 'Draining', disabled: 'Disabled' } as const;

function WorkerRow({ worker, now }: { worker: Worker; now: number }) {
  const [busy, setBusy] = useState(false);
  const mode = workerMode(worker);
  const job = worker.current ? farm.jobs.get(worker.current.jobId) : undefined;
  const set = async (next: WorkerMode) => {
    setBusy(true);
    try {
      farm.workers.set(worker.id, await api.workerMode(worker.id, next));
    } catch (e) {
      farm.notice('error', `Could not ${next} ${worker.name}: ${(e as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <li class="worker-row" data-state={worker.state} data-worker={worker.id}>
      <div class="w-name">
        <strong>{worker.name}</strong>
        <span class="job-meta">
          {worker.host}
          {worker.blenders.length > 0 ? ` · Blender ${worker.blenders.join(', ')}` : worker.blenderVersion ? ` · Blender ${worker.blenderVersion}` : ''}
          {worker.device && worker.device.type !== 'CPU' && (
            <span data-testid="worker-device">{` · ${worker.device.type}: ${worker.device.devices.join(', ') || 'no device'}`}</span>
          )}
          <WorkerTags worker={worker} />
        </span>
      </div>
      <div class="w-state" data-testid="worker-state">
        <span class="dot" data-state={worker.asleep && !worker.current ? 'asleep' : worker.state} aria-hidden="true" />
        {worker.state === 'offline' ? (
          <span>
            Offline <span class="muted">· seen {timeAgo(worker.lastSeenAt, now)}</span>
          </span>
        ) : worker.current ? (
          <span class="w-current">
            Rendering{' '}
            <a href={href.job(worker.current.jobId)}>
              frame {worker.current.frame}
              {worker.current.tile !== undefined && <TileOf tile={worker.current.tile} tiles={worker.current.tiles} />}
              {job ? ` of ${job.name}` : ''}
            </a>{' '}
            <span class="percent">{Math.round(worker.current.percent)}%</span>
            <span class="mini-progress" aria-hidden="true">
              <span style={{ width: `${worker.current.percent}%` }} />
            </span>
            {worker.asleep && <span class="muted"> · then {asleepText(worker.asleep, now)}</span>}
          </span>
        ) : worker.asleep ? (
          <span class="w-asleep" data-testid="worker-asleep" title="Outside the hours of its schedules: it takes no frames">
            {asleepText(worker.asleep, now).replace(/^a/, 'A')}
            <span class="muted" data-testid="worker-asleep-reason">{` · ${asleepReason(worker.asleep)}`}</span>
          </span>
        ) : (
          <span>Idle</span>
        )}
      </div>
      <div class="w-mode">
        <span class="badge" data-mode={mode} title={mode === 'draining' ? 'Finishes its current frame, then takes no more' : undefined}>
          {modeLabels[mode]}
        </span>
      </div>
      <div class="w-num">
        <span class="label">Threads</span> {worker.threads === 0 ? 'auto' : worker.threads}
      </div>
      <div class="w-num">
        <span class="label">Frames</span> {worker.framesRendered.toLocaleString()}
      </div>
      <div class="w-num">
        <span class="label">Per frame</span> {duration(worker.averageFrameMs)}
      </div>
      <div class="c-actions">
        <div class="actions" role="group" aria-label={`Actions for ${worker.name}`}>
          {worker.enabled ? (
            <>
              <button
                type="button"
                class="small"
                disabled={busy}
                onClick={() => set('drain')}
                aria-label={`Drain ${worker.name}`}
                title="Finish the current frame, then take no more"
              >
                Drain
              </button>
              <button
                type="button"
                class="small subtle-danger"
                disabled={busy}
                onClick={() => set('disable')}
                aria-label={`Disable ${worker.name}`}
                title="Stop now: the current frame goes back to the queue"
              >
                Disable
              </button>
            </>
          ) : (
            <button type="button" class="small primary" disabled={busy} onClick={() => set('enable')} aria-label={`Enable ${worker.name}`}>
              Enable
            </button>
          )}
        </div>
      </div>
    </li>
  );
}
