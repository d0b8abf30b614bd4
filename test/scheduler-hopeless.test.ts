import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from '../src/scheduler/index.ts';
import { errorSignature } from '../src/scheduler/hopeless.ts';

const make = () => new Scheduler({ maxAttempts: 3, blockAfterFailures: 3 });

/** Hands the worker its next unit and fails it with `error`; returns the frame it got. */
function failNext(s: Scheduler, workerId: string, error: string): number {
  s.workerReady(workerId);
  const [assignment] = s.dispatch().filter((a) => a.workerId === workerId);
  assert.ok(assignment, `${workerId} got work`);
  s.frameFailed(assignment.jobId, assignment.frame, workerId, undefined, error);
  return assignment.frame;
}

describe('a job that cannot finish', () => {
  test('the only worker, barred after failing three different frames, leaves the job hopeless', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4] });
    const failed = new Set<number>();
    while (s.hopelessReason('a', ['w1']) === null && failed.size <= 4) {
      failed.add(failNext(s, 'w1', 'Error: Build without OpenImageDenoiser'));
      if (failed.size < 3) assert.equal(s.hopelessReason('a', ['w1']), null, 'the worker may still take the job');
    }
    assert.equal(failed.size, 3);
    assert.deepEqual(s.blockedWorkers('a'), ['w1']);
    assert.match(s.hopelessReason('a', ['w1']) ?? '', /the only worker that could render it failed 3 of its frames.*OpenImageDenoiser/);
  });

  test('one frame failing again and again on the only worker fails that frame; the others still render', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3] });
    s.workerReady('w1');
    const [first] = s.dispatch();
    for (let attempt = 1; attempt <= 3; attempt++) {
      const outcome = s.frameFailed('a', first!.frame, 'w1', undefined, 'Blender crashed on this frame');
      assert.equal(outcome.kind, attempt < 3 ? 'requeued' : 'failed');
      s.workerReady('w1');
      const [next] = s.dispatch();
      if (attempt < 3) assert.equal(next?.frame, first!.frame, 'the retry');
      else assert.notEqual(next?.frame, first!.frame, 'the worker goes on with the other frames');
    }
    assert.deepEqual(s.blockedWorkers('a'), []);
    assert.equal(s.hopelessReason('a', ['w1']), null);
  });

  test('another connected worker that may still take it keeps the job waiting', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4] });
    for (let i = 0; i < 7; i++) failNext(s, 'w1', `worker w1 crashed on frame ${i}`);
    assert.deepEqual(s.blockedWorkers('a'), ['w1']);
    assert.equal(s.hopelessReason('a', ['w1', 'w2']), null);
    assert.equal(s.hopelessReason('a', []), null, 'with no worker connected a job waits');
  });

  test('one frame failing on two workers fails that frame, not the job', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4] });
    const frame = failNext(s, 'w1', 'Blender exited (exit code 3) while rendering frame 1');
    s.workerReady('w2');
    const retry = s.dispatch().find((a) => a.workerId === 'w2');
    assert.equal(retry?.frame, frame, 'the retry goes to the other worker');
    s.frameFailed('a', frame, 'w2', undefined, `Blender exited (exit code 3) while rendering frame ${frame}`);
    assert.equal(s.hopelessReason('a', ['w1', 'w2']), null);
  });

  test('the same error on two workers and two frames is the scene\'s: hopeless at once', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4] });
    s.workerReady('w1');
    s.workerReady('w2');
    const [first, second] = s.dispatch();
    assert.ok(first && second && first.frame !== second.frame);
    s.frameFailed('a', first.frame, first.workerId, undefined, `Error: Cannot render, no camera (frame ${first.frame}, /var/cache/w1/blends/x.blend)`);
    assert.equal(s.hopelessReason('a', ['w1', 'w2']), null, 'one worker is not enough to blame the scene');
    s.frameFailed('a', second.frame, second.workerId, undefined, `Error: Cannot render, no camera (frame ${second.frame}, /srv/w2/blends/x.blend)`);
    assert.match(s.hopelessReason('a', ['w1', 'w2']) ?? '', /scene itself cannot render: Error: Cannot render, no camera/);
  });

  test('different errors on different workers are the workers\' problems', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4] });
    failNext(s, 'w1', 'CUDA error: out of memory');
    failNext(s, 'w2', 'Blender crashed (signal SIGSEGV)');
    assert.equal(s.hopelessReason('a', ['w1', 'w2']), null);
  });

  test('a job whose frames all finished is never hopeless', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1] });
    for (let i = 0; i < 3; i++) failNext(s, 'w1', 'boom');
    assert.equal(s.counts('a')?.failed, 1);
    assert.equal(s.hopelessReason('a', ['w1']), null, 'it ends as failed through its frames');
  });

  test('error signatures ignore numbers and absolute paths, not words', () => {
    assert.equal(errorSignature('frame 12 failed in /a/b/c.blend'), errorSignature('frame 7 failed in C:\\x\\y.blend'));
    assert.notEqual(errorSignature('no camera'), errorSignature('out of memory'));
    assert.equal(errorSignature('first line\nsecond line 1'), 'first line');
  });
});
