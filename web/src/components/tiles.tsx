import { useState } from 'preact/hooks';
import {
  frameSize,
  parseTiling,
  tileRects,
  type Frame,
  type Job,
  type JobTiling,
  type TileRequest,
} from '../../../src/protocol/index.ts';
import { urls } from '../api.ts';
import { isActive } from '../format.ts';

/** A frame the server has split into tiles and is rendering now. */
export type SplitFrame = Frame & { tiles: NonNullable<Frame['tiles']> };
export const isSplit = (frame: Frame | null | undefined): frame is SplitFrame => Boolean(frame?.tiles);
export const tilesDone = (frame: SplitFrame) => frame.tiles.states.filter((s) => s === 'done').length;

/** The size Blender writes the job's frames at; null until the scene has been read. */
export function outputSize(job: Job): { width: number; height: number } | null {
  const scene = job.scene;
  if (!scene) return null;
  return frameSize(scene.resolutionX, scene.resolutionY, job.overrides.resolutionPercentage ?? scene.resolutionPercentage);
}

/** "Auto", "Off", "4 per frame", "2 × 2 grid", with ", forced" when seams were accepted. */
export function tilingText(tiling: JobTiling): string {
  return `${requestText(tiling.requested)}${tiling.forced && tiling.requested !== 'off' ? ', forced' : ''}`;
}

function requestText(request: TileRequest): string {
  if (request === 'auto') return 'Auto';
  if (request === 'off') return 'Off';
  return 'count' in request ? `${request.count} per frame` : `${request.cols} × ${request.rows} grid`;
}

const pct = (value: number, of: number) => `${(100 * value) / of}%`;

/**
 * A split frame filling in: the frame at its aspect ratio, each finished tile's preview
 * placed where it belongs, tiles being rendered outlined and shimmering, queued ones empty.
 */
export function TiledFrame({ job, frame, images = true }: { job: Job; frame: SplitFrame; images?: boolean }) {
  const size = outputSize(job) ?? { width: 16, height: 9 };
  const rects = tileRects(size.width, size.height, frame.tiles.grid);
  const active = isActive(job);
  return (
    <div
      class="tiled-frame"
      role="img"
      aria-label={`Frame ${frame.number} in tiles: ${tilesDone(frame)} of ${rects.length} rendered`}
      style={{ aspectRatio: `${size.width} / ${size.height}`, '--ratio': size.width / size.height }}
      data-testid="tiled-frame"
    >
      {rects.map((rect, i) => {
        const state = frame.tiles.states[i] ?? 'queued';
        return (
          <div
            key={i}
            class="tile"
            data-tile={i}
            data-state={state === 'rendering' && !active ? 'queued' : state}
            style={{ left: pct(rect.x, size.width), top: pct(rect.y, size.height), width: pct(rect.width, size.width), height: pct(rect.height, size.height) }}
          >
            {state === 'done' && images && <TileImage key={frame.attempts} src={urls.tilePreview(job.id, frame.number, i, 'large')} />}
          </div>
        );
      })}
    </div>
  );
}

/** Fades in once loaded; a tile gone already (the frame was just stitched) simply stays empty. */
function TileImage({ src }: { src: string }) {
  const [status, setStatus] = useState<'loading' | 'loaded' | 'gone'>('loading');
  if (status === 'gone') return null;
  return <img src={src} alt="" class={status} decoding="async" onLoad={() => setStatus('loaded')} onError={() => setStatus('gone')} />;
}

/**
 * Why a job's frames are not split, in the server's words; or, when tiles were forced on a
 * scene with effects that cross tile edges, that seams may show.
 */
export function TilingNote({ job }: { job: Job }) {
  const { blockers, requested, forced } = job.tiling;
  const explicit = typeof requested !== 'string';
  const future = job.startedAt === null;
  const risks = forced && requested !== 'off' ? (job.scene?.tileBlockers ?? []) : [];
  if (blockers.length === 0 && risks.length === 0) return null;
  return blockers.length > 0 ? (
    <div class={explicit ? 'callout warn tiling-note' : 'callout tiling-note'} role="note" data-testid="tiling-note">
      <strong>Frames {future ? 'will be' : 'are'} rendered whole{explicit ? ', not in the tiles asked for' : ''}:</strong>
      <Reasons items={blockers} />
    </div>
  ) : (
    <div class="callout warn tiling-note" role="note" data-testid="tiling-note">
      <strong>Tiles are forced: seams may show where</strong>
      <Reasons items={risks} />
    </div>
  );
}

function Reasons({ items }: { items: string[] }) {
  return (
    <ul>
      {items.map((reason) => (
        <li key={reason}>{reason.charAt(0).toUpperCase() + reason.slice(1)}.</li>
      ))}
    </ul>
  );
}

const presets: { value: string; label: string }[] = [
  { value: 'auto', label: 'Auto: when workers would sit idle' },
  { value: 'off', label: 'Off: always whole frames' },
  { value: '2', label: '2 tiles' },
  { value: '4', label: '4 tiles' },
  { value: '2x2', label: '2 × 2 grid' },
  { value: '3x3', label: '3 × 3 grid' },
  { value: '4x4', label: '4 × 4 grid' },
  { value: 'other', label: 'Other…' },
];

export interface TilesChoice {
  preset: string;
  /** Typed when the preset is "other": a count such as 6 or a grid such as 3x2. */
  text: string;
  force: boolean;
}
export const defaultTiles: TilesChoice = { preset: 'auto', text: '', force: false };

/** The `tiles` field as the server reads it, or the reason it would refuse it. */
export function tilesValue(choice: TilesChoice): { value: string } | { error: string } {
  const value = choice.preset === 'other' ? choice.text.trim() : choice.preset;
  if (value === '') return { error: 'Type a number of tiles, such as 6, or a grid, such as 3x2.' };
  try {
    parseTiling(value);
    return { value };
  } catch (e) {
    return { error: `Tiles: ${(e as Error).message}.` };
  }
}

/** Tiles for a job at upload: a preset or a typed count or grid, and whether to force them. */
export function TilesFields({ choice, onChange }: { choice: TilesChoice; onChange: (next: TilesChoice) => void }) {
  const parsed = tilesValue(choice);
  return (
    <>
      <div class="field">
        <label for="ov-tiles">Tiles</label>
        <select id="ov-tiles" value={choice.preset} onChange={(e) => onChange({ ...choice, preset: e.currentTarget.value })} aria-describedby="ov-tiles-hint">
          {presets.map((p) => (
            <option key={p.value} value={p.value}>
              {p.label}
            </option>
          ))}
        </select>
        {choice.preset === 'other' && (
          <input
            type="text"
            aria-label="Tiles per frame: a count or a grid"
            placeholder="e.g. 6 or 3x2"
            value={choice.text}
            aria-invalid={'error' in parsed}
            onInput={(e) => onChange({ ...choice, text: e.currentTarget.value })}
          />
        )}
        <small id="ov-tiles-hint" class={'error' in parsed && choice.text !== '' ? 'hint invalid' : 'hint'} aria-live="polite">
          {'error' in parsed ? (choice.text === '' ? 'A count such as 6 or a grid such as 3x2' : parsed.error) : 'Split each frame over several workers'}
        </small>
      </div>
      <div class="field wide">
        <label class="check">
          <input type="checkbox" checked={choice.force} disabled={choice.preset === 'off'} onChange={(e) => onChange({ ...choice, force: e.currentTarget.checked })} aria-describedby="ov-force-hint" />
          Force tiles
        </label>
        <small id="ov-force-hint" class="hint">
          Split frames even when the scene uses effects that spread across tile edges (denoising, glare, blur): seams may show.
        </small>
      </div>
    </>
  );
}
