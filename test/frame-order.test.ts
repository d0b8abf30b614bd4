/**
 * Frame order through the real server: a job submitted without `order` hands out its
 * frames first, last, middle, then filling in; `order=sequential` in frame order. The
 * worker is scripted, so the test sees every `render` message in the order it is sent,
 * and the video is still encoded from the frames in frame order.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { RenderAssignment } from '../src/protocol/index.ts';
import { fakeBlend, submitJob } from '../testkit/api.ts';
import { TINY_PNG } from '../testkit/fakes.ts';
import { startTestFarm, waitForJob, type TestFarm } from './helpers/farm.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

describe('frame order through the farm', () => {
  let farm: TestFarm;
  let worker: ScriptedWorker;

  before(async () => {
    farm = await startTestFarm();
    worker = await ScriptedWorker.connect(farm);
  });

  after(async () => {
    worker?.close();
    await farm?.close();
  });

  /** Renders every frame of the job with one worker and returns the frames in the order they were handed out. */
  async function renderAll(jobId: string, frames: number): Promise<number[]> {
    const order: number[] = [];
    const before = worker.received.filter((m) => m.type === 'render').length;
    for (let i = 0; i < frames; i++) {
      worker.send({ type: 'ready' });
      const assignment = (await worker.next('render', before + i)) as RenderAssignment;
      assert.equal(assignment.jobId, jobId);
      order.push(assignment.frame);
      const result = await worker.upload(`/api/worker/jobs/${jobId}/frames/${assignment.frame}`, TINY_PNG);
      assert.deepEqual(result.body, { accepted: true });
    }
    return order;
  }

  it('interleaves by default: first, last, middle, then filling in; the video still has every frame', async () => {
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { frames: '1-9', tiles: 'off' });
    assert.equal(job.order, 'interleaved');
    await worker.next('probe');
    assert.deepEqual(await renderAll(job.id, 9), [1, 9, 5, 3, 7, 2, 4, 6, 8]);
    const done = await waitForJob(farm.server, job.id, ['completed', 'failed'], 60_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.equal(done.videoReady, true);
    assert.ok(existsSync(farm.server.dataDir.video(job.id)), 'the video was encoded');
  });

  it('order=sequential renders in frame order', async () => {
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { frames: '1-4', tiles: 'off', order: 'sequential' });
    assert.equal(job.order, 'sequential');
    await worker.next('probe', 1);
    assert.deepEqual(await renderAll(job.id, 4), [1, 2, 3, 4]);
    assert.equal((await waitForJob(farm.server, job.id, ['completed', 'failed'], 60_000)).state, 'completed');
  });
});
