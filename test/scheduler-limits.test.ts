import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from '../src/scheduler/index.ts';

const make = (options: { duplicateTail?: boolean; now?: () => number } = {}) => new Scheduler({ maxAttempts: 3, blockAfterFailures: 3, ...options });
const ready = (s: Scheduler, ...workers: string[]) => workers.forEach((w) => s.workerReady(w));
const labels = (s: Scheduler) => s.dispatch().map((a) => `${a.workerId}:${a.jobId}:${a.frame}`);

describe('Scheduler: maxWorkers', () => {
  test('a job with maxWorkers gets at most that many workers at once; the others flow on to the next job', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4, 5], order: 'sequential', maxWorkers: 2 });
    s.addJob({ jobId: 'b', priority: 0, seq: 2, frames: [1, 2], order: 'sequential' });
    ready(s, 'w1', 'w2', 'w3', 'w4');
    assert.deepEqual(labels(s), ['w1:a:1', 'w2:a:2', 'w3:b:1', 'w4:b:2']);
  });

  test('a worker that finishes takes the job again; a place freed by another lets a new worker in', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4], order: 'sequential', maxWorkers: 1 });
    ready(s, 'w1', 'w2');
    assert.deepEqual(labels(s), ['w1:a:1'], 'one worker only; w2 waits');
    s.frameDone('a', 1, 'w1');
    ready(s, 'w1');
    const next = labels(s);
    assert.equal(next.length, 1, 'still one at a time');
    assert.match(next[0]!, /:a:2$/);
    const holder = next[0]!.split(':')[0]!;
    s.workerLost(holder); // its frame goes back, and its place is free
    ready(s, holder === 'w1' ? 'w3' : 'w1');
    assert.equal(s.dispatch().length, 1);
  });

  test('tail copies count as workers on the job', () => {
    let clock = 0;
    const s = make({ duplicateTail: true, now: () => clock });
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2], order: 'sequential', maxWorkers: 2 });
    ready(s, 'fast', 'slow');
    s.dispatch(); // fast: 1, slow: 2
    clock = 100;
    s.frameDone('a', 1, 'fast'); // fast is measured, and quick
    s.addJob({ jobId: 'other', priority: 0, seq: 2, frames: [9] });
    ready(s, 'third');
    assert.deepEqual(labels(s), ['third:other:9'], 'two workers on the job: a third goes to the next job');
    clock = 1000;
    ready(s, 'fast');
    assert.deepEqual(labels(s), ['fast:a:2'], 'fast may copy the stuck frame: two workers on the job');
  });

  test('the limit can change while the job runs; no limit lets every idle worker in', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1, 2, 3, 4], maxWorkers: 1 });
    ready(s, 'w1', 'w2', 'w3');
    assert.equal(s.dispatch().length, 1);
    s.setMaxWorkers('a', undefined);
    assert.equal(s.dispatch().length, 2);
  });
});

describe('Scheduler: fair share between jobs of the same priority', () => {
  const fair = () => new Scheduler({ maxAttempts: 3, blockAfterFailures: 3, queuePolicy: 'fair' });
  const tenFrames = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const perJob = (labelsOut: string[]) => labelsOut.map((l) => l.split(':')[1]).sort().join('');

  test('fifo (the default) gives the earliest job every idle worker it can use; fair splits them evenly', () => {
    const fifo = make();
    fifo.addJob({ jobId: 'a', priority: 0, seq: 1, frames: tenFrames });
    fifo.addJob({ jobId: 'b', priority: 0, seq: 2, frames: tenFrames });
    ready(fifo, 'w1', 'w2', 'w3', 'w4');
    assert.equal(perJob(labels(fifo)), 'aaaa');

    const s = fair();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: tenFrames });
    s.addJob({ jobId: 'b', priority: 0, seq: 2, frames: tenFrames });
    ready(s, 'w1', 'w2', 'w3', 'w4', 'w5');
    assert.equal(perJob(labels(s)), 'aaabb', 'an odd worker goes to the earlier job');
  });

  test('a freed worker goes to the job with the fewest workers on it', () => {
    const s = fair();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: tenFrames, order: 'sequential' });
    ready(s, 'w1', 'w2');
    assert.equal(perJob(labels(s)), 'aa', 'alone in the queue, a job takes every worker');
    s.addJob({ jobId: 'b', priority: 0, seq: 2, frames: tenFrames });
    s.frameDone('a', 1, 'w1');
    ready(s, 'w1');
    assert.deepEqual(labels(s), ['w1:b:1'], 'b has nobody, a has w2');
  });

  test('priority still comes first; fair share applies within a priority, and with maxWorkers', () => {
    const s = fair();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: tenFrames });
    s.addJob({ jobId: 'b', priority: 0, seq: 2, frames: tenFrames, maxWorkers: 1 });
    s.addJob({ jobId: 'urgent', priority: 5, seq: 3, frames: [1, 2] });
    ready(s, 'w1', 'w2', 'w3', 'w4', 'w5');
    const jobs = labels(s).map((label) => label.split(':')[1]);
    assert.deepEqual(jobs.sort(), ['a', 'a', 'b', 'urgent', 'urgent'], 'urgent first (two frames), then a and b, b at most one');
  });
});

describe('Scheduler: required tags', () => {
  test('a job that requires tags goes only to workers with all of them; others take the next job', () => {
    const s = make();
    s.addJob({ jobId: 'gpu-job', priority: 5, seq: 1, frames: [1, 2, 3], requiredTags: ['gpu', 'room-2'] });
    s.addJob({ jobId: 'any', priority: 0, seq: 2, frames: [1, 2, 3] });
    s.setWorkerTags('both', ['gpu', 'room-2']);
    s.setWorkerTags('gpu-only', ['gpu']);
    ready(s, 'both', 'gpu-only', 'untagged');
    assert.deepEqual(labels(s).sort(), ['both:gpu-job:1', 'gpu-only:any:1', 'untagged:any:3']);
  });

  test('with no qualified worker the job waits, and a worker whose tags fit takes it when it comes', () => {
    const s = make();
    s.addJob({ jobId: 'a', priority: 0, seq: 1, frames: [1], requiredTags: ['gpu'] });
    ready(s, 'w1');
    assert.deepEqual(s.dispatch(), []);
    s.setWorkerTags('w2', ['gpu']);
    ready(s, 'w2');
    assert.deepEqual(labels(s), ['w2:a:1']);
  });
});
