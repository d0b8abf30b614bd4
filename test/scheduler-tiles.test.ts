import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planTiling, tileBlockers } from '../src/jobs/index.ts';
import { gridForCount, parseTiling, tileRects, type SceneInfo } from '../src/protocol/index.ts';
import { chooseSplit, MIN_TILE_MS, Scheduler, type Assignment } from '../src/scheduler/index.ts';

const auto = { mode: 'auto' as const, frameWidth: 400, frameHeight: 300 };
const grid2x2 = { mode: 'grid' as const, grid: { cols: 2, rows: 2 }, frameWidth: 400, frameHeight: 300 };

function make(options: { maxAttempts?: number; now?: () => number; duplicateTail?: boolean } = {}) {
  return new Scheduler({ maxAttempts: options.maxAttempts ?? 3, blockAfterFailures: 99, now: options.now, duplicateTail: options.duplicateTail });
}

const ready = (s: Scheduler, ...workers: string[]) => workers.forEach((w) => s.workerReady(w));
const label = (a: Assignment) => (a.tile ? `${a.frame}/${a.tile.index}` : `${a.frame}`);

describe('tile geometry', () => {
  test('tiles cover the frame exactly, on whole pixels, row by row from the top-left', () => {
    const rects = tileRects(97, 61, { cols: 3, rows: 2 });
    assert.deepEqual(rects.map((r) => [r.x, r.y, r.width, r.height]), [
      [0, 0, 32, 31], [32, 0, 33, 31], [65, 0, 32, 31],
      [0, 31, 32, 30], [32, 31, 33, 30], [65, 31, 32, 30],
    ]);
    assert.equal(rects.reduce((sum, r) => sum + r.width * r.height, 0), 97 * 61);
  });

  test('a tile count becomes the grid with the most, squarest tiles that keep the minimum size', () => {
    assert.deepEqual(gridForCount(4, 1920, 1080), { cols: 2, rows: 2 });
    assert.deepEqual(gridForCount(2, 1920, 1080), { cols: 2, rows: 1 });
    assert.deepEqual(gridForCount(2, 100, 400), { cols: 1, rows: 2 });
    assert.deepEqual(gridForCount(64, 100, 70), { cols: 3, rows: 2 }, 'no tile below 32 px');
    assert.equal(gridForCount(8, 40, 40), null, 'too small to split at all');
  });

  test('tile requests parse from what people type, with clear errors', () => {
    assert.equal(parseTiling('auto'), 'auto');
    assert.deepEqual(parseTiling('2x3'), { cols: 2, rows: 3 });
    assert.deepEqual(parseTiling(' 4 '), { count: 4 });
    assert.throws(() => parseTiling('9x9'), /at most 8x8/);
    assert.throws(() => parseTiling('lots'), /expected auto, off/);
  });
});

describe('tile planning (job compilation)', () => {
  const scene: SceneInfo = {
    sceneName: 'S', frameStart: 1, frameEnd: 1, frameStep: 1, fps: 24, resolutionX: 400, resolutionY: 300,
    resolutionPercentage: 50, engine: 'CYCLES', fileFormat: 'PNG', samples: 32, denoising: false, blenderVersion: '3.4.1', tileBlockers: [], problems: [], savedWith: null,
  };
  const request = { tiles: 'auto' as const, forceTiles: false, fileFormat: 'PNG', resolutionPercentage: 50 };

  test('plans use the output size after the resolution percentage', () => {
    assert.deepEqual(planTiling(scene, request), { mode: 'auto', frameWidth: 200, frameHeight: 150 });
    assert.deepEqual(planTiling(scene, { ...request, tiles: { count: 4 } }), { mode: 'grid', grid: { cols: 2, rows: 2 }, frameWidth: 200, frameHeight: 150 });
  });

  test('scene effects that cross tile edges keep frames whole unless forced; unstitchable formats always do', () => {
    const glare = { ...scene, tileBlockers: ['the compositor uses Glare'] };
    assert.deepEqual(planTiling(glare, { ...request, tiles: { cols: 2, rows: 2 } }), { mode: 'off' });
    assert.equal(planTiling(glare, { ...request, tiles: { cols: 2, rows: 2 }, forceTiles: true }).mode, 'grid');
    assert.deepEqual(planTiling(scene, { ...request, fileFormat: 'JPEG', forceTiles: true }), { mode: 'off' });
    assert.deepEqual(planTiling({ ...scene, engine: 'BLENDER_EEVEE' }, request), { mode: 'off' }, 'EEVEE tiles save no time');
    assert.match(tileBlockers({ ...scene, engine: 'BLENDER_EEVEE' }, 'PNG', false).join(), /EEVEE renders the whole view/);
  });

  test('an explicit grid too fine for the frame is refused with the sizes', () => {
    assert.throws(() => planTiling(scene, { ...request, tiles: { cols: 8, rows: 8 } }), /8x8 grid makes tiles smaller than 32 px on this 200x150 frame/);
  });
});

describe('auto split policy', () => {
  test('splits only with two or more idle workers per frame left', () => {
    assert.equal(chooseSplit(auto, { idleWorkers: 4, framesLeft: 3, frameMs: undefined }), null);
    assert.deepEqual(chooseSplit(auto, { idleWorkers: 4, framesLeft: 1, frameMs: undefined }), { cols: 2, rows: 2 });
    assert.deepEqual(chooseSplit(auto, { idleWorkers: 5, framesLeft: 2, frameMs: undefined }), { cols: 2, rows: 1 });
  });

  test('measured speed caps the count: no tile expected under MIN_TILE_MS', () => {
    assert.equal(chooseSplit(auto, { idleWorkers: 8, framesLeft: 1, frameMs: MIN_TILE_MS * 1.5 }), null);
    assert.deepEqual(chooseSplit(auto, { idleWorkers: 8, framesLeft: 1, frameMs: MIN_TILE_MS * 2.5 }), { cols: 2, rows: 1 });
  });
});

describe('Scheduler with tiles', () => {
  test('a still on four idle workers is split into four tiles, one each', () => {
    const s = make();
    s.addJob({ jobId: 'still', priority: 0, seq: 1, frames: [1], tiling: auto });
    ready(s, 'w1', 'w2', 'w3', 'w4');
    const out = s.dispatch();
    assert.deepEqual(out.map(label), ['1/0', '1/1', '1/2', '1/3']);
    assert.deepEqual(out[3]!.tile, { index: 3, cols: 2, rows: 2, x: 200, y: 150, width: 200, height: 150, frameWidth: 400, frameHeight: 300 });
    assert.deepEqual(s.counts('still'), { total: 1, queued: 0, rendering: 1, done: 0, failed: 0 });
  });

  test('an animation is not split while frames outnumber idle workers; its tail is, when frames are slow enough', () => {
    let clock = 0;
    const s = make({ now: () => clock });
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4], tiling: auto, order: 'sequential' });
    ready(s, 'w1', 'w2');
    assert.deepEqual(s.dispatch().map(label), ['1', '2']);
    clock += 10_000;
    s.frameDone('a', 1, 'w1');
    s.frameDone('a', 2, 'w2');
    ready(s, 'w1', 'w2');
    assert.deepEqual(s.dispatch().map(label), ['3', '4'], 'two frames left, two idle workers');
    clock += 1000; // frames now average 7.3 s: tiles of over MIN_TILE_MS each
    s.frameDone('a', 3, 'w1');
    ready(s, 'w1', 'w3');
    s.frameDone('a', 4, 'w2');
    s.addJob({ jobId: 'b', priority: 0, seq: 2, frames: [1], tiling: auto });
    assert.deepEqual(s.dispatch().map(label), ['1/0', '1/1'], 'a fresh still: one frame, two idle workers');
    const quick = make();
    quick.addJob({ jobId: 'q', priority: 0, seq: 1, frames: [1, 2, 3], tiling: auto, order: 'sequential' });
    ready(quick, 'w1', 'w2');
    quick.dispatch();
    quick.frameDone('q', 1, 'w1');
    ready(quick, 'w1', 'w3');
    assert.deepEqual(quick.dispatch().map(label), ['3'], 'frames measured as quick are not worth splitting');
  });

  test('the frame is done only after the last tile is in and the farm has stitched it', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1], tiling: grid2x2 });
    ready(s, 'w1', 'w2');
    s.dispatch();
    assert.deepEqual(s.tilesOf('a', 1)?.states, ['rendering', 'rendering', 'queued', 'queued']);
    assert.deepEqual(s.frameDone('a', 1, 'w1', 0), { kind: 'accepted', jobFinished: false, cancel: [], stitch: false });
    assert.deepEqual(s.frameDone('a', 1, 'w1', 0), { kind: 'duplicate' }, 'a tile already in');
    assert.deepEqual(s.frameDone('a', 1, 'w1'), { kind: 'duplicate' }, 'a whole-frame result for a split frame');
    s.frameDone('a', 1, 'w2', 1);
    ready(s, 'w1', 'w2');
    assert.deepEqual(s.dispatch().map(label), ['1/2', '1/3']);
    s.frameDone('a', 1, 'w1', 2);
    assert.equal((s.frameDone('a', 1, 'w2', 3) as { stitch: boolean }).stitch, true);
    assert.deepEqual(s.counts('a'), { total: 1, queued: 0, rendering: 1, done: 0, failed: 0 }, 'stitching still counts as rendering');
    assert.deepEqual(s.frameStitched('a', 1), { jobFinished: true });
    assert.deepEqual(s.counts('a'), { total: 1, queued: 0, rendering: 0, done: 1, failed: 0 });
    assert.equal(s.frameStitched('a', 1), null, 'stitched once only');
  });

  test('a failed tile is retried on another worker; after the last attempt the frame fails and its other tiles stop', () => {
    const s = make({ maxAttempts: 2 });
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1], tiling: { ...grid2x2, grid: { cols: 2, rows: 1 } } });
    ready(s, 'w1', 'w2');
    s.dispatch();
    assert.deepEqual(s.frameFailed('a', 1, 'w1', 0), { kind: 'requeued', attempts: 1 });
    ready(s, 'w1', 'w3');
    const retry = s.dispatch();
    assert.deepEqual(retry.map((a) => `${a.workerId}:${label(a)}`), ['w3:1/0'], 'not back to the worker it failed on');
    const outcome = s.frameFailed('a', 1, 'w3', 0);
    assert.equal(outcome.kind, 'failed');
    assert.deepEqual((outcome as { cancel: Assignment[] }).cancel.map((a) => `${a.workerId}:${label(a)}`), ['w2:1/1']);
    assert.deepEqual(s.counts('a'), { total: 1, queued: 0, rendering: 0, done: 0, failed: 1 });
  });

  test('tiles of a lost worker go back to the queue; a reconnecting worker may claim a tile it holds', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1], tiling: { ...grid2x2, grid: { cols: 2, rows: 1 } } });
    ready(s, 'w1', 'w2');
    s.dispatch();
    assert.deepEqual(s.workerLost('w2').map(label), ['1/1']);
    assert.deepEqual(s.tilesOf('a', 1)?.states, ['rendering', 'queued']);
    assert.equal(s.claim('a', 1, 'w2', 1), true);
    assert.deepEqual(s.tilesOf('a', 1)?.states, ['rendering', 'rendering']);
    s.workerLost('w2');
    ready(s, 'w3');
    assert.deepEqual(s.dispatch().map((a) => `${a.workerId}:${label(a)}`), ['w3:1/1']);
  });

  test('a failed stitch starts the frame over and counts an attempt', () => {
    const s = make({ maxAttempts: 2 });
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1], tiling: { ...grid2x2, grid: { cols: 2, rows: 1 } } });
    ready(s, 'w1', 'w2');
    s.dispatch();
    s.frameDone('a', 1, 'w1', 0);
    s.frameDone('a', 1, 'w2', 1);
    assert.deepEqual(s.stitchFailed('a', 1), { kind: 'requeued', attempts: 1 });
    assert.equal(s.tilesOf('a', 1), null);
    ready(s, 'w1', 'w2');
    assert.deepEqual(s.dispatch().map(label), ['1/0', '1/1'], 'split again');
    s.frameDone('a', 1, 'w1', 0);
    s.frameDone('a', 1, 'w2', 1);
    assert.equal(s.stitchFailed('a', 1).kind, 'failed');
  });

  test('at the tail an idle fast worker copies a slow worker\'s tile, scaled to the tile\'s share of a frame', () => {
    let clock = 0;
    const s = make({ now: () => clock, duplicateTail: true });
    s.addJob({ jobId: 'warm', priority: 1, seq: 1, frames: [1, 2] });
    ready(s, 'fast', 'slow');
    s.dispatch();
    clock = 1000;
    s.frameDone('warm', 1, 'fast');
    clock = 5000;
    s.frameDone('warm', 2, 'slow');
    s.addJob({ jobId: 'still', priority: 0, seq: 2, frames: [1], tiling: { ...grid2x2, grid: { cols: 2, rows: 1 } } });
    ready(s, 'fast', 'slow');
    assert.deepEqual(s.dispatch().map((a) => `${a.workerId}:${label(a)}`), ['fast:1/0', 'slow:1/1']);
    clock = 5600; // fast's tile (expected 500 ms) is in; slow's (expected 2500 ms) has 1900 ms left
    s.frameDone('still', 1, 'fast', 0);
    ready(s, 'fast');
    assert.deepEqual(s.dispatch().map((a) => `${a.workerId}:${label(a)}`), ['fast:1/1']);
    const won = s.frameDone('still', 1, 'fast', 1);
    assert.deepEqual((won as { cancel: Assignment[] }).cancel.map((a) => `${a.workerId}:${label(a)}`), ['slow:1/1']);
  });
});
