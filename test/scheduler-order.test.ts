import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, orderFrames } from '../src/scheduler/index.ts';

/** Frame numbers a..b, as a job's frames arrive: in frame order. */
const range = (a: number, b: number, step = 1) => Array.from({ length: Math.floor((b - a) / step) + 1 }, (_, i) => a + i * step);

describe('frame order', () => {
  test('interleaved: first, last, middle, then the middles of the halves, then of the quarters', () => {
    assert.deepEqual(orderFrames(range(1, 9), 'interleaved'), [1, 9, 5, 3, 7, 2, 4, 6, 8]);
    assert.deepEqual(orderFrames(range(1, 17, 4), 'interleaved'), [1, 17, 9, 5, 13], 'frame steps are kept');
    assert.deepEqual(orderFrames([-3, -2, -1, 0], 'interleaved'), [-3, 0, -2, -1]);
  });

  test('sequential keeps frame order; one or two frames stay as they are', () => {
    assert.deepEqual(orderFrames(range(1, 9), 'sequential'), range(1, 9));
    assert.deepEqual(orderFrames([], 'interleaved'), []);
    assert.deepEqual(orderFrames([7], 'interleaved'), [7]);
    assert.deepEqual(orderFrames([7, 8], 'interleaved'), [7, 8]);
  });

  test('interleaved hands out every frame exactly once, for every length', () => {
    for (let n = 0; n <= 300; n++) {
      const frames = range(1, n);
      const ordered = orderFrames(frames, 'interleaved');
      assert.equal(ordered.length, n);
      assert.deepEqual([...ordered].sort((a, b) => a - b), frames, `length ${n}`);
    }
  });

  test('coarse before fine: once 2^k + 1 frames are out, no gap between them is wider than the range / 2^k', () => {
    const n = 1000;
    const ordered = orderFrames(range(0, n - 1), 'interleaved');
    for (let k = 1; 2 ** k + 1 <= 257; k++) {
      const out = ordered.slice(0, 2 ** k + 1).sort((a, b) => a - b);
      const widest = Math.max(...out.slice(1).map((f, i) => f - out[i]!));
      assert.ok(widest <= Math.ceil((n - 1) / 2 ** k), `after ${out.length} frames the widest gap is ${widest}`);
    }
  });

  test('100,000 frames are ordered in well under a second', () => {
    const frames = range(1, 100_000);
    const started = performance.now();
    const ordered = orderFrames(frames, 'interleaved');
    const ms = performance.now() - started;
    assert.equal(new Set(ordered).size, 100_000);
    assert.ok(ms < 500, `took ${ms.toFixed(0)} ms`);
  });
});

describe('Scheduler frame order', () => {
  const make = () => new Scheduler({ maxAttempts: 3, blockAfterFailures: 3 });

  test('a job is interleaved unless it asks for sequential order', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: range(1, 10) });
    for (const w of ['w1', 'w2', 'w3']) s.workerReady(w);
    assert.deepEqual(s.dispatch().map((a) => a.frame), [1, 10, 5], 'first, last, middle');

    const t = make();
    t.addJob({ jobId: 'b', priority: 0, seq: 1, frames: range(1, 10), order: 'sequential' });
    for (const w of ['w1', 'w2', 'w3']) t.workerReady(w);
    assert.deepEqual(t.dispatch().map((a) => a.frame), [1, 2, 3]);
  });

  test('a frame handed back still goes out before fresh ones, and the rest follows the interleaved order', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: range(1, 9) });
    s.workerReady('w1');
    assert.deepEqual(s.dispatch().map((a) => a.frame), [1]);
    s.workerLost('w1');
    const handedOut: number[] = [];
    s.workerReady('w2');
    for (let i = 0; i < 9; i++) {
      const [assignment] = s.dispatch();
      handedOut.push(assignment!.frame);
      s.frameDone('a', assignment!.frame, 'w2');
      s.workerReady('w2');
    }
    assert.deepEqual(handedOut, [1, 9, 5, 3, 7, 2, 4, 6, 8]);
    assert.equal(s.counts('a')!.done, 9);
  });

  test('100,000 interleaved frames over 500 workers: every frame handed out exactly once', () => {
    const s = make();
    s.addJob({ jobId: 'big', priority: 0, seq: 1, frames: range(1, 100_000) });
    const seen = new Set<number>();
    for (let w = 0; w < 500; w++) s.workerReady(`w${w}`);
    const started = performance.now();
    for (let round = 0; seen.size < 100_000; round++) {
      const assignments = s.dispatch();
      assert.ok(assignments.length > 0, `round ${round} handed out nothing`);
      for (const { workerId, frame } of assignments) {
        assert.ok(!seen.has(frame), `frame ${frame} handed out twice`);
        seen.add(frame);
        s.frameDone('big', frame, workerId);
        s.workerReady(workerId);
      }
    }
    const ms = performance.now() - started;
    assert.equal(s.counts('big')!.done, 100_000);
    assert.ok(ms < 10_000, `took ${ms.toFixed(0)} ms`);
  });
});
