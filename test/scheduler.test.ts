import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from '../src/scheduler/index.ts';
import { canTransition, statesLeadingTo } from '../src/protocol/index.ts';

const make = (maxAttempts = 3, blockAfterFailures = 3) => new Scheduler({ maxAttempts, blockAfterFailures });

describe('Scheduler', () => {
  test('hands frames in order to idle workers, one each (sequential order)', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3], order: 'sequential' });
    s.workerReady('w1');
    s.workerReady('w2');
    assert.deepEqual(s.dispatch(), [
      { workerId: 'w1', jobId: 'a', frame: 1 },
      { workerId: 'w2', jobId: 'a', frame: 2 },
    ]);
    assert.deepEqual(s.dispatch(), [], 'busy workers get nothing more');
  });

  test('a fast worker that comes back sooner renders more frames', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4, 5], order: 'sequential' });
    s.workerReady('fast');
    s.workerReady('slow');
    const rendered: Record<string, number[]> = { fast: [], slow: [] };
    const take = () => s.dispatch().forEach((a) => rendered[a.workerId]!.push(a.frame));
    take();
    for (let i = 0; i < 3; i++) {
      const frame = rendered.fast!.at(-1)!;
      assert.equal(s.frameDone('a', frame, 'fast').kind, 'accepted');
      s.workerReady('fast');
      take();
    }
    assert.deepEqual(rendered, { fast: [1, 3, 4, 5], slow: [2] });
  });

  test('idle workers flow on to the next job when the first has nothing left to hand out', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1] });
    s.addJob({ jobId: 'b', priority: 0, seq: 2, frames: [10, 11] });
    s.workerReady('w1');
    s.workerReady('w2');
    s.workerReady('w3');
    assert.deepEqual(
      s.dispatch().map((a) => `${a.jobId}:${a.frame}`),
      ['a:1', 'b:10', 'b:11'],
    );
  });

  test('higher priority jobs go first; equal priority keeps submission order', () => {
    const s = make();
    s.addJob({ jobId: 'old', priority: 0, seq: 1, frames: [1] });
    s.addJob({ jobId: 'urgent', priority: 5, seq: 2, frames: [1] });
    s.workerReady('w');
    assert.equal(s.dispatch()[0]!.jobId, 'urgent');
  });

  test('frames of a lost worker go back to the front of the queue', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3] });
    s.workerReady('w1');
    s.dispatch();
    assert.deepEqual(s.workerLost('w1'), [{ workerId: 'w1', jobId: 'a', frame: 1 }]);
    s.workerReady('w2');
    assert.deepEqual(s.dispatch(), [{ workerId: 'w2', jobId: 'a', frame: 1 }]);
  });

  test('the first result wins; a late duplicate is refused and the other render is cancelled', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2] });
    s.workerReady('w1');
    s.dispatch();
    s.workerLost('w1'); // presumed dead, frame 1 requeued
    s.workerReady('w2');
    s.dispatch(); // w2 renders frame 1 again
    const late = s.frameDone('a', 1, 'w1');
    assert.deepEqual(late, { kind: 'accepted', jobFinished: false, cancel: [{ workerId: 'w2', jobId: 'a', frame: 1 }], stitch: false });
    assert.deepEqual(s.frameDone('a', 1, 'w2'), { kind: 'duplicate' });
    assert.equal(s.pendingCount('a'), 1);
  });

  test('reports the job finished when its last frame is done', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1] });
    s.workerReady('w');
    s.dispatch();
    assert.deepEqual(s.frameDone('a', 1, 'w'), { kind: 'accepted', jobFinished: true, cancel: [], stitch: false });
    assert.deepEqual(s.frameDone('zzz', 1, 'w'), { kind: 'unknown' });
  });

  test('a failing frame is retried, then marked failed; the job still finishes', () => {
    const s = make(2, 99);
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1] });
    s.workerReady('w');
    s.dispatch();
    assert.deepEqual(s.frameFailed('a', 1, 'w'), { kind: 'requeued', attempts: 1 });
    s.workerReady('w');
    assert.equal(s.dispatch().length, 1);
    assert.deepEqual(s.frameFailed('a', 1, 'w'), { kind: 'failed', attempts: 2, jobFinished: true, cancel: [] });
  });

  test('a failed frame is retried on another worker when there is one', () => {
    const s = make(3, 99);
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2] });
    s.workerReady('w1');
    s.workerReady('w2');
    s.dispatch(); // w1: 1, w2: 2
    s.frameFailed('a', 1, 'w1');
    s.workerReady('w1');
    assert.deepEqual(s.dispatch(), [], 'w1 does not get its own failed frame back while w2 may take it');
    s.frameDone('a', 2, 'w2');
    s.workerReady('w2');
    assert.deepEqual(s.dispatch(), [{ workerId: 'w2', jobId: 'a', frame: 1 }]);
  });

  test('with a single worker, a failed frame is retried on it', () => {
    const s = make(3, 99);
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1] });
    s.workerReady('w1');
    s.dispatch();
    s.frameFailed('a', 1, 'w1');
    s.workerReady('w1');
    assert.deepEqual(s.dispatch(), [{ workerId: 'w1', jobId: 'a', frame: 1 }]);
  });

  test('a frame handed back unrendered goes to the front of the queue and costs no attempt', () => {
    const s = make(1, 99);
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2] });
    s.workerReady('full');
    s.dispatch(); // full: 1
    assert.equal(s.handBack('a', 1, 'full'), true);
    assert.equal(s.handBack('a', 1, 'full'), false, 'only a frame the worker holds');
    s.workerReady('roomy');
    assert.deepEqual(s.dispatch(), [{ workerId: 'roomy', jobId: 'a', frame: 1 }]);
    assert.equal(s.frameFailed('a', 1, 'roomy').kind, 'failed', 'with maxAttempts 1, the first real failure is final: the hand-back did not count');
  });

  test('a reconnecting worker reclaims a frame it finished while away', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2] });
    s.workerReady('w1');
    s.dispatch();
    s.workerLost('w1'); // frame 1 requeued
    assert.equal(s.claim('a', 1, 'w1'), true);
    s.workerReady('w2');
    assert.deepEqual(s.dispatch(), [{ workerId: 'w2', jobId: 'a', frame: 2 }], 'frame 1 is not handed out again');
    assert.equal(s.frameDone('a', 1, 'w1').kind, 'accepted');
    assert.equal(s.claim('a', 1, 'w3'), false, 'a done frame cannot be claimed');
  });

  test('a worker that keeps failing a job\'s frames is blocked from it but may take other jobs', () => {
    const s = make(1, 2);
    s.addJob({ jobId: 'a', priority: 1, seq: 1, frames: [1, 2, 3] });
    s.addJob({ jobId: 'b', priority: 0, seq: 2, frames: [7] });
    for (let i = 0; i < 2; i++) {
      s.workerReady('bad');
      const [a] = s.dispatch();
      s.frameFailed(a!.jobId, a!.frame, 'bad');
    }
    assert.deepEqual(s.blockedWorkers('a'), ['bad']);
    s.workerReady('bad');
    assert.deepEqual(s.dispatch(), [{ workerId: 'bad', jobId: 'b', frame: 7 }]);
  });

  test('paused jobs hand out nothing; removed jobs return the renders to stop', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2] });
    s.setPaused('a', true);
    s.workerReady('w1');
    assert.deepEqual(s.dispatch(), []);
    s.setPaused('a', false);
    assert.equal(s.dispatch().length, 1);
    assert.deepEqual(s.removeJob('a'), [{ workerId: 'w1', jobId: 'a', frame: 1 }]);
    assert.equal(s.hasJob('a'), false);
  });

  test('at the tail, an idle fast worker copies the frame a slow worker is stuck on; the first result wins', () => {
    let clock = 0;
    const s = new Scheduler({ maxAttempts: 3, blockAfterFailures: 3, duplicateTail: true, now: () => clock });
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3], order: 'sequential' });
    s.workerReady('fast');
    s.workerReady('slow');
    s.dispatch(); // fast: 1, slow: 2
    clock = 100;
    s.frameDone('a', 1, 'fast'); // fast needs 100 ms a frame
    s.workerReady('fast');
    assert.deepEqual(s.dispatch(), [{ workerId: 'fast', jobId: 'a', frame: 3 }], 'real work first');
    clock = 150;
    s.frameDone('a', 3, 'fast');
    s.workerReady('fast');
    assert.deepEqual(s.dispatch(), [{ workerId: 'fast', jobId: 'a', frame: 2 }], 'slow has run 150 ms on frame 2: fast copies it');
    assert.deepEqual(s.counts('a'), { total: 3, queued: 0, rendering: 1, done: 2, failed: 0 }, 'a copy is not a second frame');
    clock = 250;
    assert.deepEqual(s.frameDone('a', 2, 'fast'), { kind: 'accepted', jobFinished: true, cancel: [{ workerId: 'slow', jobId: 'a', frame: 2 }], stitch: false });
    assert.deepEqual(s.frameDone('a', 2, 'slow'), { kind: 'duplicate' });
  });

  test('a worker does not copy a frame it would not finish sooner', () => {
    let clock = 0;
    const s = new Scheduler({ maxAttempts: 3, blockAfterFailures: 3, duplicateTail: true, now: () => clock });
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2] });
    s.workerReady('a1');
    s.dispatch(); // a1: 1
    clock = 500;
    s.frameDone('a', 1, 'a1'); // a1 needs 500 ms
    s.workerReady('b1');
    s.dispatch(); // b1: 2 (fresh work)
    clock = 600;
    s.workerReady('a1');
    assert.deepEqual(s.dispatch(), [], 'b1 has run only 100 ms; a1 needs 500');
  });

  test('a frame of an equally fast worker running a little past its average is not copied (frame times jitter)', () => {
    let clock = 0;
    const s = new Scheduler({ maxAttempts: 3, blockAfterFailures: 3, duplicateTail: true, now: () => clock });
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4], order: 'sequential' });
    s.workerReady('w1');
    s.workerReady('w2');
    s.dispatch(); // w1: 1, w2: 2
    clock = 100;
    s.frameDone('a', 1, 'w1');
    s.frameDone('a', 2, 'w2');
    s.workerReady('w1');
    s.workerReady('w2');
    s.dispatch(); // w1: 3, w2: 4
    clock = 200;
    s.frameDone('a', 3, 'w1');
    s.workerReady('w1');
    clock = 230; // w2 is 30 ms past its 100 ms average on frame 4
    assert.deepEqual(s.dispatch(), [], 'it is most likely nearly done');
  });

  test('nothing is duplicated while frames are still waiting, or without frame times, or when switched off', () => {
    let clock = 0;
    const make2 = (duplicateTail: boolean) => new Scheduler({ maxAttempts: 3, blockAfterFailures: 3, duplicateTail, now: () => clock });
    const s = make2(true);
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1] });
    s.workerReady('w1');
    s.dispatch();
    s.workerReady('w2');
    assert.deepEqual(s.dispatch(), [], 'no frame times known yet');
    const off = make2(false);
    off.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2] });
    off.workerReady('w1');
    off.dispatch();
    clock = 10;
    off.frameDone('a', 1, 'w1');
    off.workerReady('w2');
    off.dispatch(); // w2: 2
    off.workerReady('w1');
    assert.deepEqual(off.dispatch(), []);
  });

  test('scales: 100k frames over 500 workers, every frame handed out exactly once', () => {
    const s = make();
    const frames = Array.from({ length: 100_000 }, (_, i) => i + 1);
    s.addJob({ jobId: 'big', priority: 0, seq: 1, frames });
    const seen = new Uint8Array(100_001);
    for (let w = 0; w < 500; w++) s.workerReady(`w${w}`);
    let finished = false;
    while (!finished) {
      const batch = s.dispatch();
      if (batch.length === 0) break;
      for (const a of batch) {
        seen[a.frame]! += 1;
        const outcome = s.frameDone(a.jobId, a.frame, a.workerId);
        if (outcome.kind === 'accepted' && outcome.jobFinished) finished = true;
        s.workerReady(a.workerId);
      }
    }
    assert.equal(finished, true);
    assert.equal(seen.slice(1).every((n) => n === 1), true);
  });
});

describe('job state machine', () => {
  test('allows the normal life cycle and refuses leaving an end state', () => {
    assert.equal(canTransition('probing', 'queued'), true);
    assert.equal(canTransition('queued', 'rendering'), true);
    assert.equal(canTransition('rendering', 'encoding'), true);
    assert.equal(canTransition('encoding', 'completed'), true);
    assert.equal(canTransition('completed', 'rendering'), false);
    assert.equal(canTransition('cancelled', 'queued'), false);
  });

  test('knows, for each state, the states that may move into it (the guard of a state change in SQL)', () => {
    assert.deepEqual(statesLeadingTo('completed'), ['paused', 'rendering', 'encoding'], 'straight from rendering when the frames make no video');
    assert.deepEqual(statesLeadingTo('encoding'), ['paused', 'rendering']);
    assert.deepEqual(statesLeadingTo('probing'), ['paused', 'failed'], 'read again: files added to a held job, or on retry after its preflight failed');
  });
});
