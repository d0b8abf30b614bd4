import { Component } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { Frame, FrameState, Job } from '../../../src/protocol/index.ts';
import { urls } from '../api.ts';
import { duration, isActive } from '../format.ts';
import { isSplit, tilesDone } from './tiles.tsx';

const MIN_CELL_W = 104;
const GAP = 6;

/** How a frame shows: a job that stopped leaves no frame "rendering". */
export function shownState(job: Job, frame: Frame): FrameState {
  return frame.state === 'rendering' && !isActive(job) ? 'queued' : frame.state;
}

/** How many frames show in each state, from how many are in each (see shownState). */
export function shownCounts(job: Job, counts: Record<FrameState, number>): Record<FrameState, number> {
  return isActive(job) ? counts : { ...counts, queued: counts.queued + counts.rendering, rendering: 0 };
}

const stateWords: Record<FrameState, string> = { queued: 'queued', rendering: 'rendering', done: 'done', failed: 'failed' };

/**
 * Every frame of a job as a tile, coloured by state, with a thumbnail once rendered.
 * Virtualised: only the rows in view (plus a few) exist in the page, so a 100,000-frame
 * job scrolls as smoothly as a ten-frame one.
 */
export function FrameGrid(props: {
  job: Job;
  frames: Frame[];
  thumbnails: boolean;
  onOpen: (frame: Frame) => void;
  scrollTo: { frame: number; seq: number } | null;
}) {
  const { job, frames } = props;
  const scroller = useRef<HTMLDivElement>(null);
  const [size, setSize] = useState({ width: 800, height: 480 });
  const [scrollTop, setScrollTop] = useState(0);
  const cellH = props.thumbnails ? 96 : 44;
  const rowH = cellH + GAP;

  useLayoutEffect(() => {
    const el = scroller.current!;
    const measure = () => setSize({ width: el.clientWidth, height: el.clientHeight || 480 });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  useEffect(() => {
    const el = scroller.current!;
    let pending = false;
    const onScroll = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        setScrollTop(el.scrollTop);
      });
    };
    el.addEventListener('scroll', onScroll, { passive: true });
    return () => el.removeEventListener('scroll', onScroll);
  }, []);

  const columns = Math.max(1, Math.floor((size.width + GAP) / (MIN_CELL_W + GAP)));
  const rows = Math.ceil(frames.length / columns);
  const totalH = Math.max(0, rows * rowH - GAP);

  useEffect(() => {
    const target = props.scrollTo;
    if (!target) return;
    const i = frames.findIndex((f) => f.number >= target.frame);
    if (i < 0) return;
    const el = scroller.current!;
    const row = Math.floor(i / columns);
    el.scrollTop = Math.max(0, row * rowH - el.clientHeight / 3);
    setScrollTop(el.scrollTop);
    requestAnimationFrame(() => el.querySelector<HTMLElement>(`[data-frame="${frames[i]!.number}"]`)?.focus());
  }, [props.scrollTo?.seq]);

  const overscan = 3;
  const firstRow = Math.max(0, Math.floor(scrollTop / rowH) - overscan);
  const lastRow = Math.min(rows, Math.ceil((scrollTop + size.height) / rowH) + overscan);
  const rowEls = [];
  for (let r = firstRow; r < lastRow; r++) {
    const cells = [];
    for (let c = 0; c < columns; c++) {
      const frame = frames[r * columns + c];
      if (!frame) break;
      cells.push(<FrameCell key={frame.number} job={job} frame={frame} thumbnails={props.thumbnails} onOpen={props.onOpen} />);
    }
    rowEls.push(
      <div
        key={r}
        class="grid-row"
        role="presentation"
        style={{ top: `${r * rowH}px`, height: `${cellH}px`, gridTemplateColumns: `repeat(${columns}, minmax(0, 1fr))` }}
      >
        {cells}
      </div>,
    );
  }
  return (
    <div
      ref={scroller}
      class="grid-scroller"
      tabIndex={0}
      role="region"
      aria-label={`Frames of ${job.name}: ${frames.length.toLocaleString()} tiles; use Tab to move between them and Enter to open one`}
      style={{ height: `${Math.min(totalH + 2, 560)}px` }}
    >
      <div class="grid-space" style={{ height: `${totalH}px` }}>
        {rowEls}
      </div>
    </div>
  );
}

interface CellProps {
  job: Job;
  frame: Frame;
  thumbnails: boolean;
  onOpen: (f: Frame) => void;
}

/**
 * A tile re-renders only when its own frame changed (a change replaces the frame object)
 * or the job stopped or started: scrolling and live batches touch few tiles.
 */
class FrameCell extends Component<CellProps> {
  override shouldComponentUpdate(next: CellProps): boolean {
    const now = this.props;
    return (
      next.frame !== now.frame ||
      next.thumbnails !== now.thumbnails ||
      next.job.id !== now.job.id ||
      isActive(next.job) !== isActive(now.job)
    );
  }

  override render() {
    return <FrameTile {...this.props} />;
  }
}

function FrameTile({ job, frame, thumbnails, onOpen }: CellProps) {
  const state = shownState(job, frame);
  const [broken, setBroken] = useState(false);
  const detail =
    state === 'rendering' ? `${Math.round(frame.progress)}%` : state === 'done' ? duration(frame.renderMs) : state === 'failed' ? 'failed' : '';
  const tiles = state === 'rendering' && isSplit(frame) ? `${tilesDone(frame)}/${frame.tiles.states.length} tiles` : null;
  const label = `Frame ${frame.number}: ${stateWords[state]}${state === 'rendering' ? ` ${Math.round(frame.progress)}%` : ''}${
    state === 'done' && frame.renderMs !== null ? ` in ${duration(frame.renderMs)}` : ''
  }${tiles ? `, ${tiles} done` : ''}`;
  return (
    <button type="button" class="cell" data-state={state} data-frame={frame.number} aria-label={label} title={label} onClick={() => onOpen(frame)}>
      {state === 'done' && thumbnails && !broken ? (
        <img
          class="thumb"
          src={urls.preview(job.id, frame.number, 'small')}
          alt=""
          loading="lazy"
          decoding="async"
          onError={() => setBroken(true)}
        />
      ) : null}
      {state === 'rendering' && <span class="cell-progress" style={{ width: `${frame.progress}%` }} />}
      {tiles && (
        <span class="cell-tiles" aria-hidden="true">
          {tiles}
        </span>
      )}
      <span class="cell-label">
        <span class="cell-number">{frame.number}</span>
        {detail && <span class="cell-detail">{detail}</span>}
      </span>
    </button>
  );
}
